"""bench/real_lidar.py: ring split, ray casting and the re-simulation metrics on a sweep with rings made here
(the real sweeps are fetched at bench time, not in tests)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "real_lidar.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_real_lidar", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load_bench()


@pytest.fixture(scope="module")
def sweep(bench):
    """The alignment tests' street seen by a VLP-32C from 1.73 m, rings by beam elevation (interleaved ids, as a
    Velodyne's laser numbering), as a bench Sweep."""
    from test_alignment import VLP32_DEG, pose, sense, street_scene

    pts = sense(street_scene(), pose(1.73)).astype(np.float64)
    el = np.degrees(np.arcsin(pts[:, 2] / np.linalg.norm(pts, axis=1)))
    beam = np.abs(el[:, None] - np.array(VLP32_DEG)[None]).argmin(1)
    laser_id = np.argsort(np.r_[np.arange(0, 32, 2), np.arange(1, 32, 2)])[beam]  # interleaved numbering
    source = bench.SOURCES[0]
    return bench.Sweep(source, pts, laser_id, np.zeros_like(pts), 32), beam


def test_every_kth_ring_is_every_kth_beam_after_renumbering(bench, sweep, tmp_path) -> None:
    s, beam = sweep
    # load_sweep's renumbering (top beam first), done on the file a converter would write
    source = bench.Source("t", "synthetic", "none==0", "-", "hdl32_ply", ())
    (tmp_path / "sweeps").mkdir()
    np.savez(tmp_path / "sweeps" / "t.npz", points=s.points.astype(np.float32), ring=s.ring.astype(np.int16),
             origin=s.origin.astype(np.float32), n_rings=32)
    loaded = bench.load_sweep(source, tmp_path, python=lambda: "unused")
    np.testing.assert_array_equal(loaded.ring, 31 - beam)
    inputs, origins, dirs, real = bench.split_rings(loaded, 4, 25.6)
    assert len(np.unique(loaded.ring[loaded.ring % 4 == 0])) == 8
    assert len(inputs) + len(real) <= len(s.points) and len(real) > 0.6 * len(s.points)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0, atol=1e-9)


def test_rays_recast_on_the_true_surface_come_back_and_a_shifted_surface_does_not(bench, sweep) -> None:
    """Poisson of every ring approximates the scene: the dropped rings re-cast on it mostly land within 0.2 m;
    moved 0.3 m along each axis, far fewer do (the metrics measure range agreement, not just hits)."""
    from gen3d_ros.completion.mesh import TriangleMesh
    from gen3d_ros.completion.processor import CompletionConfig, CompletionProcessor

    s, _ = sweep
    _, origins, dirs, real = bench.split_rings(s, 4, 25.6)
    mesh = CompletionProcessor(CompletionConfig(method="classical-poisson")).process(s.points.astype(np.float32)).mesh
    good = bench.ray_metrics(bench.cast(mesh, origins, dirs), real)
    assert good["within_0p2m"] > 0.65 and good["median_abs_dr_m"] < 0.05 and good["no_hit"] < 0.08, good  # 0.74, 0.023, 0.049
    moved = TriangleMesh(mesh.vertices + np.float32([0.3, 0.3, 0.3]), mesh.faces, mesh.vertex_colors)
    bad = bench.ray_metrics(bench.cast(moved, origins, dirs), real)
    assert bad["within_0p2m"] < good["within_0p2m"] - 0.3, (good, bad)
    assert bad["within_0p5m"] >= bad["within_0p2m"]
    empty = bench.ray_metrics(bench.cast(TriangleMesh.empty(), origins, dirs), real)
    assert empty["no_hit"] == 1.0 and empty["within_0p5m"] == 0.0 and np.isnan(empty["median_abs_dr_m"])


def test_ray_classes_split_rays_by_where_the_real_return_lies_in_the_model_frame(bench) -> None:
    """Each ray in one class: above the ceiling / below the floor (by height first), beyond x/y, inside on the
    ground (within GROUND_BAND_M of the model ground) or inside elsewhere; the alignment moves returns first."""
    from gen3d_ros.completion.alignment import GroundAlignment

    returns = np.array([[5, 0, 5.0], [5, 0, -4.0], [30, 0, 0.0], [30, 0, 6.0], [5, 0, -1.6], [5, 0, 0.0]])
    volume = (np.array([-25.6, -25.6, -2.8]), np.array([25.6, 25.6, 4.4]))
    classes = bench.ray_classes(returns, None, volume, 1.73)
    expected = ["above_ceiling", "below_floor", "beyond_xy", "above_ceiling", "inside_ground", "inside_other"]
    assert [next(c for c, m in classes.items() if m[i]) for i in range(6)] == expected
    assert sum(m.astype(int) for m in classes.values()).tolist() == [1] * 6
    lift = np.eye(4)
    lift[2, 3] = -1.0  # the sensor 1 m higher than the model's: returns 1 m lower in the model frame
    moved = bench.ray_classes(returns, GroundAlignment(lift, "ransac", 1.73), volume, 1.73)
    assert moved["above_ceiling"].tolist() == [False, False, False, True, False, False]  # (5, 0, 5) -> z 4: inside
    assert moved["below_floor"][[1, 4]].tolist() == [True, False]
    assert moved["inside_ground"][[4, 5]].tolist() == [True, False]
