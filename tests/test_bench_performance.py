"""bench/performance.py's pure parts: ground truth on a completion grid, quality, message sizes, the merged
headline (ratios from both steps' numbers)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from bench.performance import GT_VOXEL, gt_in_region, quality
from bench.performance_cpu import headline, markdown, message_sizes
from gen3d_ros.completion.mesh import TriangleMesh, height_colors


def _inputs(cells: np.ndarray) -> dict:
    return {"gt_cells": cells.astype(np.int16), "gt_origin": np.array([-60.0, -60.0, -2.8]),
            "gt_voxel": np.float64(GT_VOXEL)}


def test_ground_truth_reindexed_on_a_smaller_grid_and_perfect_prediction_scores_one():
    gt = np.array([[300, 300, 10], [301, 300, 10], [0, 0, 0], [599, 599, 35]])  # two outside +-12 m
    inputs = _inputs(gt)
    origin, shape = np.array([-12.0, -12.0, -2.8]), np.array([120, 120, 36])
    cells = gt_in_region(inputs, origin, shape)
    np.testing.assert_array_equal(cells, [[60, 60, 10], [61, 60, 10]])
    v = np.array([[-0.1, -0.1, -0.7], [0.3, -0.1, -0.7], [-0.1, 0.3, -0.7]], np.float32)
    out = SimpleNamespace(fine_cells=cells, origin=origin, fine_voxel=GT_VOXEL,
                          mesh=TriangleMesh(v, np.array([[0, 1, 2]], np.int32), None))
    q = quality(out, SimpleNamespace(fine_shape=shape), inputs)
    assert q["iou"] == pytest.approx(1.0) and q["precision"] == pytest.approx(1.0)
    assert 0.0 < q["mesh_fscore"] <= 1.0


def test_message_sizes_follow_the_layout_and_the_marker_budget():
    g = np.stack(np.meshgrid(np.arange(20), np.arange(20), indexing="ij"), -1).reshape(-1, 2) * 0.2
    v = np.c_[g, np.zeros(len(g))].astype(np.float32)
    idx = np.arange(400).reshape(20, 20)
    faces = np.concatenate([np.c_[idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[:-1, 1:].ravel()],
                            np.c_[idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()]]).astype(np.int32)
    mesh = TriangleMesh(v, faces, height_colors(v))
    sizes = message_sizes(mesh, v[:10])
    assert sizes["triangles"] == len(faces) and sizes["vertices"] == len(v)
    # CompletedMesh: float64 xyz per vertex + 3 uint32 per triangle; colours add 16 B (4 float32) per vertex
    assert sizes["colors.completed_mesh_bytes"] - sizes["completed_mesh_bytes"] == 16 * len(v)
    assert 24 * len(v) + 12 * len(faces) < sizes["completed_mesh_bytes"] < 24 * len(v) + 12 * len(faces) + 400
    # an undecimated Marker repeats every corner (24 B) with its colour (16 B)
    assert sizes["undecimated_marker_bytes"] >= 3 * 40 * len(faces)
    assert sizes["marker_triangles"] <= len(faces)


def test_headline_ratios_come_from_both_steps():
    gpu = {"device": "cuda: X", "fast.os128.points": 100.0, "fast.os128.coarse_total_ms": 50.0,
           "fast.os128.fine_total_ms": 100.0, "fast.os128.mesh_ms": 100.0, "fast.os128.total_ms": 250.0,
           "fast.os128.peak_mb": 1000.0, "fast.os128.triangles": 1000.0, "fast.os128.coarse_cells": 10.0}
    cpu = {"cpu_default.os128.total_ms": 2500.0, "cpu_full.os128.total_ms": 10000.0, "poisson_ms": 900.0,
           "messages.cpu_full.triangles": 100.0, "messages.cpu_full.completed_mesh_bytes": 2500.0,
           "messages.cpu_full.colors.completed_mesh_bytes": 4000.0,
           "messages.cpu_full.undecimated_marker_bytes": 12000.0, "messages.cpu_full.mesh_marker_bytes": 9000.0}
    h = headline(cpu, gpu, 100_000)
    assert h["cpu_over_gpu_ratio"] == pytest.approx(10.0)
    assert h["completion_coarse_hz"] == pytest.approx(20.0) and h["completion_mesh_hz"] == pytest.approx(4.0)
    assert h["mesh_message_bytes"] == pytest.approx(25.0 * 1000)  # per triangle of the CPU mesh x GPU triangles
    assert "| coarse (voxelise + coarse chain) | 50.0 |" in markdown(h)
