"""k-NN: the torch implementation against a brute-force numpy reference (always), against pytorch3d (where
it imports), padding semantics, chunking, gradients, backend choice; and the KD-tree path.

Tolerances: float64 distances agree with numpy to 1e-12 (relative); float32 to 1e-5 relative. Indices
must be identical (random continuous points have no ties).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from gen3d_ros.geometry import knn as knn_mod
from gen3d_ros.geometry import (
    ENV_VAR,
    knn_backend,
    knn_gather,
    knn_points,
    nearest_distances,
    pytorch3d_unavailable_reason,
    resolve_backend,
)


@pytest.fixture(autouse=True)
def _default_backend_env(monkeypatch):
    """The environment must not change what 'default' means in these tests."""
    monkeypatch.delenv(ENV_VAR, raising=False)


def _require_pytorch3d() -> None:
    reason = pytorch3d_unavailable_reason()
    if reason is not None:
        pytest.skip(f"pytorch3d not importable here ({reason}); the torch implementation is checked against numpy")


def knn_reference(p1, p2, K, lengths1=None, lengths2=None, norm=2):
    """Brute force in float64 numpy with pytorch3d's padding rules (zeros past lengths1 / lengths2)."""
    p1 = np.asarray(p1, dtype=np.float64)
    p2 = np.asarray(p2, dtype=np.float64)
    bsz, n, _ = p1.shape
    m = p2.shape[1]
    l1 = [n] * bsz if lengths1 is None else list(lengths1)
    l2 = [m] * bsz if lengths2 is None else list(lengths2)
    dists = np.zeros((bsz, n, K))
    idx = np.zeros((bsz, n, K), dtype=np.int64)
    for b in range(bsz):
        if l1[b] == 0 or l2[b] == 0:
            continue
        diff = p1[b, : l1[b], None, :] - p2[b, None, : l2[b], :]
        d = np.square(diff).sum(-1) if norm == 2 else np.abs(diff).sum(-1)
        order = np.argsort(d, axis=1, kind="stable")[:, :K]
        kk = order.shape[1]
        idx[b, : l1[b], :kk] = order
        dists[b, : l1[b], :kk] = np.take_along_axis(d, order, axis=1)
    return dists, idx


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("K", [1, 5])
def test_knn_matches_bruteforce_numpy(dtype, norm, K):
    g = torch.Generator().manual_seed(K * 10 + norm)
    p1 = torch.randn(3, 70, 3, generator=g, dtype=dtype)
    p2 = torch.randn(3, 90, 3, generator=g, dtype=dtype)
    res = knn_points(p1, p2, K, norm=norm, backend="torch")
    ref_d, ref_i = knn_reference(p1.numpy(), p2.numpy(), K, norm=norm)
    assert res.dists.shape == (3, 70, K) and res.idx.shape == (3, 70, K)
    assert res.dists.dtype == dtype and res.idx.dtype == torch.int64
    np.testing.assert_array_equal(res.idx.numpy(), ref_i)
    rtol = 1e-12 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(res.dists.numpy(), ref_d, rtol=rtol, atol=rtol)
    assert bool((res.dists[..., 1:] >= res.dists[..., :-1]).all()), "neighbours must be in ascending order"


@pytest.mark.parametrize("path", ["broadcast", "cdist"])
def test_knn_both_distance_paths_match_bruteforce(monkeypatch, path):
    """Small problems broadcast differences (one thread), larger ones use torch.cdist: same answers."""
    monkeypatch.setattr(knn_mod, "_SMALL_NUMEL", 1 << 40 if path == "broadcast" else 0)
    g = torch.Generator().manual_seed(21)
    p1 = torch.randn(2, 33, 3, generator=g, dtype=torch.float64)
    p2 = torch.randn(2, 41, 3, generator=g, dtype=torch.float64)
    for norm in (1, 2):
        res = knn_points(p1, p2, 3, norm=norm, backend="torch")
        ref_d, ref_i = knn_reference(p1.numpy(), p2.numpy(), 3, norm=norm)
        np.testing.assert_array_equal(res.idx.numpy(), ref_i)
        np.testing.assert_allclose(res.dists.numpy(), ref_d, rtol=1e-12)


def test_knn_padded_batch_zeroes_padding_like_pytorch3d():
    g = torch.Generator().manual_seed(3)
    p1 = torch.randn(4, 30, 3, generator=g, dtype=torch.float64)
    p2 = torch.randn(4, 25, 3, generator=g, dtype=torch.float64)
    p2[1, 2:] = 1e-3  # padding rows that would be the nearest if they were not ignored
    l1 = torch.tensor([30, 12, 0, 7])
    l2 = torch.tensor([25, 2, 9, 0])
    res = knn_points(p1, p2, 4, l1, l2, backend="torch")
    ref_d, ref_i = knn_reference(p1.numpy(), p2.numpy(), 4, l1.tolist(), l2.tolist())
    np.testing.assert_array_equal(res.idx.numpy(), ref_i)
    np.testing.assert_allclose(res.dists.numpy(), ref_d, rtol=1e-12, atol=0)
    assert bool((res.dists[1, :, 2:] == 0).all()) and bool((res.idx[1, :, 2:] == 0).all())  # K > lengths2
    assert bool((res.dists[1, 12:] == 0).all()) and bool((res.idx[3] == 0).all())  # rows past lengths1, empty p2


def test_knn_with_more_neighbours_than_points_pads_with_zeros():
    p1 = torch.rand(1, 5, 3)
    p2 = torch.rand(1, 3, 3)
    res = knn_points(p1, p2, K=6, backend="torch")
    assert res.dists.shape == (1, 5, 6)
    assert bool((res.dists[..., 3:] == 0).all()) and bool((res.idx[..., 3:] == 0).all())
    assert sorted(res.idx[0, 0, :3].tolist()) == [0, 1, 2]


def test_knn_chunked_search_equals_single_chunk(monkeypatch):
    g = torch.Generator().manual_seed(5)
    p1 = torch.randn(3, 257, 3, generator=g)
    p2 = torch.randn(3, 301, 3, generator=g)
    whole = knn_points(p1, p2, 3, backend="torch")
    # a few rows of one cloud per chunk (the "one cloud at a time" branch) ...
    monkeypatch.setattr(knn_mod, "_CHUNK_BYTES", 301 * 4 * 10)
    rows = knn_points(p1, p2, 3, backend="torch")
    # ... and several whole clouds per chunk
    monkeypatch.setattr(knn_mod, "_CHUNK_BYTES", 257 * 301 * 4 * 2)
    clouds = knn_points(p1, p2, 3, backend="torch")
    for res in (rows, clouds):
        assert torch.equal(res.idx, whole.idx)
        assert torch.equal(res.dists, whole.dists)


def test_knn_far_from_origin_keeps_exact_neighbours():
    """Exact differences (not |a|^2 + |b|^2 - 2ab) keep float32 neighbours right 10 km from the origin."""
    g = torch.Generator().manual_seed(11)
    offset = torch.tensor([1.0e4, -2.0e4, 5.0e3])
    p1 = (torch.rand(1, 400, 3, generator=g) * 5.0 + offset).float()
    p2 = (torch.rand(1, 500, 3, generator=g) * 5.0 + offset).float()
    res = knn_points(p1, p2, 2, backend="torch")
    _, ref_i = knn_reference(p1.numpy(), p2.numpy(), 2)
    np.testing.assert_array_equal(res.idx.numpy(), ref_i)


def test_knn_gradients_flow_to_both_clouds():
    g = torch.Generator().manual_seed(2)
    p1 = torch.randn(2, 20, 3, generator=g, dtype=torch.float64, requires_grad=True)
    p2 = torch.randn(2, 15, 3, generator=g, dtype=torch.float64, requires_grad=True)
    res = knn_points(p1, p2, 1, backend="torch")
    res.dists.sum().backward()
    nn = knn_gather(p2.detach(), res.idx)[:, :, 0]
    torch.testing.assert_close(p1.grad, 2.0 * (p1.detach() - nn))
    expected_p2 = torch.zeros_like(p2)
    expected_p2.scatter_add_(1, res.idx[..., 0:1].expand(-1, -1, 3), -2.0 * (p1.detach() - nn))
    torch.testing.assert_close(p2.grad, expected_p2)


@pytest.mark.parametrize("norm", [1, 2])
def test_knn_distances_pass_gradcheck(norm):
    g = torch.Generator().manual_seed(4)
    p1 = torch.randn(2, 6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    p2 = torch.randn(2, 8, 3, generator=g, dtype=torch.float64, requires_grad=True)
    lengths1 = torch.tensor([6, 4])
    lengths2 = torch.tensor([8, 3])
    assert torch.autograd.gradcheck(
        lambda a, b: knn_points(a, b, 3, lengths1, lengths2, norm=norm, backend="torch").dists, (p1, p2)
    )


def test_knn_l1_subgradient_at_equal_coordinates_is_pytorch3ds():
    """pytorch3d's kernel uses sign(p1 - p2) with sign(0) = -1; abs() would give 0 and disagree."""
    p1 = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]], requires_grad=True)
    p2 = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]], requires_grad=True)
    res = knn_points(p1, p2, 2, norm=1, backend="torch")
    g1, g2 = torch.autograd.grad(res.dists.sum(), (p1, p2))
    torch.testing.assert_close(g1, torch.tensor([[[-2.0, -2.0, -2.0], [0.0, 0.0, 0.0]]]))
    torch.testing.assert_close(g2, torch.tensor([[[0.0, 0.0, 0.0], [2.0, 2.0, 2.0]]]))


def test_knn_padding_receives_no_gradient():
    p1 = torch.randn(1, 10, 3, requires_grad=True)
    p2 = torch.randn(1, 8, 3, requires_grad=True)
    knn_points(p1, p2, 4, torch.tensor([6]), torch.tensor([5]), backend="torch").dists.sum().backward()
    assert bool((p1.grad[0, 6:] == 0).all()) and bool((p2.grad[0, 5:] == 0).all())
    assert bool((p1.grad[0, :6] != 0).any())


def test_knn_gather_zeroes_missing_neighbours():
    x = torch.arange(12.0).reshape(1, 4, 3)
    idx = torch.tensor([[[3, 1, 0]]])
    out = knn_gather(x, idx, lengths=torch.tensor([2]))
    torch.testing.assert_close(out[0, 0], torch.stack([x[0, 3], x[0, 1], torch.zeros(3)]))


def test_knn_empty_clouds_do_not_crash():
    p1 = torch.zeros(2, 0, 3, requires_grad=True)
    p2 = torch.randn(2, 4, 3)
    res = knn_points(p1, p2, 2, backend="torch")
    assert res.dists.shape == (2, 0, 2)
    res = knn_points(torch.randn(2, 3, 3), torch.zeros(2, 0, 3), 2, backend="torch")
    assert bool((res.dists == 0).all()) and bool((res.idx == 0).all())


@pytest.mark.parametrize(
    "shapes, kwargs, match",
    [
        (((2, 5, 3), (3, 5, 3)), {}, "batch size"),
        (((2, 5, 3), (2, 5, 2)), {}, "point dimension"),
        (((5, 3), (2, 5, 3)), {}, r"\(B, N, D\)"),
        (((2, 5, 3), (2, 5, 3)), {"K": 0}, "K must be"),
        (((2, 5, 3), (2, 5, 3)), {"norm": 3}, "norm must be"),
        (((2, 5, 3), (2, 5, 3)), {"lengths1": torch.tensor([5, 6])}, r"lengths1 must lie in \[0, 5\]"),
        (((2, 5, 3), (2, 5, 3)), {"lengths2": torch.tensor([5])}, r"lengths2 must have shape \(2,\)"),
    ],
)
def test_knn_rejects_bad_input_with_the_offending_value(shapes, kwargs, match):
    a, b = shapes
    with pytest.raises(ValueError, match=match):
        knn_points(torch.zeros(a), torch.zeros(b), backend="torch", **kwargs)


def test_knn_default_backend_is_chosen_and_logged_once(caplog, monkeypatch):
    knn_mod._reset_backend_cache()
    with caplog.at_level(logging.INFO, logger="gen3d_ros.geometry"):
        name = knn_backend()
        knn_points(torch.rand(1, 4, 3), torch.rand(1, 4, 3))
        knn_backend()
    expected = "torch" if pytorch3d_unavailable_reason() else "pytorch3d"
    assert name == expected
    lines = [r.getMessage() for r in caplog.records if r.name == "gen3d_ros.geometry"]
    assert len(lines) == 1 and f"geometry backend (k-NN, Chamfer, rotations): {expected}" in lines[0]
    if expected == "torch":
        assert "pytorch3d unavailable" in lines[0]


def test_environment_variable_forces_the_torch_backend(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "torch")
    assert knn_backend() == "torch"
    monkeypatch.setenv(ENV_VAR, "cuda-magic")
    with pytest.raises(ValueError, match="cuda-magic"):
        knn_backend()


def test_requesting_pytorch3d_where_it_does_not_import_raises():
    if pytorch3d_unavailable_reason() is None:
        pytest.skip("pytorch3d imports here, so requesting it succeeds")
    with pytest.raises(RuntimeError, match="not usable here"):
        resolve_backend("pytorch3d")
    with pytest.raises(RuntimeError, match="not usable here"):
        knn_points(torch.rand(1, 3, 3), torch.rand(1, 3, 3), backend="pytorch3d")


@pytest.mark.parametrize("norm", [1, 2])
def test_knn_torch_matches_pytorch3d(norm):
    _require_pytorch3d()
    g = torch.Generator().manual_seed(8)
    p1 = torch.randn(3, 60, 3, generator=g, requires_grad=True)
    p2 = torch.randn(3, 50, 3, generator=g, requires_grad=True)
    l1, l2 = torch.tensor([60, 31, 5]), torch.tensor([50, 3, 20])
    outs = []
    for backend in ("torch", "pytorch3d"):
        res = knn_points(p1, p2, 4, l1, l2, norm=norm, backend=backend)
        ga, gb = torch.autograd.grad(res.dists.sum(), (p1, p2))
        outs.append((res.dists.detach(), res.idx, ga, gb))
    (d0, i0, a0, b0), (d1, i1, a1, b1) = outs
    assert torch.equal(i0, i1)
    for x, y in ((d0, d1), (a0, a1), (b0, b1)):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


def test_nearest_distances_matches_bruteforce():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 3))
    b = rng.normal(size=(200, 3))
    ref = np.sqrt(np.square(a[:, None] - b[None]).sum(-1)).min(axis=1)
    np.testing.assert_allclose(nearest_distances(a, b), ref, rtol=1e-12)
    np.testing.assert_allclose(nearest_distances(a.astype(np.float32), b.astype(np.float32)), ref, rtol=1e-5)


def test_nearest_distances_of_empty_sets():
    assert nearest_distances(np.zeros((0, 3)), np.ones((4, 3))).shape == (0,)
    assert np.isinf(nearest_distances(np.ones((4, 3)), np.zeros((0, 3)))).all()
    with pytest.raises(ValueError, match=r"\(N, D\) and \(M, D\)"):
        nearest_distances(np.ones((4, 3)), np.ones((4, 2)))
