"""Chamfer distance: hand-computable cases, a brute-force numpy reference with pytorch3d's definition
(every reduction, both norms, padded batches), gradients, and agreement with pytorch3d where it imports.

Tolerances: float64 agrees with numpy to 1e-12 relative; torch vs pytorch3d (float32) to 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gen3d_ros.geometry import ENV_VAR, chamfer_distance, pytorch3d_unavailable_reason
from gen3d_ros.geometry import knn as knn_mod


@pytest.fixture(autouse=True)
def _default_backend_env(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


def _directed_reference(x, y, lx, ly, norm, point_reduction):
    out = []
    for b in range(x.shape[0]):
        if lx[b] == 0:
            out.append(0.0)
            continue
        if ly[b] == 0:  # pytorch3d: k-NN pads with zeros, so every distance is 0
            d = np.zeros(lx[b])
        else:
            diff = x[b, : lx[b], None] - y[b, None, : ly[b]]
            d = (np.square(diff).sum(-1) if norm == 2 else np.abs(diff).sum(-1)).min(axis=1)
        out.append({"mean": d.mean(), "sum": d.sum(), "max": d.max()}[point_reduction])
    return np.array(out)


def chamfer_reference(x, y, lx=None, ly=None, norm=2, reduction="mean", point_reduction="mean", single=False):
    """pytorch3d.loss.chamfer_distance's definition, brute force in float64 numpy."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    lx = [x.shape[1]] * x.shape[0] if lx is None else list(lx)
    ly = [y.shape[1]] * y.shape[0] if ly is None else list(ly)
    cx = _directed_reference(x, y, lx, ly, norm, point_reduction)
    if single:
        loss = cx
    else:
        cy = _directed_reference(y, x, ly, lx, norm, point_reduction)
        loss = np.maximum(cx, cy) if point_reduction == "max" else cx + cy
    if reduction is None:
        return loss
    return loss.sum() / (len(loss) if reduction == "mean" else 1)


def test_chamfer_of_a_shifted_sparse_set_is_the_shift():
    """Points 1 m apart shifted by d = 0.1 m: every nearest neighbour is the shifted copy."""
    axis = torch.arange(4, dtype=torch.float64)
    g64 = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(1, -1, 3)
    d = 0.1
    s64 = g64 + torch.tensor([d, 0.0, 0.0], dtype=torch.float64)
    assert chamfer_distance(g64, s64, backend="torch").item() == pytest.approx(2 * d * d, rel=1e-12)
    assert chamfer_distance(g64, s64, norm=1, backend="torch").item() == pytest.approx(2 * d, rel=1e-12)
    assert chamfer_distance(g64, s64, single_directional=True, backend="torch").item() == pytest.approx(d * d)
    assert chamfer_distance(g64, g64, backend="torch").item() == 0.0


@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("point_reduction", ["mean", "sum", "max"])
@pytest.mark.parametrize("reduction", ["mean", "sum", None])
@pytest.mark.parametrize("single", [False, True])
def test_chamfer_matches_bruteforce_numpy(norm, point_reduction, reduction, single):
    g = torch.Generator().manual_seed(norm * 7 + len(point_reduction))
    x = torch.randn(3, 40, 3, generator=g, dtype=torch.float64)
    y = torch.randn(3, 55, 3, generator=g, dtype=torch.float64)
    got = chamfer_distance(
        x, y, norm=norm, reduction=reduction, point_reduction=point_reduction, single_directional=single,
        backend="torch",
    )
    ref = chamfer_reference(x.numpy(), y.numpy(), None, None, norm, reduction, point_reduction, single)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12)


@pytest.mark.parametrize("point_reduction", ["mean", "max"])
def test_chamfer_padded_batch_equals_reference_and_per_cloud(point_reduction):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 30, 3, generator=g, dtype=torch.float64)
    y = torch.randn(3, 25, 3, generator=g, dtype=torch.float64)
    lx, ly = torch.tensor([30, 9, 0]), torch.tensor([4, 25, 7])
    got = chamfer_distance(x, y, x_lengths=lx, y_lengths=ly, reduction=None, point_reduction=point_reduction,
                           backend="torch")
    ref = chamfer_reference(x.numpy(), y.numpy(), lx.tolist(), ly.tolist(), 2, None, point_reduction)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12)
    for b in range(2):  # the padded computation equals the unpadded one, cloud by cloud
        one = chamfer_distance(x[b : b + 1, : lx[b]], y[b : b + 1, : ly[b]], point_reduction=point_reduction,
                               backend="torch")
        assert got[b].item() == pytest.approx(one.item(), rel=1e-12)


@pytest.mark.parametrize("chunk_bytes", [8 * 25 * 3, 8 * 25 * 30 * 2], ids=["row_slabs", "whole_clouds"])
def test_chamfer_is_chunk_independent(monkeypatch, chunk_bytes):
    g = torch.Generator().manual_seed(13)
    x = torch.randn(3, 30, 3, generator=g, dtype=torch.float64)
    y = torch.randn(3, 25, 3, generator=g, dtype=torch.float64)
    lx, ly = torch.tensor([30, 17, 4]), torch.tensor([25, 6, 0])
    ref = chamfer_reference(x.numpy(), y.numpy(), lx.tolist(), ly.tolist(), 2, None, "mean")
    monkeypatch.setattr(knn_mod, "_CHUNK_BYTES", chunk_bytes)
    got = chamfer_distance(x, y, x_lengths=lx, y_lengths=ly, reduction=None, backend="torch")
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12)


def test_chamfer_gradcheck_float64():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 9, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: chamfer_distance(a, b, backend="torch"), (x, y))
    assert torch.autograd.gradcheck(lambda a, b: chamfer_distance(a, b, norm=1, backend="torch"), (x, y))


def test_chamfer_descent_pulls_a_cloud_onto_the_target():
    g = torch.Generator().manual_seed(9)
    target = torch.rand(1, 64, 3, generator=g)
    x = (torch.rand(1, 64, 3, generator=g) + 2.0).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.05)
    first = chamfer_distance(x, target, backend="torch").item()
    for _ in range(150):
        opt.zero_grad()
        loss = chamfer_distance(x, target, backend="torch")
        loss.backward()
        opt.step()
    assert loss.item() < 0.01 * first


def test_chamfer_rejects_unknown_reductions_and_norms():
    x = torch.zeros(1, 3, 3)
    with pytest.raises(ValueError, match="'median'"):
        chamfer_distance(x, x, reduction="median")
    with pytest.raises(ValueError, match="point_reduction"):
        chamfer_distance(x, x, point_reduction=None)
    with pytest.raises(ValueError, match="norm must be"):
        chamfer_distance(x, x, norm=3)
    with pytest.raises(ValueError, match="batch size"):
        chamfer_distance(x, torch.zeros(2, 3, 3))


@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("single", [False, True])
def test_chamfer_torch_matches_pytorch3d(norm, single):
    reason = pytorch3d_unavailable_reason()
    if reason is not None:
        pytest.skip(f"pytorch3d not importable here ({reason}); the torch implementation is checked against numpy")
    g = torch.Generator().manual_seed(12)
    x = torch.randn(3, 80, 3, generator=g, requires_grad=True)
    y = torch.randn(3, 70, 3, generator=g, requires_grad=True)
    lx, ly = torch.tensor([80, 40, 3]), torch.tensor([70, 5, 33])
    vals, grads = [], []
    for backend in ("torch", "pytorch3d"):
        v = chamfer_distance(x, y, x_lengths=lx, y_lengths=ly, norm=norm, single_directional=single, backend=backend)
        vals.append(v.detach())
        grads.append(torch.autograd.grad(v, (x, y), allow_unused=True))
    torch.testing.assert_close(vals[0], vals[1], rtol=1e-5, atol=1e-6)
    for a, b in zip(grads[0], grads[1]):
        if a is None or b is None:
            continue
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
