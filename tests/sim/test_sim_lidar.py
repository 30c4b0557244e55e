"""Ray-cast LiDAR: analytic ranges, rings, noise, dropout, range window, intensity, presets, speed."""

from __future__ import annotations

import math
import time

import numpy as np
import open3d as o3d
import pytest

from gen3d_ros.sim.lidar import LidarConfig, simulate_scan
from gen3d_ros.sim.scene import CLASS_IDS, Scene, SceneConfig, generate_scene


def _plane_scene(half: float = 300.0, labels: tuple[str, str] = ("road", "road")) -> Scene:
    """z = 0 plane as two triangles: the first (y < x side) and second get ``labels``."""
    v = np.array([[-half, -half, 0.0], [half, -half, 0.0], [half, half, 0.0], [-half, half, 0.0]])
    f = np.array([[0, 1, 2], [0, 2, 3]])
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(v), o3d.utility.Vector3iVector(f))
    return Scene.from_mesh(mesh, labels=np.array([CLASS_IDS[labels[0]], CLASS_IDS[labels[1]]]))


def _room_scene(half: float = 10.0) -> Scene:
    """A closed cube [-half, half]^3 seen from inside."""
    mesh = o3d.geometry.TriangleMesh.create_box(2 * half, 2 * half, 2 * half).translate((-half, -half, -half))
    return Scene.from_mesh(mesh, labels=np.full(12, CLASS_IDS["building"]))


def _pose(x: float = 0.0, y: float = 0.0, z: float = 0.0, yaw: float = 0.0) -> np.ndarray:
    T = np.eye(4)
    c, s = math.cos(yaw), math.sin(yaw)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:3, 3] = [x, y, z]
    return T


def _exact(**kw: object) -> LidarConfig:
    base = dict(range_noise_std_m=0.0, dropout=0.0, intensity_noise_std=0.0, max_range_m=200.0, min_range_m=0.1)
    base.update(kw)
    return LidarConfig(**base)  # type: ignore[arg-type]


def test_ranges_on_a_flat_plane_match_2_over_sin_elevation() -> None:
    scene = _plane_scene()
    cfg = _exact(n_beams=3, vertical_angles_deg=np.array([-10.0, -20.0, -5.0]), horizontal_resolution_deg=1.0)
    scan = simulate_scan(scene, cfg, _pose(3.0, -4.0, 2.0, yaw=0.7), seed=0)
    assert len(scan) == 3 * 360
    rng_ = np.linalg.norm(scan.points.astype(np.float64), axis=1)
    for ring, elev in enumerate((-20.0, -10.0, -5.0)):  # ring 0 is the lowest beam
        sel = scan.ring == ring
        assert sel.sum() == 360
        np.testing.assert_allclose(rng_[sel], 2.0 / math.sin(math.radians(-elev)), rtol=2e-5)
        np.testing.assert_allclose(scan.points[sel, 2], -2.0, atol=1e-4)
        got_elev = np.degrees(np.arcsin(scan.points[sel, 2] / rng_[sel]))
        np.testing.assert_allclose(got_elev, elev, atol=1e-3)
    np.testing.assert_allclose(scan.points_world()[:, 2], 0.0, atol=1e-4)


def test_ranges_on_box_walls_match_distance_over_cosine() -> None:
    scene = _room_scene(10.0)
    cfg = _exact(n_beams=3, vertical_angles_deg=np.array([0.0, 20.0, -30.0]), horizontal_resolution_deg=0.5)
    scan = simulate_scan(scene, cfg, _pose(2.0, 1.0, 0.0), seed=0)
    assert len(scan) == 3 * 720  # a closed room: every ray returns
    p = scan.points.astype(np.float64)
    flat = scan.ring == 1  # the 0 degree beam
    az = np.arctan2(p[flat, 1], p[flat, 0])
    dx = np.where(np.cos(az) > 0, 8.0, 12.0) / np.abs(np.cos(az))
    dy = np.where(np.sin(az) > 0, 9.0, 11.0) / np.maximum(np.abs(np.sin(az)), 1e-12)
    np.testing.assert_allclose(np.linalg.norm(p[flat], axis=1), np.minimum(dx, dy), rtol=2e-5)
    # every point lies on a wall of the room in the world frame
    w = scan.points_world()
    assert np.all(np.isclose(np.abs(w), 10.0, atol=1e-3).any(axis=1))


def test_beam_count_ring_ids_and_firing_times() -> None:
    scene = _room_scene(30.0)
    cfg = LidarConfig.preset("hdl64").with_(dropout=0.0, range_noise_std_m=0.0)
    scan = simulate_scan(scene, cfg, np.eye(4), seed=0)
    assert cfg.n_columns == 2083
    assert len(scan) == 64 * cfg.n_columns
    assert scan.ring.dtype == np.uint16 and set(np.unique(scan.ring)) == set(range(64))
    assert np.all(np.bincount(scan.ring) == cfg.n_columns)
    # ring r has elevation angle r in ascending order
    elev = np.degrees(np.arcsin(scan.points[:, 2] / np.linalg.norm(scan.points, axis=1)))
    mean_elev = np.array([elev[scan.ring == r].mean() for r in range(64)])
    assert np.all(np.diff(mean_elev) > 0)
    assert mean_elev[0] == pytest.approx(-24.9, abs=1e-3) and mean_elev[-1] == pytest.approx(2.0, abs=1e-3)
    # time: within one sweep, non-decreasing in firing order, starting behind the sensor, turning clockwise
    assert scan.time.min() == 0.0 and scan.time.max() < 0.1
    assert np.all(np.diff(scan.time) >= 0)
    first = scan.points[scan.time == 0.0]
    assert np.all(first[:, 0] < 0) and np.allclose(first[:, 1], 0.0, atol=1e-3)
    quarter = scan.points[np.abs(scan.time - 0.025) < 1e-4]  # a quarter turn later: facing +y (clockwise)
    assert np.all(quarter[:, 1] > 0)


def test_dropout_removes_the_configured_fraction() -> None:
    scene = _room_scene(10.0)
    cfg = _exact(n_beams=32, horizontal_resolution_deg=0.4, dropout=0.3)
    scan = simulate_scan(scene, cfg, np.eye(4), seed=3)
    n = 32 * cfg.n_columns
    kept = len(scan) / n
    assert abs(kept - 0.7) < 4.0 * math.sqrt(0.3 * 0.7 / n)


def test_range_noise_has_the_configured_std() -> None:
    scene = _room_scene(10.0)
    truth = simulate_scan(scene, _exact(n_beams=32, horizontal_resolution_deg=0.4), np.eye(4), seed=0)
    noisy = simulate_scan(scene, _exact(n_beams=32, horizontal_resolution_deg=0.4, range_noise_std_m=0.05),
                          np.eye(4), seed=1)
    assert len(noisy) == len(truth)
    err = np.linalg.norm(noisy.points, axis=1).astype(np.float64) - np.linalg.norm(truth.points, axis=1)
    assert err.std() == pytest.approx(0.05, rel=0.03)
    assert abs(err.mean()) < 4.0 * 0.05 / math.sqrt(err.size)
    # noise is along the ray: directions are unchanged
    norms = np.linalg.norm(noisy.points, axis=1) * np.linalg.norm(truth.points, axis=1)
    cos = np.sum(noisy.points * truth.points, axis=1) / norms
    assert cos.min() > 1 - 1e-6


def test_points_stay_inside_the_range_window() -> None:
    scene = _plane_scene()
    # -1 deg hits at 2 / sin(1 deg) = 114.6 m (beyond max), -45 deg at 2.83 m (below min), -10 deg at 11.5 m
    cfg = _exact(n_beams=3, vertical_angles_deg=np.array([-1.0, -45.0, -10.0]), horizontal_resolution_deg=1.0,
                 max_range_m=100.0, min_range_m=3.0, range_noise_std_m=0.05)
    scan = simulate_scan(scene, cfg, _pose(z=2.0), seed=0)
    r = np.linalg.norm(scan.points, axis=1)
    assert len(scan) == 360 and np.all(scan.ring == 1)
    assert r.min() >= 3.0 and r.max() <= 100.0


def test_intensity_is_bounded_and_follows_reflectivity_and_incidence() -> None:
    scene = _plane_scene(labels=("traffic_sign", "road"))
    cfg = _exact(n_beams=2, vertical_angles_deg=np.array([-30.0, -8.0]), horizontal_resolution_deg=1.0)
    scan = simulate_scan(scene, cfg, _pose(z=2.0), seed=0)
    assert scan.intensity.dtype == np.float32
    assert scan.intensity.min() >= 0.0 and scan.intensity.max() <= 1.0
    sign = scan.labels == CLASS_IDS["traffic_sign"]
    assert 0 < sign.sum() < len(scan)
    steep, grazing = scan.ring == 0, scan.ring == 1
    assert scan.intensity[sign & steep].mean() > 3.0 * scan.intensity[~sign & steep].mean()
    assert scan.intensity[sign & steep].mean() > scan.intensity[sign & grazing].mean()
    noisy = simulate_scan(scene, cfg.with_(intensity_noise_std=0.05), _pose(z=2.0), seed=0)
    assert noisy.intensity.std() > scan.intensity.std() * 0.5 and noisy.intensity.max() <= 1.0


def test_motion_distorted_points_stay_on_world_surfaces_in_the_start_frame() -> None:
    scene = _room_scene(10.0)
    cfg = _exact(n_beams=8, horizontal_resolution_deg=1.0)
    T0, T1 = _pose(0.0, 0.0, 0.0), _pose(1.0, 0.5, 0.0, yaw=0.2)
    moving = simulate_scan(scene, cfg, T0, seed=0, T_world_lidar_end=T1)
    static = simulate_scan(scene, cfg, T0, seed=0)
    w = moving.points_world()  # through the start pose only
    assert np.all(np.isclose(np.abs(w), 10.0, atol=1e-3).any(axis=1))
    late = moving.time > 0.08
    assert not np.allclose(moving.points[late], static.points[late], atol=0.1)


def test_presets_match_the_sensors() -> None:
    hdl = LidarConfig.preset("hdl64")
    el = np.degrees(hdl.beam_elevations_rad())
    assert hdl.n_beams == 64 and el.min() == pytest.approx(-24.9) and el.max() == pytest.approx(2.0)
    assert 0.08 <= hdl.horizontal_resolution_deg <= 0.4
    vlp = LidarConfig.preset("VLP-32C")
    el = np.degrees(vlp.beam_elevations_rad())
    assert vlp.n_beams == 32 and el.min() == pytest.approx(-25.0) and el.max() == pytest.approx(15.0)
    assert np.ptp(np.diff(el)) > 1.0  # non-uniform: dense near the horizon
    demo = LidarConfig.preset("demo")
    assert demo.n_beams * demo.n_columns <= 20000
    with pytest.raises(ValueError, match="unknown LiDAR preset 'hdl32'"):
        LidarConfig.preset("hdl32")
    with pytest.raises(ValueError, match="3 angles but n_beams=4"):
        LidarConfig(n_beams=4, vertical_angles_deg=np.array([0.0, 1.0, 2.0]))


def test_hdl64_scan_of_a_street_is_about_100k_points() -> None:
    scene = generate_scene(SceneConfig(), seed=4)
    T = scene.road_pose(scene.road.length / 2.0, height_m=1.73)
    scan = simulate_scan(scene, LidarConfig.preset("hdl64"), T, seed=0)
    assert 80_000 < len(scan) <= 64 * 2083
    assert np.linalg.norm(scan.points, axis=1).max() <= 120.0
    a = simulate_scan(scene, LidarConfig.preset("hdl64"), T, seed=0)
    assert np.array_equal(a.points, scan.points) and np.array_equal(a.intensity, scan.intensity)
    # the street's classes show up in the scan
    seen = {scene.class_names[i] for i in np.unique(scan.labels)}
    assert {"road", "sidewalk", "building", "car"} <= seen
