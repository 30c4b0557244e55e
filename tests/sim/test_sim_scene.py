"""Procedural street scenes: reproducibility, placement, ground, surface samples, speed."""

from __future__ import annotations

import math

import numpy as np
import open3d as o3d
import pytest

from gen3d_ros.sim.lidar import LidarConfig, simulate_scan
from gen3d_ros.sim.scene import (
    CLASS_NAMES,
    Scene,
    SceneConfig,
    generate_scene,
    sample_surface,
    triangle_areas,
)


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    return [generate_scene(SceneConfig(), seed) for seed in (0, 1, 2)]


def test_same_seed_gives_the_same_scene_and_another_seed_does_not() -> None:
    a, b, c = (generate_scene(SceneConfig(), s) for s in (11, 11, 12))
    assert np.array_equal(a.vertices, b.vertices)
    assert np.array_equal(a.triangles, b.triangles)
    assert np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.road_centerline, b.road_centerline)
    assert a.vertices.shape != c.vertices.shape or not np.allclose(a.vertices, c.vertices)


def test_every_triangle_has_a_label_and_a_street_has_its_classes(scenes: list[Scene]) -> None:
    for scene in scenes:
        assert scene.labels.shape == (len(scene.mesh.triangles),)
        assert scene.labels.min() >= 0 and scene.labels.max() < len(scene.class_names)
        present = {scene.class_names[i] for i in np.unique(scene.labels)}
        for name in ("terrain", "road", "lane_marking", "sidewalk", "curb", "building", "car", "pole",
                     "traffic_sign", "trunk", "vegetation"):
            assert name in present, f"seed {scene.seed} lacks {name}"
        assert list(scene.class_names) == list(CLASS_NAMES)
        kinds = [o.kind for o in scene.objects]
        assert kinds.count("building") >= 3
        assert sum(k in ("car", "van", "truck") for k in kinds) >= 4


def _footprint_points(obj, n: int = 9, shrink: float = 0.02) -> np.ndarray:
    u = np.linspace(-1.0, 1.0, n)
    uu, vv = np.meshgrid(u, u)
    hx, hy = max(obj.half_size_xy[0] - shrink, 0.0), max(obj.half_size_xy[1] - shrink, 0.0)
    c, s = math.cos(obj.yaw), math.sin(obj.yaw)
    local = np.column_stack([uu.ravel() * hx, vv.ravel() * hy])
    return np.asarray(obj.center_xy) + local @ np.array([[c, s], [-s, c]])


def _inside(obj, pts: np.ndarray) -> np.ndarray:
    c, s = math.cos(obj.yaw), math.sin(obj.yaw)
    rel = pts - np.asarray(obj.center_xy)
    u, v = rel @ np.array([c, s]), rel @ np.array([-s, c])
    return (np.abs(u) < obj.half_size_xy[0]) & (np.abs(v) < obj.half_size_xy[1])


def test_objects_stand_where_they_belong(scenes: list[Scene]) -> None:
    for scene in scenes:
        cfg = scene.config
        half_road = cfg.road_width_m / 2.0
        corridor = half_road + cfg.sidewalk_width_m
        for obj in scene.objects:
            _, d = scene.road.project(_footprint_points(obj))
            ad = np.abs(d)
            if obj.kind in ("car", "van", "truck"):
                assert ad.max() < half_road and ad.min() > 0.4, (obj, ad.min(), ad.max())
            elif obj.kind in ("building", "wall", "fence"):
                assert ad.min() > corridor, (obj, ad.min())
            elif obj.kind in ("street_light", "sign"):
                assert half_road < ad.min() and ad.max() < corridor, (obj, ad)
            elif obj.kind == "tree":
                assert ad.min() > half_road, (obj, ad)
            assert np.all(np.abs(_footprint_points(obj)) <= cfg.size_m / 2.0)


def test_object_footprints_do_not_overlap(scenes: list[Scene]) -> None:
    for scene in scenes:
        objs = scene.objects
        for i, a in enumerate(objs):
            pts = _footprint_points(a)
            for j, b in enumerate(objs):
                if i != j:
                    assert not _inside(b, pts).any(), f"seed {scene.seed}: {a.kind} {i} overlaps {b.kind} {j}"


def test_ground_slope_is_bounded_and_road_lies_on_the_ground_model(scenes: list[Scene]) -> None:
    for scene in scenes:
        cfg = scene.config
        xy = np.random.default_rng(0).uniform(-cfg.size_m / 2, cfg.size_m / 2, (5000, 2))
        grad = np.linalg.norm(scene.ground.slope(xy), axis=1)
        assert grad.max() <= math.tan(math.radians(cfg.max_slope_deg)) + 1e-9
        # road/terrain triangles are no steeper than the bound (+0.3 deg for the piecewise-linear mesh)
        v, f = scene.vertices, scene.triangles
        flat = np.isin(scene.labels, [scene.class_id("road"), scene.class_id("terrain")])
        n = np.cross(v[f[flat, 1]] - v[f[flat, 0]], v[f[flat, 2]] - v[f[flat, 0]])
        tilt = np.degrees(np.arccos(np.abs(n[:, 2]) / np.linalg.norm(n, axis=1)))
        assert tilt.max() <= cfg.max_slope_deg + 0.3
        # cast rays up from below: the road top sits on h(x, y), the sidewalk one curb height above it
        road = scene.road
        s = np.linspace(road.length * 0.3, road.length * 0.7, 40)
        mid_sidewalk = cfg.road_width_m / 2 + cfg.sidewalk_width_m / 2
        for d, dz, tol in ((0.0, 0.0, 0.007), (mid_sidewalk, cfg.curb_height_m, 0.025)):
            pxy = road.point(s) + road.normal(s) * d
            origins = np.column_stack([pxy, scene.ground_height(pxy) - 5.0])
            rays = np.column_stack([origins, np.tile([0.0, 0.0, 1.0], (len(s), 1))]).astype(np.float32)
            t = scene.to_raycasting_scene().cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
            # first surface above: within tol of the expected height
            np.testing.assert_allclose(origins[:, 2] + t, scene.ground_height(pxy) + dz, atol=tol)


def test_sample_surface_is_uniform_over_area_and_on_the_surface() -> None:
    box = o3d.geometry.TriangleMesh.create_box(4.0, 2.0, 1.0)  # faces 8, 4 and 2 m^2, two of each
    scene = Scene.from_mesh(box)
    pts, labels = sample_surface(scene, 0.05, seed=0, return_labels=True)
    area = triangle_areas(scene).sum()
    assert area == pytest.approx(28.0)
    assert abs(pts.shape[0] - area / 0.05**2) < 0.01 * area / 0.05**2
    assert pts.dtype == np.float32 and labels.shape == (pts.shape[0],)
    dist = scene.to_raycasting_scene().compute_distance(o3d.core.Tensor(pts)).numpy()
    assert dist.max() < 1e-5
    # share per face is proportional to its area: z = 0 face (4 x 2 = 8 m^2) holds 8 / 28 of the samples
    share = np.mean(pts[:, 2] < 1e-6)
    assert share == pytest.approx(8.0 / 28.0, abs=0.005)
    # uniform within a face: the four quadrants of the bottom face get equal counts
    bottom = pts[pts[:, 2] < 1e-6]
    quad = (bottom[:, 0] < 2.0).astype(int) * 2 + (bottom[:, 1] < 1.0)
    counts = np.bincount(quad, minlength=4)
    assert np.all(np.abs(counts / counts.sum() - 0.25) < 0.01)
    # aabb keeps only nearby triangles
    near = sample_surface(scene, 0.05, seed=0, aabb=(np.array([-1.0, -1, -1]), np.array([5.0, 3, 0.01])))
    assert near.shape[0] < pts.shape[0]


def test_scene_and_demo_scan() -> None:
    scene = generate_scene(SceneConfig(size_m=50.0), seed=21)
    scan = simulate_scan(scene, LidarConfig.preset("demo"), scene.road_pose(scene.road.length / 2), seed=0)
    assert len(scan) > 5000


def test_config_errors_name_the_value() -> None:
    with pytest.raises(ValueError, match="size_m=10"):
        SceneConfig(size_m=10.0)
    with pytest.raises(ValueError, match="n_cars=-1"):
        SceneConfig(n_cars=-1)


def test_sim_package_never_imports_rclpy() -> None:
    import subprocess
    import sys

    code = ("import sys, gen3d_ros.sim, gen3d_ros.completion.voxelize; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'rosidl_runtime_py')); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
