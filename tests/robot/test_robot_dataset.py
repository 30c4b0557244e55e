"""Multi-view robot datasets (gen3d_ros.sim.robot_dataset): framing, determinism, storage."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gen3d_ros.geometry.camera import PinholeCamera
from gen3d_ros.robot.kinematics import ForwardKinematics
from gen3d_ros.robot.meshes import posed_mesh
from gen3d_ros.robot.urdf import load_urdf, test_arm_urdf
from gen3d_ros.sim.robot_dataset import RobotViews, fitting_distance, generate_robot_views, robot_view_target
from gen3d_ros.sim.robot_render import RobotMeshRenderer

CAMERA = PinholeCamera.from_fov(96, 80, 40.0)


@pytest.fixture(scope="module")
def arm():
    return load_urdf(test_arm_urdf())


@pytest.fixture(scope="module")
def views(arm) -> RobotViews:
    return generate_robot_views(arm, 12, CAMERA, seed=5)


def _touches_border(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def test_views_have_documented_shapes_and_metadata(views, arm):
    n, H, W = 12, CAMERA.height, CAMERA.width
    assert len(views) == n
    assert views.q.shape == (n, 5) and views.T_camera_base.shape == (n, 4, 4)
    assert views.rgb.shape == (n, H, W, 3) and views.rgb.dtype == np.float32
    assert views.mask.shape == (n, H, W) and views.mask.dtype == bool
    assert views.depth.shape == (n, H, W) and views.depth.dtype == np.float32
    assert views.link_id.shape == (n, H, W) and views.link_id.dtype == np.int16
    assert views.camera == CAMERA
    assert views.joint_names == arm.actuated_joints and views.link_names == arm.links
    assert views.urdf_sha256 == arm.urdf_sha256
    assert np.all(views.q >= arm.lower) and np.all(views.q <= arm.upper)
    R = views.T_camera_base[:, :3, :3]
    np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)


def test_robot_is_fully_inside_every_image(arm):
    for framing in ("workspace", "pose"):
        views = generate_robot_views(arm, 10, CAMERA, seed=1, framing=framing, distance_scale=(0.6, 1.0))
        for i in range(len(views)):
            assert views.mask[i].sum() > 40, (framing, i)
            assert not _touches_border(views.mask[i]), (framing, i)


def test_cameras_look_at_the_workspace_centre_from_where_it_fits(views, arm):
    centre, radius = robot_view_target(arm)
    c = np.append(centre, 1.0)
    for T in views.T_camera_base:
        p = (T @ c)[:3]
        np.testing.assert_allclose(p[:2] / p[2], 0.0, atol=1e-9)  # on the optical axis
        assert 1.0 * fitting_distance(radius, CAMERA) - 1e-9 <= p[2]
        elevation = math.degrees(math.asin(-np.linalg.inv(T)[2, 2]))  # camera z axis points down by this much
        assert 5.0 - 1e-6 <= elevation <= 60.0 + 1e-6


def test_views_are_what_the_renderer_draws(views, arm):
    renderer = RobotMeshRenderer(arm)
    for i in (0, 7):
        out = renderer.render(views.q[i], views.T_camera_base[i], CAMERA)
        np.testing.assert_array_equal(out.rgb, views.rgb[i])
        np.testing.assert_array_equal(out.depth, views.depth[i])
        np.testing.assert_array_equal(out.link_id, views.link_id[i])


def test_same_seed_same_views_other_seed_other_views(arm, views):
    again = generate_robot_views(arm, 12, CAMERA, seed=5)
    for name in ("q", "T_camera_base", "rgb", "mask", "depth", "link_id"):
        np.testing.assert_array_equal(getattr(again, name), getattr(views, name), err_msg=name)
    other = generate_robot_views(arm, 12, CAMERA, seed=6)
    assert not np.allclose(other.q, views.q) and not np.allclose(other.T_camera_base, views.T_camera_base)


def test_save_and_load_round_trip_exactly(views, tmp_path: Path):
    path = tmp_path / "views.npz"
    views.save_npz(path)
    loaded = RobotViews.load_npz(path)
    for name in ("q", "T_camera_base", "rgb", "mask", "depth", "link_id"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(views, name), err_msg=name)
        assert getattr(loaded, name).dtype == getattr(views, name).dtype
    assert loaded.camera == views.camera
    assert (loaded.joint_names, loaded.link_names) == (views.joint_names, views.link_names)
    assert (loaded.robot_name, loaded.urdf_sha256) == (views.robot_name, views.urdf_sha256)
    part = loaded.subset([2, 4])
    assert len(part) == 2 and np.array_equal(part.rgb[1], views.rgb[4])


def test_workspace_sphere_holds_the_robot_in_unseen_poses(arm):
    centre, radius = robot_view_target(arm)
    # The test arm reaches about 0.6 m from the shoulder: a sphere of roughly that radius around the base column.
    assert 0.5 < radius < 0.9 and abs(centre[0]) < 0.1 and abs(centre[1]) < 0.1
    fk = ForwardKinematics(arm, dtype=torch.float64)
    T = fk(fk.sample(200, torch.Generator().manual_seed(123))).numpy()
    worst = max(np.linalg.norm(posed_mesh(arm, T[i])[0] - centre, axis=1).max() for i in range(len(T)))
    assert worst <= radius * 1.02  # sampled, not exact: unseen poses stay inside up to a 2 % margin
    again = robot_view_target(arm)
    np.testing.assert_array_equal(again[0], centre)


def test_fitting_distance_puts_the_sphere_exactly_at_the_narrowest_edge():
    camera = PinholeCamera(fx=100.0, fy=120.0, cx=50.0, cy=40.0, width=100, height=100)
    d = fitting_distance(0.5, camera, margin_px=0.0)
    # Narrowest half-FOV: up (cy = 40 px at fy = 120) -> tan = 1/3.
    assert d == pytest.approx(0.5 / math.sin(math.atan(40.0 / 120.0)))
    # The tangent point of the sphere seen at that distance projects onto the image's top edge (v = 0).
    half = math.asin(0.5 / d)
    assert camera.cy - camera.fy * math.tan(half) == pytest.approx(0.0, abs=1e-9)


def test_pose_framing_fills_more_of_the_image(arm):
    wide = generate_robot_views(arm, 6, CAMERA, seed=2)
    tight = generate_robot_views(arm, 6, CAMERA, seed=2, framing="pose")
    np.testing.assert_array_equal(wide.q, tight.q)  # same joint values, other cameras
    assert tight.mask.sum() > 2.0 * wide.mask.sum()


def test_invalid_arguments_are_rejected(arm):
    with pytest.raises(ValueError, match="framing"):
        generate_robot_views(arm, 1, CAMERA, seed=0, framing="closeup")
    with pytest.raises(ValueError, match="distance_scale"):
        generate_robot_views(arm, 1, CAMERA, seed=0, distance_scale=(1.2, 1.0))
    with pytest.raises(ValueError, match="n must be"):
        generate_robot_views(arm, -1, CAMERA, seed=0)
