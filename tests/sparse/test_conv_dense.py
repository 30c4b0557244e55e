"""Sparse convs of the torch backend against dense torch.nn.functional conv3d / conv_transpose3d."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gen3d_ros.sparse import (
    GenerativeConv3d,
    Neighbourhood,
    SparseTensor,
    StridedConv3d,
    SubmanifoldConv3d,
    TransposedConv3d,
    dense_to_sparse_weight,
    sparse_to_dense_weight,
)

ATOL = 1e-10  # float64 throughout: any difference is a convention error, not rounding
G = 8  # grid cells per axis
ORIGIN = -4  # negative coordinates exercise floor (not truncation) in downsampling


def _sparse(gen, grids, c_in, stride=1, density=0.3, n_batch=2):
    coords = grids.random_coords(gen, n_batch, G, density, stride, ORIGIN)
    feats = torch.randn(coords.shape[0], c_in, generator=gen, dtype=torch.float64)
    return SparseTensor(feats, coords, stride)


def _set(coords: torch.Tensor) -> set[tuple[int, ...]]:
    return {tuple(r) for r in coords.tolist()}


@pytest.mark.parametrize(
    "kernel,dilation",
    [(3, 1), (5, 1), (3, 2), ("hypercross1", 1), ("hypercross2", 1)],
)
@pytest.mark.parametrize("stride", [1, 2])
def test_submanifold_conv_equals_dense_conv_at_input_sites(gen, grids, kernel, dilation, stride):
    x = _sparse(gen, grids, 3, stride)
    conv = SubmanifoldConv3d(3, 4, kernel, dilation=dilation, backend="torch").double()
    nb = conv.neighbourhood
    k = nb.size
    w_dense = sparse_to_dense_weight(conv.weight.detach(), nb)  # zero outside a hypercross
    assert torch.equal(dense_to_sparse_weight(w_dense, nb), conv.weight.detach())
    y = conv(x)
    assert y.same_coords(x)
    d = F.conv3d(grids.to_dense(x, G, ORIGIN), w_dense, padding=dilation * (k // 2), dilation=dilation)
    ref = grids.read_dense(d, x.coords, ORIGIN, stride)
    torch.testing.assert_close(y.feats, ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("kernel,padding", [(2, 0), (3, 1)])
def test_strided_conv_equals_dense_stride2_conv(gen, grids, kernel, padding):
    x = _sparse(gen, grids, 3, stride=1)
    conv = StridedConv3d(3, 5, kernel, stride=2, backend="torch").double()
    y = conv(x)
    assert y.stride == 2
    c = x.coords.long()
    expect = torch.cat([c[:, :1], torch.div(c[:, 1:], 2, rounding_mode="floor") * 2], 1)
    assert _set(y.coords) == _set(expect)
    d = F.conv3d(grids.to_dense(x, G, ORIGIN), sparse_to_dense_weight(conv.weight.detach(), conv.neighbourhood),
                 stride=2, padding=padding)
    torch.testing.assert_close(y.feats, grids.read_dense(d, y.coords, ORIGIN, 2), atol=ATOL, rtol=0)


@pytest.mark.parametrize("kernel,padding,out_pad", [(2, 0, 0), (3, 1, 1)])
def test_transposed_conv_equals_dense_conv_transpose_at_targets(gen, grids, kernel, padding, out_pad):
    target = _sparse(gen, grids, 1, stride=1, density=0.4)
    # coarse input on an arbitrary stride-2 set (not the downsampled target): exercises missing parents
    coarse = grids.random_coords(gen, 2, G // 2, 0.5, 2, ORIGIN)
    x = SparseTensor(torch.randn(coarse.shape[0], 3, generator=gen, dtype=torch.float64), coarse, 2,
                     manager=target.manager)
    conv = TransposedConv3d(3, 4, kernel, stride=2, backend="torch").double()
    y = conv(x, target)
    assert y.same_coords(target)
    w_t = sparse_to_dense_weight(conv.weight.detach(), conv.neighbourhood, transposed=True)
    d = F.conv_transpose3d(grids.to_dense(x, G // 2, ORIGIN), w_t, stride=2, padding=padding, output_padding=out_pad)
    assert d.shape[-1] == G
    torch.testing.assert_close(y.feats, grids.read_dense(d, target.coords, ORIGIN, 1), atol=ATOL, rtol=0)


def test_transposed_conv_is_adjoint_of_strided_conv(gen, grids):
    x = _sparse(gen, grids, 3, stride=1)
    down = StridedConv3d(3, 4, 2, backend="torch").double()
    up = TransposedConv3d(4, 3, 2, backend="torch").double()
    up.weight.data = down.weight.data.transpose(1, 2).clone()
    y = down(x)
    v = y.replace_feats(torch.randn(len(y), 4, generator=gen, dtype=torch.float64))
    # <down(x), v> == <x, down^T(v)>
    lhs = (y.feats * v.feats).sum()
    rhs = (x.feats * up(v, x).feats).sum()
    torch.testing.assert_close(lhs, rhs, atol=1e-9, rtol=0)


@pytest.mark.parametrize("kernel", [3, "hypercross2"])
def test_generative_conv_outputs_the_dilated_set(gen, grids, kernel):
    x = _sparse(gen, grids, 3, stride=1, density=0.15)
    conv = GenerativeConv3d(3, 2, kernel, backend="torch").double()
    y = conv(x)
    nb = conv.neighbourhood
    dil = {(b, px + o[0], py + o[1], pz + o[2]) for b, px, py, pz in x.coords.tolist() for o in nb.offset_list}
    assert _set(y.coords) == dil
    assert len(y) == len(dil)  # unique rows
    r = nb.radius
    w_t = sparse_to_dense_weight(conv.weight.detach(), nb, transposed=True)
    d = F.conv_transpose3d(grids.to_dense(x, G, ORIGIN), w_t)  # full output, cell 0 at ORIGIN - r
    torch.testing.assert_close(y.feats, grids.read_dense(d, y.coords, ORIGIN - r, 1), atol=ATOL, rtol=0)


def test_generative_transposed_conv_makes_eight_children(gen, grids):
    coarse = grids.random_coords(gen, 2, G // 2, 0.3, 2, ORIGIN)
    x = SparseTensor(torch.randn(coarse.shape[0], 3, generator=gen, dtype=torch.float64), coarse, 2)
    conv = GenerativeConv3d(3, 2, 2, stride=2, backend="torch").double()
    y = conv(x)
    assert y.stride == 1 and len(y) == 8 * len(x)
    w_t = sparse_to_dense_weight(conv.weight.detach(), conv.neighbourhood, transposed=True)
    d = F.conv_transpose3d(grids.to_dense(x, G // 2, ORIGIN), w_t, stride=2)
    torch.testing.assert_close(y.feats, grids.read_dense(d, y.coords, ORIGIN, 1), atol=ATOL, rtol=0)


def test_hypercross_offset_counts():
    assert Neighbourhood.hypercross(1).volume == 7
    assert Neighbourhood.hypercross(2).volume == 25
    assert Neighbourhood.hypercross(3).volume == 63
    assert Neighbourhood.cube(3).volume == 27
    assert Neighbourhood.cube(2).offset_list == tuple((a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1))
    offs = Neighbourhood.hypercross(3).offsets()
    assert int(offs.abs().sum(1).max()) == 3
    assert offs.tolist() == sorted(offs.tolist())  # dx slowest, dz fastest
