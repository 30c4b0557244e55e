"""Completion metrics: hand-computable cases (overlapping boxes, a shifted set), the empty cases, TMD's
definition, and randomized comparisons against brute-force numpy / Python sets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gen3d_ros.completion.metrics import (
    chamfer_l1,
    chamfer_l2,
    completion_metrics,
    fscore,
    total_mutual_difference,
    voxel_iou,
    voxel_precision_recall,
)


def box(lo, hi) -> np.ndarray:
    """All integer voxels with lo <= index < hi (per axis), as (N, 3) int32."""
    axes = [np.arange(a, b) for a, b in zip(lo, hi)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3).astype(np.int32)


def lattice(n: int = 5, spacing: float = 1.0) -> np.ndarray:
    """n^3 points `spacing` metres apart: far enough that a small shift keeps each point's copy nearest."""
    return box((0, 0, 0), (n, n, n)).astype(np.float64) * spacing


def brute_directed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(np.square(a[:, None, :] - b[None, :, :]).sum(-1)).min(axis=1)


# --------------------------------------------------------------------------------------------------
# voxel sets


def test_iou_of_two_overlapping_boxes_is_counted_by_hand():
    a = box((0, 0, 0), (4, 4, 4))  # 64 voxels
    b = box((2, 0, 0), (6, 4, 4))  # 64 voxels, sharing the 2 x 4 x 4 = 32 with x in {2, 3}
    assert voxel_iou(a, b) == pytest.approx(32 / (64 + 64 - 32))
    assert voxel_precision_recall(a, b) == pytest.approx((0.5, 0.5))
    c = box((0, 0, 0), (2, 4, 4))  # a subset of a: precision 1, recall 1/2
    assert voxel_precision_recall(c, a) == pytest.approx((1.0, 0.5))
    assert voxel_iou(a, a) == 1.0


def test_voxel_sets_count_duplicates_once_and_allow_negative_indices():
    a = box((-3, -3, -3), (1, 1, 1))
    b = box((-1, -3, -3), (3, 1, 1))
    assert voxel_iou(np.concatenate([a, a[:10]]), b) == pytest.approx(voxel_iou(a, b))
    assert voxel_iou(a, b) == pytest.approx(32 / 96)


def test_voxel_metrics_match_python_sets_on_random_sets():
    rng = np.random.default_rng(0)
    for _ in range(5):
        p = rng.integers(-20, 20, size=(3000, 3))
        g = rng.integers(-15, 25, size=(2500, 3))
        ps, gs = set(map(tuple, p)), set(map(tuple, g))
        inter = len(ps & gs)
        assert voxel_iou(p, g) == pytest.approx(inter / len(ps | gs), rel=1e-12)
        assert voxel_precision_recall(p, g) == pytest.approx((inter / len(ps), inter / len(gs)), rel=1e-12)


def test_voxel_iou_is_exact_on_a_large_set_against_a_dense_grid():
    rng = np.random.default_rng(1)
    occ_p = rng.random((100, 100, 100)) < 0.3
    occ_g = rng.random((100, 100, 100)) < 0.3
    expected = (occ_p & occ_g).sum() / (occ_p | occ_g).sum()
    assert voxel_iou(np.argwhere(occ_p), np.argwhere(occ_g)) == pytest.approx(expected, rel=1e-12)


def test_voxel_inputs_are_validated():
    with pytest.raises(ValueError, match=r"\(N, 3\).*\(5, 2\)"):
        voxel_iou(np.zeros((5, 2), int), np.zeros((5, 3), int))
    with pytest.raises(ValueError, match="integer voxel indices.*float64"):
        voxel_iou(np.zeros((5, 3)), np.zeros((5, 3), int))


# --------------------------------------------------------------------------------------------------
# point sets


def test_a_set_shifted_by_d_has_chamfer_l1_d_and_chamfer_l2_d_squared():
    pts = lattice()
    d = 0.1
    shifted = pts + np.array([0.0, d, 0.0])
    assert chamfer_l1(shifted, pts) == pytest.approx(d, rel=1e-12)
    assert chamfer_l2(shifted, pts) == pytest.approx(d * d, rel=1e-12)
    assert chamfer_l1(pts, pts) == 0.0


def test_fscore_of_a_shifted_set_is_0_below_and_1_above_the_shift():
    pts = lattice()
    shifted = pts + np.array([0.06, 0.0, -0.08])  # |shift| = 0.1 m
    assert fscore(shifted, pts, 0.09) == (0.0, 0.0, 0.0)
    assert fscore(shifted, pts, 0.11) == (1.0, 1.0, 1.0)


def test_fscore_precision_and_recall_are_the_fractions_within_the_threshold():
    gt = lattice(4)
    pred = np.concatenate([gt[:32], gt[:32] + 5.0])  # half exact, half 5 m away; half the gt is covered
    p, r, f = fscore(pred, gt, 0.01)
    assert (p, r) == pytest.approx((0.5, 0.5))
    assert f == pytest.approx(0.5)


def test_point_metrics_match_brute_force_on_random_sets():
    rng = np.random.default_rng(2)
    pred = rng.normal(size=(400, 3))
    gt = rng.normal(size=(300, 3)) + 0.2
    dp, dg = brute_directed(pred, gt), brute_directed(gt, pred)
    assert chamfer_l1(pred, gt) == pytest.approx(0.5 * (dp.mean() + dg.mean()), rel=1e-12)
    assert chamfer_l2(pred, gt) == pytest.approx(0.5 * ((dp**2).mean() + (dg**2).mean()), rel=1e-12)
    t = float(np.median(dp))
    p, r, f = fscore(pred, gt, t)
    ep, er = (dp <= t).mean(), (dg <= t).mean()
    assert (p, r, f) == pytest.approx((ep, er, 2 * ep * er / (ep + er)), rel=1e-12)


def test_point_metrics_of_empty_sets_are_defined():
    pts = lattice(2)
    empty = np.zeros((0, 3))
    for a, b in ((empty, pts), (pts, empty), (empty, empty)):
        assert fscore(a, b, 0.1) == (0.0, 0.0, 0.0)
        assert chamfer_l1(a, b) == math.inf and chamfer_l2(a, b) == math.inf
    with pytest.raises(ValueError, match="threshold_m must be a positive"):
        fscore(pts, pts, 0.0)


# --------------------------------------------------------------------------------------------------
# total mutual difference


def test_tmd_of_identical_samples_is_zero():
    s = lattice(3)
    assert total_mutual_difference([s, s.copy(), s.copy()]) == 0.0


def test_tmd_of_two_samples_shifted_by_d_follows_the_gca_definition():
    s = lattice()
    d = 0.1
    t = s + np.array([d, 0.0, 0.0])
    # GCA's CD = mean d^2 (a->b) + mean d^2 (b->a) = 2 d^2; each sample's mean CD to the other is 2 d^2;
    # summed over the 2 samples: 4 d^2
    assert total_mutual_difference([s, t]) == pytest.approx(4 * d * d, rel=1e-12)
    assert total_mutual_difference([s, t], chamfer="l2") == pytest.approx(2 * d * d, rel=1e-12)
    assert total_mutual_difference([s, t], chamfer="l1") == pytest.approx(2 * d, rel=1e-12)


def test_tmd_is_the_sum_over_samples_of_the_mean_distance_to_the_others():
    rng = np.random.default_rng(3)
    samples = [rng.normal(size=(int(n), 3)) for n in rng.integers(50, 120, size=5)]

    def cd(a, b):  # GCA / MPC: sum of the two directions' mean squared distances
        return (brute_directed(a, b) ** 2).mean() + (brute_directed(b, a) ** 2).mean()

    k = len(samples)
    expected = sum(sum(cd(samples[i], samples[j]) for j in range(k) if j != i) / (k - 1) for i in range(k))
    assert total_mutual_difference(samples) == pytest.approx(expected, rel=1e-12)


def test_tmd_needs_two_samples_and_a_known_chamfer():
    with pytest.raises(ValueError, match="at least 2 samples, got 1"):
        total_mutual_difference([lattice(2)])
    with pytest.raises(ValueError, match="'l3'"):
        total_mutual_difference([lattice(2), lattice(2)], chamfer="l3")
    assert total_mutual_difference([lattice(2), np.zeros((0, 3))]) == math.inf


# --------------------------------------------------------------------------------------------------
# completion_metrics


@pytest.mark.parametrize("voxel_size", [0.1, 0.3, 0.05])
def test_completion_metrics_of_a_box_shifted_by_one_voxel(voxel_size):
    gt = box((0, 0, 0), (4, 4, 4))
    pred = box((1, 0, 0), (5, 4, 4))  # 48 shared; one 16-voxel layer on each side is one voxel off
    m = completion_metrics(pred, gt, voxel_size, origin=(10.0, -3.0, 0.5))
    assert m["iou"] == pytest.approx(48 / 80)
    assert (m["precision"], m["recall"]) == pytest.approx((0.75, 0.75))
    assert m["chamfer_l1"] == pytest.approx(0.25 * voxel_size, rel=1e-12)
    assert m["chamfer_l2"] == pytest.approx(0.25 * voxel_size**2, rel=1e-12)
    assert m["fscore"] == 1.0  # default threshold: one voxel, so face neighbours match
    assert (m["fscore_precision"], m["fscore_recall"]) == (1.0, 1.0)
    assert (m["n_pred"], m["n_gt"]) == (64, 64)
    half = completion_metrics(pred, gt, voxel_size, fscore_threshold_m=0.5 * voxel_size)
    assert half["fscore"] == pytest.approx(0.75)


def test_completion_fscore_threshold_on_a_lattice_distance_is_inclusive_despite_rounding():
    gt = box((0, 0, 0), (4, 4, 4))
    pred = box((3, 0, 0), (7, 4, 4))  # the farthest voxels are exactly 3 voxels away
    assert 0.3 / 0.1 < 3.0  # the float threshold in voxels rounds down ...
    assert completion_metrics(pred, gt, 0.1, fscore_threshold_m=0.3)["fscore"] == 1.0  # ... and still counts
    assert completion_metrics(pred, gt, 0.1, fscore_threshold_m=0.29)["fscore"] < 1.0


def test_completion_metrics_point_terms_match_brute_force_on_voxel_centres():
    rng = np.random.default_rng(4)
    pred = rng.integers(0, 12, size=(500, 3))
    gt = rng.integers(2, 14, size=(400, 3))
    vs, origin = 0.2, np.array([1.0, 2.0, -3.0])
    m = completion_metrics(pred, gt, vs, fscore_threshold_m=0.45, origin=origin)
    cp = origin + (np.unique(pred, axis=0) + 0.5) * vs
    cg = origin + (np.unique(gt, axis=0) + 0.5) * vs
    dp, dg = brute_directed(cp, cg), brute_directed(cg, cp)
    assert m["chamfer_l1"] == pytest.approx(0.5 * (dp.mean() + dg.mean()), rel=1e-9)
    assert m["chamfer_l2"] == pytest.approx(0.5 * ((dp**2).mean() + (dg**2).mean()), rel=1e-9)
    assert m["fscore"] == pytest.approx(fscore(cp, cg, 0.45)[2], rel=1e-12)
    assert m["iou"] == pytest.approx(voxel_iou(pred, gt))
    assert (m["n_pred"], m["n_gt"]) == (len(cp), len(cg))


def test_completion_metrics_of_empty_sets_are_defined():
    gt = box((0, 0, 0), (3, 3, 3))
    empty = np.zeros((0, 3), np.int32)
    for pred, g in ((empty, gt), (gt, empty), (empty, empty)):
        m = completion_metrics(pred, g, 0.1)
        assert m["iou"] == m["precision"] == m["recall"] == m["fscore"] == 0.0
        assert m["chamfer_l1"] == math.inf and m["chamfer_l2"] == math.inf
        assert (m["n_pred"], m["n_gt"]) == (len(pred), len(g))


def test_completion_metrics_validates_its_arguments():
    gt = box((0, 0, 0), (2, 2, 2))
    with pytest.raises(ValueError, match="voxel_size must be a positive.*-0.1"):
        completion_metrics(gt, gt, -0.1)
    with pytest.raises(ValueError, match="origin must have 3 values"):
        completion_metrics(gt, gt, 0.1, origin=(0.0, 1.0))
    with pytest.raises(ValueError, match="pred_voxels must be an \\(N, 3\\)"):
        completion_metrics(gt[:, :2], gt, 0.1)
