"""Coordinate hashing (sorted keys and dense table agree), validation errors, kernel-map caching."""

from __future__ import annotations

import pytest
import torch

from gen3d_ros.sparse import CoordinateHash, CoordinateManager, Neighbourhood, SparseTensor, unique_coords
from gen3d_ros.sparse.kernel_map import build_kernel_map


@pytest.mark.parametrize("stride", [1, 4])
def test_sorted_and_dense_hash_find_the_same_rows(gen, stride):
    coords = torch.unique(torch.randint(-50, 50, (3000, 4), generator=gen), dim=0)
    coords[:, 0] = coords[:, 0].abs() % 3
    coords = torch.unique(coords, dim=0)
    coords[:, 1:] *= stride
    coords = coords[torch.randperm(coords.shape[0], generator=gen)].int()
    hs = CoordinateHash(coords, stride, "sorted")
    hd = CoordinateHash(coords, stride, "dense")
    assert hs.method == "sorted" and hd.method == "dense"
    # queries: every stored row, shifted rows (some hit, some miss), off-stride and out-of-box rows
    q = torch.cat([coords, coords + torch.tensor([0, stride, 0, -stride]), coords + torch.tensor([0, 1, 0, 0]),
                   torch.tensor([[0, 10**6, 0, 0], [7, 0, 0, 0], [0, -(10**6), 3, 3]])]).int()
    rs, rd = hs.query(q), hd.query(q)
    assert torch.equal(rs, rd)
    n = coords.shape[0]
    assert torch.equal(rs[:n], torch.arange(n))
    if stride > 1:
        assert bool((rs[2 * n : 3 * n] == -1).all())
    assert bool((rs[-3:] == -1).all())


def test_duplicate_coordinates_are_rejected_with_the_rows():
    c = torch.tensor([[0, 1, 2, 3], [0, 4, 5, 6], [0, 1, 2, 3]], dtype=torch.int32)
    for method in ("sorted", "dense"):
        with pytest.raises(ValueError, match=r"rows 0 and 2 are both \[0, 1, 2, 3\]"):
            CoordinateHash(c, 1, method)


def test_coords_must_be_multiples_of_the_stride():
    with pytest.raises(ValueError, match="not a multiple of tensor stride 2"):
        SparseTensor(torch.zeros(2, 1), torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.int32), stride=2)


def test_float_coords_are_rejected():
    with pytest.raises(TypeError, match="integer"):
        SparseTensor(torch.zeros(1, 1), torch.zeros(1, 4))


def test_unique_coords_inverse_and_from_duplicates():
    c = torch.tensor([[0, 1, 1, 1], [1, -2, 0, 0], [0, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.int32)
    u, inv = unique_coords(c)
    assert torch.equal(u[inv], c) and u.shape[0] == 3
    x = SparseTensor.from_duplicates(c, torch.tensor([[1.0], [2.0], [3.0], [4.0]]))
    got = {tuple(r): f for r, f in zip(x.coords.tolist(), x.feats[:, 0].tolist())}
    assert got == {(0, 1, 1, 1): 2.0, (1, -2, 0, 0): 2.0, (0, 0, 0, 0): 4.0}


def test_symmetric_shortcut_gives_the_same_pairs_as_full_lookup(gen):
    coords = torch.unique(torch.randint(0, 12, (600, 4), generator=gen), dim=0)
    coords[:, 0] %= 2
    coords = torch.unique(coords, dim=0).int()
    h = CoordinateHash(coords)
    nb = Neighbourhood.hypercross(2)
    fast = build_kernel_map(h, coords, nb.offsets(), 1, same_set=True, symmetric=True)
    slow = build_kernel_map(h, coords, nb.offsets(), 1)
    assert fast.ptr == slow.ptr
    for k in range(nb.volume):
        a = sorted(zip(*[t.tolist() for t in fast.pairs(k)]))
        b = sorted(zip(*[t.tolist() for t in slow.pairs(k)]))
        assert a == b


def test_kernel_maps_are_built_once_per_coords_stride_and_kernel(gen):
    coords = torch.unique(torch.randint(0, 10, (400, 4), generator=gen), dim=0)
    coords[:, 0] %= 2
    x = SparseTensor(torch.randn(len(torch.unique(coords, dim=0)), 2), torch.unique(coords, dim=0).int())
    m: CoordinateManager = x.manager
    nb = Neighbourhood.cube(3)
    k1 = m.kernel_map(x.key, x.key, nb, 1)
    k2 = m.kernel_map(x.key, x.key, nb, 1)
    assert k1 is k2 and m.stats.kernel_map_builds == 1 and m.stats.kernel_map_hits == 1
    m.kernel_map(x.key, x.key, Neighbourhood.hypercross(2), 1)
    assert m.stats.kernel_map_builds == 2
    d1, d2 = m.downsample(x.key, 2), m.downsample(x.key, 2)
    assert d1 == d2 and m.stride(d1) == 2
    # the strided conv's map is reused (swapped) by the transposed conv back onto x
    down = m.kernel_map(x.key, d1, Neighbourhood.cube(2), 1)
    up = m.transposed_kernel_map(d1, x.key, Neighbourhood.cube(2), 1)
    assert up.in_idx is down.out_idx and up.out_idx is down.in_idx


@pytest.mark.parametrize("method", ["sorted", "dense"])
@pytest.mark.parametrize("stride,dst_stride,step", [(1, 1, 1), (2, 2, 2), (2, 4, 2), (2, 1, 1)])
def test_query_offsets_equals_query_of_shifted_rows(gen, method, stride, dst_stride, step):
    src = torch.unique(torch.randint(-8, 8, (500, 4), generator=gen), dim=0)
    src[:, 0] = src[:, 0].abs() % 2
    src = torch.unique(src, dim=0)
    src[:, 1:] *= stride
    dst = torch.unique(torch.randint(-9, 9, (300, 4), generator=gen), dim=0)
    dst[:, 0] = dst[:, 0].abs() % 3  # batch 2 is absent from src
    dst = torch.unique(dst, dim=0)
    dst[:, 1:] *= dst_stride
    h = CoordinateHash(src.int(), stride, method)
    deltas = Neighbourhood.cube(3).offsets() * step
    got = h.query_offsets(dst.int(), deltas)
    q = dst.long().unsqueeze(0).repeat(deltas.shape[0], 1, 1)
    q[:, :, 1:] += deltas.unsqueeze(1)
    want = h.query(q.reshape(-1, 4)).reshape(deltas.shape[0], -1)
    assert torch.equal(got, want)
    assert bool((got >= 0).any())
