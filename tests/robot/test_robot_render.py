"""Ground-truth ray-cast robot renders (gen3d_ros.sim.robot_render): geometry, depth, link ids, shading, speed."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import open3d as o3d
import pytest
import torch

from gen3d_ros.geometry.camera import PinholeCamera, sphere_camera
from gen3d_ros.robot.kinematics import ForwardKinematics
from gen3d_ros.robot.meshes import link_meshes
from gen3d_ros.robot.urdf import load_urdf, test_arm_urdf
from gen3d_ros.sim.robot_render import RobotMeshRenderer, camera_rays

CAMERA = PinholeCamera.from_fov(128, 128, 45.0)
TARGET = np.array([0.0, 0.0, 0.3])


@pytest.fixture(scope="module")
def arm():
    return load_urdf(test_arm_urdf())


@pytest.fixture(scope="module")
def renderer(arm):
    return RobotMeshRenderer(arm)


def _posed_link_vertices(arm, q: np.ndarray) -> dict[int, np.ndarray]:
    fk = ForwardKinematics(arm, dtype=torch.float64)
    T = fk(torch.as_tensor(q)).numpy()
    out = {}
    for link, (v, _, _) in link_meshes(arm).items():
        i = arm.links.index(link)
        out[i] = v @ T[i, :3, :3].T + T[i, :3, 3]
    return out


def _project(points_base: np.ndarray, T_camera_base: np.ndarray, camera: PinholeCamera) -> np.ndarray:
    p = points_base @ T_camera_base[:3, :3].T + T_camera_base[:3, 3]
    return np.stack([camera.fx * p[:, 0] / p[:, 2] + camera.cx, camera.fy * p[:, 1] / p[:, 2] + camera.cy], axis=1)


def _box_robot(tmp_path: Path, size=(0.2, 0.3, 0.1), xyz=(0.1, -0.05, 0.0), rgba=(0.2, 0.6, 0.9, 1.0)) -> Path:
    path = tmp_path / "box.urdf"
    path.write_text(
        f'<robot name="box"><link name="base"><visual><origin xyz="{" ".join(map(str, xyz))}"/>'
        f'<geometry><box size="{" ".join(map(str, size))}"/></geometry>'
        f'<material name="m"><color rgba="{" ".join(map(str, rgba))}"/></material></visual></link></robot>'
    )
    return path


def _camera_above(height: float) -> np.ndarray:
    """A camera at (0, 0, height) looking straight down: camera x = base x, y = -base y, z = -base z."""
    T = np.diag([1.0, -1.0, -1.0, 1.0])
    T[2, 3] = height
    return T


def test_render_has_documented_shapes_types_and_background(renderer, arm):
    q = np.array([0.3, 0.6, -0.9, 0.5, 1.0])
    out = renderer.render(q, sphere_camera(0.4, 0.5, 1.4, TARGET), CAMERA, background=(0.1, 0.2, 0.3))
    H, W = CAMERA.height, CAMERA.width
    assert out.rgb.shape == (H, W, 3) and out.rgb.dtype == np.float32
    assert out.mask.shape == (H, W) and out.mask.dtype == bool
    assert out.depth.shape == (H, W) and out.depth.dtype == np.float32
    assert out.link_id.shape == (H, W) and out.link_id.dtype == np.int16
    assert 300 < out.mask.sum() < 0.5 * H * W
    background = np.tile(np.float32([0.1, 0.2, 0.3]), ((~out.mask).sum(), 1))
    np.testing.assert_array_equal(out.rgb[~out.mask], background)
    assert np.all(out.depth[~out.mask] == 0) and np.all(out.link_id[~out.mask] == -1)
    assert np.all(out.depth[out.mask] > 0.5) and np.all(out.depth[out.mask] < 2.5)
    assert np.all((out.link_id[out.mask] >= 0) & (out.link_id[out.mask] < len(arm.links)))
    assert out.rgb.min() >= 0.0 and out.rgb.max() <= 1.0


def test_box_face_depth_silhouette_and_shading_match_the_geometry(tmp_path: Path):
    rgba = (0.2, 0.6, 0.9, 1.0)
    robot = load_urdf(_box_robot(tmp_path, rgba=rgba))
    camera = PinholeCamera(fx=150.0, fy=140.0, cx=60.0, cy=66.0, width=128, height=120)
    renderer = RobotMeshRenderer(robot, ambient=0.3)
    out = renderer.render(np.zeros(0), _camera_above(1.0), camera)
    # Only the top face (z = 0.05) is visible: depth 0.95 m everywhere on the robot.
    np.testing.assert_allclose(out.depth[out.mask], 0.95, atol=1e-5)
    # Its silhouette is the rectangle x in [0, 0.2], y in [-0.2, 0.1] (base) -> camera y = -base y, tested at
    # pixel centres (u + 0.5, v + 0.5).
    u = (np.arange(camera.width) + 0.5 - camera.cx) / camera.fx * 0.95
    v = (np.arange(camera.height) + 0.5 - camera.cy) / camera.fy * 0.95
    inside_u = (u > 0.0) & (u < 0.2)
    inside_v = (v > -0.1) & (v < 0.2)
    expected = inside_v[:, None] & inside_u[None, :]
    assert np.sum(expected != out.mask) <= 2  # at most a pixel centre exactly on an edge
    # Its centroid is the projection of the face centre (0.1, -0.05) -> camera (0.1, 0.05, 0.95).
    rows, cols = np.nonzero(out.mask)
    centroid = np.array([cols.mean() + 0.5, rows.mean() + 0.5])
    np.testing.assert_allclose(centroid, [camera.cx + camera.fx * 0.1 / 0.95, camera.cy + camera.fy * 0.05 / 0.95],
                               atol=0.5)
    # Lambertian head light: colour = albedo * (ambient + (1 - ambient) * cos(ray, normal)).
    d = camera_rays(camera)
    cos = 1.0 / np.linalg.norm(d, axis=-1)
    expected_rgb = np.asarray(rgba[:3])[None, None] * (0.3 + 0.7 * cos)[..., None]
    np.testing.assert_allclose(out.rgb[out.mask], expected_rgb[out.mask], atol=1e-5)
    assert np.all(out.link_id[out.mask] == 0)


def test_mask_extent_and_centroid_follow_the_projected_posed_mesh(renderer, arm):
    rng = np.random.default_rng(3)
    for k in range(4):
        q = arm.lower + rng.random(5) * (arm.upper - arm.lower)
        T = sphere_camera(rng.uniform(0, 2 * math.pi), math.radians(rng.uniform(10, 50)), 1.5, TARGET)
        out = renderer.render(q, T, CAMERA)
        uv = _project(np.vstack(list(_posed_link_vertices(arm, q).values())), T, CAMERA)
        rows, cols = np.nonzero(out.mask)
        # The silhouette's extremes are at vertices: the mask's outermost pixel centres lie within a pixel of them.
        for got, want in (
            (cols.min() + 0.5, uv[:, 0].min()), (cols.max() + 0.5, uv[:, 0].max()),
            (rows.min() + 0.5, uv[:, 1].min()), (rows.max() + 0.5, uv[:, 1].max()),
        ):
            assert abs(got - want) < 1.5, (k, got, want)
        # Centroid: every mask pixel is covered by some projected triangle; rasterising all triangles' projections
        # (no occlusion needed for a silhouette) gives the same pixel set, hence the same centroid.
        covered = _rasterise_silhouette(arm, q, T)
        assert np.sum(covered != out.mask) <= 0.02 * out.mask.sum() + 4
        c_rows, c_cols = np.nonzero(covered)
        np.testing.assert_allclose([cols.mean(), rows.mean()], [c_cols.mean(), c_rows.mean()], atol=0.5)


def _rasterise_silhouette(arm, q: np.ndarray, T_camera_base: np.ndarray) -> np.ndarray:
    """[H, W] bool: pixel centres inside any projected triangle (edge functions), independent of ray casting."""
    H, W = CAMERA.height, CAMERA.width
    px = np.stack(np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5), axis=-1).reshape(-1, 2)
    covered = np.zeros(H * W, dtype=bool)
    posed = _posed_link_vertices(arm, q)
    for link, (_, faces, _) in link_meshes(arm).items():
        uv = _project(posed[arm.links.index(link)], T_camera_base, CAMERA)
        for tri in uv[faces]:
            lo, hi = tri.min(axis=0), tri.max(axis=0)
            cand = np.nonzero(np.all((px >= lo) & (px <= hi), axis=1))[0]
            if len(cand) == 0:
                continue
            p = px[cand]
            e = [(tri[(i + 1) % 3, 0] - tri[i, 0]) * (p[:, 1] - tri[i, 1])
                 - (tri[(i + 1) % 3, 1] - tri[i, 1]) * (p[:, 0] - tri[i, 0]) for i in range(3)]
            inside = (e[0] >= 0) & (e[1] >= 0) & (e[2] >= 0) | (e[0] <= 0) & (e[1] <= 0) & (e[2] <= 0)
            covered[cand[inside]] = True
    return covered.reshape(H, W)


def test_link_ids_and_depths_point_at_the_surface_of_that_link(renderer, arm):
    q = np.array([-0.7, 0.8, 1.1, -0.6, 0.4])
    T = sphere_camera(2.0, math.radians(30), 1.3, TARGET)
    out = renderer.render(q, T, CAMERA)
    # Back-project every robot pixel with its depth into the base frame.
    rows, cols = np.nonzero(out.mask)
    rays = camera_rays(CAMERA)[rows, cols].astype(np.float64)
    p_cam = rays * out.depth[rows, cols, None]
    T_base_camera = np.linalg.inv(T)
    p_base = p_cam @ T_base_camera[:3, :3].T + T_base_camera[:3, 3]
    posed = _posed_link_vertices(arm, q)
    meshes = link_meshes(arm)
    distances = np.full((len(p_base), len(arm.links)), np.inf)
    for link, (_, faces, _) in meshes.items():
        i = arm.links.index(link)
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(posed[i].astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32)))
        distances[:, i] = scene.compute_distance(o3d.core.Tensor(p_base.astype(np.float32))).numpy()
    ids = out.link_id[rows, cols]
    # Each hit point lies on the surface of the link named by link_id (float32 ray casting: well below 1 mm)...
    assert np.all(distances[np.arange(len(ids)), ids] < 1e-3)
    # ...and that link is the nearest one, except where links touch (joints).
    assert np.mean(distances.argmin(axis=1) == ids) > 0.97
    assert len(np.unique(ids)) >= 5  # the view sees most of the arm


def test_renders_are_deterministic_and_follow_the_joints(renderer):
    T = sphere_camera(0.0, 0.3, 1.4, TARGET)
    a = renderer.render(np.array([0.0, 0.3, 0.3, 0.0, 0.0]), T, CAMERA)
    b = renderer.render(np.array([0.0, 0.3, 0.3, 0.0, 0.0]), T, CAMERA)
    c = renderer.render(np.array([0.0, -0.3, 0.3, 0.0, 0.0]), T, CAMERA)
    np.testing.assert_array_equal(a.rgb, b.rgb)
    np.testing.assert_array_equal(a.depth, b.depth)
    # The camera looks along -x at the arm bending in the xz plane: the shoulder flips the arm left-right.
    assert np.sum(a.mask != c.mask) > 0.3 * a.mask.sum()


def test_a_128px_render_of_the_test_arm_takes_well_under_100_ms(renderer):
    q = np.array([0.2, 0.4, -0.6, 0.3, 0.1])
    T = sphere_camera(0.7, 0.5, 1.4, TARGET)
    renderer.render(q, T, CAMERA)  # rays cached per camera
    times = []
    for _ in range(10):
        start = time.perf_counter()
        renderer.render(q, T, CAMERA)
        times.append(time.perf_counter() - start)
    assert np.median(times) < 0.05, times


def test_render_rejects_bad_inputs(renderer):
    with pytest.raises(ValueError, match=r"T_camera_base has shape \(3, 4\)"):
        renderer.render(np.zeros(5), np.eye(4)[:3], CAMERA)
    with pytest.raises(ValueError, match=r"expected \[\.\.\., 5\]"):
        renderer.render(np.zeros(4), np.eye(4), CAMERA)
