"""Gradients (gradcheck), the UNet's shapes and coordinates, batch isolation, determinism."""

from __future__ import annotations

import pytest
import torch

from gen3d_ros.sparse import (
    GenerativeConv3d,
    SparseInstanceNorm,
    SparseTensor,
    SparseUNet,
    StridedConv3d,
    SubmanifoldConv3d,
    TransposedConv3d,
)
from gen3d_ros.sparse.backends.torch_backend import sparse_conv


def _tiny(gen, grids, c=2, stride=1):
    coords = grids.random_coords(gen, 2, 4, 0.35, stride, -2)
    feats = torch.randn(coords.shape[0], c, generator=gen, dtype=torch.float64, requires_grad=True)
    return SparseTensor(feats, coords, stride)


@pytest.mark.parametrize("op", ["submanifold", "submanifold_hypercross", "strided", "transposed", "generative"])
def test_sparse_conv_gradcheck_float64(gen, grids, op):
    x = _tiny(gen, grids)
    m = x.manager
    if op.startswith("submanifold"):
        nb = SubmanifoldConv3d(2, 3, "hypercross2" if op.endswith("hypercross") else 3).neighbourhood
        km = m.kernel_map(x.key, x.key, nb, 1)
    elif op == "strided":
        nb = StridedConv3d(2, 3, 3).neighbourhood
        km = m.kernel_map(x.key, m.downsample(x.key, 2), nb, 1)
    elif op == "transposed":
        nb = TransposedConv3d(2, 3, 2).neighbourhood
        coarse = m.downsample(x.key, 2)
        km = m.transposed_kernel_map(coarse, x.key, nb, 1)
        feats = torch.randn(m.num_rows(coarse), 2, generator=gen, dtype=torch.float64, requires_grad=True)
        x = SparseTensor(feats, manager=m, coordinate_key=coarse)
    else:
        nb = GenerativeConv3d(2, 3, 3).neighbourhood
        _, km = m.dilate(x.key, nb, 1, 1)
    assert km.num_pairs > 0
    w = torch.randn(nb.volume, 2, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f, w: sparse_conv(f, w, km), (x.feats, w), eps=1e-6, atol=1e-7)


def test_unet_forward_backward_keeps_input_coordinates(gen, grids):
    coords = grids.random_coords(gen, 2, 12, 0.15, 1, -6)
    x = SparseTensor(torch.randn(coords.shape[0], 3, generator=gen), coords)
    net = SparseUNet(3, 25, widths=(8, 16, 32), blocks_per_level=2, kernel=3, backend="torch")
    y = net(x)
    assert y.feats.shape == (len(x), 25)
    assert y.same_coords(x) and torch.equal(y.coords, coords)
    y.feats.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert net.stem[0].weight.grad.abs().sum() > 0
    # kernel maps were built once per (coords, stride, kernel) and reused
    st = x.manager.stats
    assert st.kernel_map_hits > st.kernel_map_builds


@pytest.mark.parametrize("norm", ["instance", "none"])
def test_unet_batch_items_do_not_mix(gen, grids, norm):
    """Changing item 1 (features and coordinates) leaves item 0's outputs unchanged."""
    torch.manual_seed(0)
    net = SparseUNet(2, 4, widths=(4, 8, 16), kernel="hypercross2", norm=norm, backend="torch").double().eval()
    a = grids.random_coords(gen, 1, 10, 0.2, 1, -5)
    b1 = grids.random_coords(gen, 1, 10, 0.2, 1, -5)
    b2 = grids.random_coords(gen, 1, 10, 0.3, 1, -5)
    b1[:, 0] = 1
    b2[:, 0] = 1
    fa = torch.randn(a.shape[0], 2, generator=gen, dtype=torch.float64)
    y1 = net(SparseTensor(torch.cat([fa, torch.randn(b1.shape[0], 2, generator=gen, dtype=torch.float64)]),
                          torch.cat([a, b1])))
    y2 = net(SparseTensor(torch.cat([fa, 5 * torch.randn(b2.shape[0], 2, generator=gen, dtype=torch.float64)]),
                          torch.cat([a, b2])))
    n = a.shape[0]
    torch.testing.assert_close(y1.feats[:n], y2.feats[:n], atol=1e-12, rtol=0)
    assert not torch.allclose(y1.feats[n:n + 5], y2.feats[n:n + 5])


def test_instance_norm_normalises_each_item(gen, grids):
    coords = grids.random_coords(gen, 3, 6, 0.3, 1, 0)
    feats = torch.randn(coords.shape[0], 4, generator=gen, dtype=torch.float64) * 3 + 1
    feats[coords[:, 0] == 2] += 100.0
    y = SparseInstanceNorm(4).double()(SparseTensor(feats, coords))
    for b in range(3):
        f = y.feats[coords[:, 0] == b]
        torch.testing.assert_close(f.mean(0), torch.zeros(4, dtype=torch.float64), atol=1e-10, rtol=0)
        torch.testing.assert_close(f.var(0, unbiased=False), torch.ones(4, dtype=torch.float64), atol=1e-3, rtol=0)


def test_unet_is_deterministic(gen, grids):
    coords = grids.random_coords(gen, 2, 10, 0.2, 1, 0)
    feats = torch.randn(coords.shape[0], 3, generator=gen)
    net = SparseUNet(3, 7, widths=(8, 16), backend="torch")
    outs, grads = [], []
    for _ in range(2):
        net.zero_grad()
        y = net(SparseTensor(feats, coords))
        y.feats.sum().backward()
        outs.append(y.feats.detach())
        grads.append(net.stem[0].weight.grad.clone())
    assert torch.equal(outs[0], outs[1]) and torch.equal(grads[0], grads[1])
