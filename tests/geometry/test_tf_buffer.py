"""The tf2-less TF buffer against chains computed by hand: composition through the common ancestor, linear +
slerp interpolation, the stated tolerance at the ends, unknown frames and separate trees."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gen3d_ros.geometry.tf_buffer import TransformBuffer, TransformMissing

S = 1_000_000_000  # ns per second


def rigid(yaw_deg: float = 0.0, t=(0.0, 0.0, 0.0)) -> np.ndarray:
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    T = np.eye(4)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:3, 3] = t
    return T


def apply(T: np.ndarray, p) -> np.ndarray:
    return (T @ np.r_[p, 1.0])[:3]


@pytest.fixture
def car() -> TransformBuffer:
    """map -> odom (static, 10 m along x) -> base_link (moving: 0 -> 2 m and yaw 0 -> 90 deg over 1 s) -> lidar
    (static, 1.5 m up) and base_link -> camera (static, 0.2 m ahead, 0.5 m up, looking left)."""
    tf = TransformBuffer(tolerance_ns=50_000_000)
    tf.set_transform("map", "odom", 0, rigid(t=(10.0, 0.0, 0.0)), static=True)
    tf.set_transform("odom", "base_link", 0, rigid(0.0, (0.0, 0.0, 0.0)))
    tf.set_transform("odom", "base_link", S, rigid(90.0, (2.0, 0.0, 0.0)))
    tf.set_transform("base_link", "lidar", 0, rigid(t=(0.0, 0.0, 1.5)), static=True)
    tf.set_transform("base_link", "camera", 0, rigid(90.0, (0.2, 0.0, 0.5)), static=True)
    return tf


def test_chain_lookup_interpolates_translation_linearly_and_rotation_by_slerp(car):
    T = car.lookup("map", "lidar", S // 2)  # base_link at (1, 0, 0), yaw 45 deg
    r = math.sqrt(0.5)
    np.testing.assert_allclose(apply(T, [1.0, 0.0, 0.0]), [11.0 + r, r, 1.5], atol=1e-9)
    np.testing.assert_allclose(apply(T, [0.0, 0.0, 0.0]), [11.0, 0.0, 1.5], atol=1e-9)
    T_quarter = car.lookup("odom", "base_link", S // 4)  # slerp: 22.5 deg, not a normalised lerp of matrices
    np.testing.assert_allclose(T_quarter[:3, :3], rigid(22.5)[:3, :3], atol=1e-9)
    np.testing.assert_allclose(T_quarter[:3, 3], [0.5, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(car.lookup("lidar", "map", S // 2), np.linalg.inv(T), atol=1e-12)


def test_sibling_frames_meet_at_their_common_parent(car):
    T_camera_lidar = car.lookup("camera", "lidar", S // 2)  # both static under base_link: any time
    # lidar origin is 1.5 m above base; in the camera (0.2 m ahead, 0.5 m up, x pointing left): (0, 0.2, 1.0)
    np.testing.assert_allclose(apply(T_camera_lidar, [0.0, 0.0, 0.0]), [0.0, 0.2, 1.0], atol=1e-12)
    np.testing.assert_allclose(car.lookup("lidar", "lidar", 0), np.eye(4))


def test_stamps_outside_the_samples_are_served_within_the_tolerance_only(car):
    np.testing.assert_allclose(car.lookup("odom", "base_link", S + 40_000_000), rigid(90.0, (2.0, 0.0, 0.0)),
                               atol=1e-12)
    with pytest.raises(TransformMissing, match="after the last sample"):
        car.lookup("map", "lidar", S + 60_000_000)
    with pytest.raises(TransformMissing, match="before the first sample"):
        car.lookup("map", "lidar", -60_000_000)
    # static edges hold at any time
    np.testing.assert_allclose(car.lookup("base_link", "lidar", 100 * S)[:3, 3], [0.0, 0.0, 1.5])


def test_unknown_frames_and_separate_trees_are_missing_with_the_reason(car):
    with pytest.raises(TransformMissing, match="'velodyne' is not in TF"):
        car.lookup("map", "velodyne", 0)
    car.set_transform("world", "robot_arm", 0, np.eye(4), static=True)
    with pytest.raises(TransformMissing, match="two unconnected TF trees"):
        car.lookup("map", "robot_arm", 0)
    assert not car.can_transform("map", "robot_arm", 0) and car.can_transform("map", "camera", S // 2)


def test_old_samples_are_forgotten_after_the_cache_time():
    tf = TransformBuffer(tolerance_ns=0, cache_ns=2 * S)
    for k in range(5):
        tf.set_transform("odom", "base_link", k * S, rigid(t=(k, 0.0, 0.0)))
    np.testing.assert_allclose(tf.lookup("odom", "base_link", 3 * S + S // 2)[:3, 3], [3.5, 0.0, 0.0])
    with pytest.raises(TransformMissing):
        tf.lookup("odom", "base_link", S)  # older than 4 s - 2 s
    with pytest.raises(ValueError, match="two different"):
        tf.set_transform("odom", "odom", 0, np.eye(4))
