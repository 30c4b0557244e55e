"""Sensor randomisation: the drawn sensors' statistics, the dropout patterns and the randomised dataset."""

from __future__ import annotations

import numpy as np
import open3d as o3d
import pytest

from gen3d_ros.sim.dataset import CompletionDataset, CompletionDatasetConfig
from gen3d_ros.sim.lidar import LAYOUTS, LidarConfig, SensorRandomization, beam_layout, random_lidar, simulate_scan
from gen3d_ros.sim.scene import Scene, SceneConfig


def _room() -> Scene:
    """A closed 40 m box around the origin (floor at z = -2 m): every ray hits something."""
    box = o3d.geometry.TriangleMesh.create_box(40.0, 40.0, 20.0).translate((-20.0, -20.0, -2.0))
    return Scene.from_mesh(box)


def test_random_lidars_cover_beam_counts_layouts_and_fields_of_view():
    rng = np.random.default_rng(0)
    R = SensorRandomization()
    cfgs = [random_lidar(rng, R) for _ in range(200)]
    assert {c.n_beams for c in cfgs} == {16, 32, 64, 128}
    assert {c.name.split("-")[2] for c in cfgs} == set(LAYOUTS)
    for c in cfgs:
        el = np.degrees(c.beam_elevations_rad())
        assert np.all(np.diff(el) >= 0) and el[0] >= -30.0 - 1e-9 and el[-1] <= 22.5 + 1e-9
        assert c.n_beams * c.n_columns <= R.max_rays * 1.01
    share_partial = np.mean([c.hfov_deg is not None for c in cfgs])
    assert abs(share_partial - R.partial_fov_probability) < 0.08
    share_ego = np.mean([c.ego_box_m is not None for c in cfgs])
    assert abs(share_ego - R.ego_probability) < 0.1


def test_non_uniform_layouts_are_denser_where_their_sensors_are():
    uniform = np.diff(beam_layout("uniform", 64, -25.0, 15.0))
    assert np.allclose(uniform, uniform[0])
    dense = beam_layout("horizon_dense", 32, -25.0, 15.0)
    gaps = np.diff(dense)
    near = np.abs(dense[:-1]) < 3.0
    assert gaps[near].mean() < 0.5 * gaps[~near].mean()
    band = beam_layout("centre_band", 64, -25.0, 15.0)
    assert np.mean((band >= -6.0) & (band <= 2.0)) == pytest.approx(0.7, abs=0.03)
    two = np.diff(beam_layout("two_block", 64, -24.9, 2.0))
    assert two[:31].mean() > two[33:].mean()


def test_random_dropout_fraction_matches_the_configured_rate():
    scene = _room()
    base = LidarConfig(n_beams=32, horizontal_resolution_deg=1.0, range_noise_std_m=0.0, dropout=0.0)
    full = len(simulate_scan(scene, base, np.eye(4), seed=0))
    lossy = len(simulate_scan(scene, base.with_(dropout=0.2), np.eye(4), seed=0))
    assert lossy / full == pytest.approx(0.8, abs=0.02)
    rings = len(simulate_scan(scene, base.with_(ring_dropout=tuple([1.0] * 8 + [0.0] * 24)), np.eye(4), seed=0))
    assert rings / full == pytest.approx(24 / 32, abs=1e-6)


def test_partial_fov_and_ego_box_remove_their_returns():
    scene = _room()
    base = LidarConfig(n_beams=16, horizontal_resolution_deg=1.0, range_noise_std_m=0.0)
    front = simulate_scan(scene, base.with_(hfov_deg=(-90.0, 90.0)), np.eye(4), seed=0)
    assert np.all(front.points[:, 0] >= -1e-3)
    assert len(front) / len(simulate_scan(scene, base, np.eye(4), seed=0)) == pytest.approx(0.5, abs=0.02)
    ego = (-2.0, -1.0, -2.1, 2.0, 1.0, -0.5)  # a car roof 0.5 m under the sensor
    scan = simulate_scan(scene, base.with_(ego_box_m=ego), np.eye(4), seed=0)
    r_xy = np.hypot(scan.points[:, 0], scan.points[:, 1])
    floor = scan.points[:, 2] < -1.9
    assert floor.any() and r_xy[floor].min() > 2.0  # the floor under and right around the car is hidden


def test_dark_surfaces_lose_returns():
    scene = _room()
    base = LidarConfig(n_beams=16, horizontal_resolution_deg=1.0, reflectivity={"terrain": 0.05})
    n = len(simulate_scan(scene, base, np.eye(4), seed=0))
    dark = len(simulate_scan(scene, base.with_(dark_dropout=1.0), np.eye(4), seed=0))
    assert dark < 0.35 * n  # intensity ~0.03 of 0.15: ~80 % lost
    bright = base.with_(reflectivity={"terrain": 0.9}, dark_dropout=1.0)
    assert len(simulate_scan(scene, bright, np.eye(4), seed=0)) > 0.97 * n


def test_randomized_dataset_draws_heights_in_range_and_levels_the_sweep():
    cfg = CompletionDatasetConfig(sensor="randomized", sensor_height_m=(1.2, 2.5), tilt_max_deg=5.0,
                                  alignment_residual_deg=0.0, voxel_size_m=0.5, half_extent_m=(8.0, 8.0),
                                  z_range_m=(-3.5, 3.5), length=40, scans_per_scene=40,
                                  scene=SceneConfig(size_m=30.0, n_buildings=2, n_trees=2, n_cars=2))
    ds = CompletionDataset(cfg)
    heights = np.array([ds.sensor_draw(i).height_m for i in range(40)])
    assert heights.min() >= 1.2 and heights.max() <= 2.5 and heights.std() > 0.25
    assert len({ds.sensor_draw(i).lidar.n_beams for i in range(40)}) >= 3
    rays = ds.scene(0).to_raycasting_scene()
    for i in range(3):
        s = ds.sample(i)
        assert s.partial_points.shape[0] > 100
        # levelled exactly (no residual): the sample-frame points, through the level pose, lie on the scene
        T = s.T_world_lidar
        world = s.partial_points.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
        d = rays.compute_distance(o3d.core.Tensor(world.astype(np.float32))).numpy()
        assert np.median(d) < 0.05 and np.quantile(d, 0.95) < 0.15


def test_randomized_config_round_trips_through_a_dict():
    cfg = CompletionDatasetConfig(sensor="randomized", sensor_height_m=(1.2, 2.5), tilt_max_deg=3.0,
                                  sensor_randomization=SensorRandomization(beams=(32, 64), beam_weights=(1, 1)))
    again = CompletionDatasetConfig.from_dict(cfg.to_dict())
    assert again.to_dict() == cfg.to_dict() and again.sensor_randomization.beams == (32, 64)
