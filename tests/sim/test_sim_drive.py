"""Synthetic drives follow the road at the configured speed, rate and height."""

from __future__ import annotations

import numpy as np
import pytest

from gen3d_ros.sim.drive import simulate_drive
from gen3d_ros.sim.lidar import LidarConfig
from gen3d_ros.sim.scene import Scene, SceneConfig, generate_scene


@pytest.fixture(scope="module")
def scene() -> Scene:
    cfg = SceneConfig(straight_road_probability=0.0, road_curve_amplitude_m=4.0)  # a curved road
    return generate_scene(cfg, seed=5)


def test_drive_follows_the_centreline_at_speed_and_height(scene: Scene) -> None:
    sweeps = simulate_drive(scene, LidarConfig.preset("demo"), n_sweeps=12, speed_mps=8.0, rate_hz=10.0,
                            sensor_height_m=1.8, seed=0)
    assert len(sweeps) == 12
    np.testing.assert_allclose([s.stamp_s for s in sweeps], np.arange(12) / 10.0)
    pos = np.array([s.T_world_lidar[:3, 3] for s in sweeps])
    step = np.linalg.norm(np.diff(pos[:, :2], axis=0), axis=1)
    np.testing.assert_allclose(step, 0.8, atol=0.01)
    s_along, d = scene.road.project(pos[:, :2])
    assert np.abs(d).max() < 0.1  # on the centreline (the sensor leans with the ground by a few cm)
    np.testing.assert_allclose(np.diff(s_along), 0.8, atol=0.02)
    # heading along the road: the sensor x axis is the road tangent
    x_axis = np.array([s.T_world_lidar[:3, 0] for s in sweeps])
    tangent = scene.road.tangent(s_along)
    assert np.all(np.sum(x_axis[:, :2] * tangent, axis=1) > 0.995)
    height = pos[:, 2] - scene.ground_height(pos[:, :2])
    np.testing.assert_allclose(height, 1.8, atol=0.01)
    for sw in sweeps:
        assert len(sw.scan) > 3000
        assert np.array_equal(sw.scan.T_world_lidar, sw.T_world_lidar)
    # the curve turns the heading over the drive
    yaw = np.arctan2(x_axis[:, 1], x_axis[:, 0])
    assert np.ptp(np.unwrap(yaw)) > 1e-3


def test_drive_is_reproducible_and_seed_moves_the_start(scene: Scene) -> None:
    a = simulate_drive(scene, LidarConfig.preset("demo"), n_sweeps=2, seed=3)
    b = simulate_drive(scene, LidarConfig.preset("demo"), n_sweeps=2, seed=3)
    c = simulate_drive(scene, LidarConfig.preset("demo"), n_sweeps=2, seed=4)
    assert np.array_equal(a[1].scan.points, b[1].scan.points)
    assert not np.allclose(a[0].T_world_lidar, c[0].T_world_lidar)


def test_a_drive_longer_than_the_road_is_refused(scene: Scene) -> None:
    with pytest.raises(ValueError, match="covers .* m but the road inside the scene is"):
        simulate_drive(scene, LidarConfig.preset("demo"), n_sweeps=500, seed=0)


def test_motion_distortion_skews_late_firings_only(scene: Scene) -> None:
    cfg = LidarConfig.preset("demo").with_(range_noise_std_m=0.0)
    kw = dict(n_sweeps=1, speed_mps=10.0, seed=1)
    still = simulate_drive(scene, cfg, **kw)[0].scan
    moving = simulate_drive(scene, cfg, motion_distortion=True, **kw)[0].scan
    assert np.array_equal(still.T_world_lidar, moving.T_world_lidar)

    def by_firing(scan):  # (time, ring) -> point
        return {(round(float(t), 6), int(r)): p for t, r, p in zip(scan.time, scan.ring, scan.points)}

    a, b = by_firing(still), by_firing(moving)
    common = sorted(set(a) & set(b))
    shift = np.array([np.linalg.norm(a[k] - b[k]) for k in common])
    t = np.array([k[0] for k in common])
    assert np.median(shift[t < 0.005]) < 0.02  # the sensor has hardly moved yet
    assert np.median(shift[t > 0.08]) > 0.3  # up to 1 m travelled by the end of the sweep
