"""Kernel maps: the input/output row pairs of a sparse convolution, per kernel offset.

Offsets and their order are :class:`~gen3d_ros.sparse.kernels.Neighbourhood`'s (``sparse/kernels.py``).

Kernel map
----------
For each offset k, pairs ``(in_idx, out_idx)`` of rows: output row ``out_idx`` reads input row
``in_idx`` through weight ``W[k]``. Pairs of all offsets are concatenated; offset k owns the slice
``ptr[k]:ptr[k+1]``. Inside one offset, in_idx and out_idx are each free of repeats (an offset is a
translation), which makes the scatter-add deterministic even on CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from gen3d_ros.sparse.hashing import CoordinateHash


@dataclass
class KernelMap:
    """Row pairs per kernel offset (see module docstring).

    Attributes:
        in_idx, out_idx: (P,) int64 on the coordinates' device.
        ptr: K + 1 python ints; offset k owns pairs ``ptr[k]:ptr[k+1]``.
        n_in, n_out: row counts of the input and output coordinate sets.
        identity: per offset, True when its pairs are exactly ``(i, i)`` for all rows (the centre
            of a submanifold map); the conv then skips the gather and scatter.
    """

    in_idx: Tensor
    out_idx: Tensor
    ptr: list[int]
    n_in: int
    n_out: int
    identity: list[bool]
    swapped: bool = False
    """True for the map returned by :meth:`transposed` (it shares ``tables`` with the original)."""
    tables: dict = field(default_factory=dict, repr=False, compare=False)
    """Cache of :meth:`neighbour_table` for this map and its transpose."""

    @property
    def volume(self) -> int:
        return len(self.ptr) - 1

    @property
    def num_pairs(self) -> int:
        return self.ptr[-1]

    def pairs(self, k: int) -> tuple[Tensor, Tensor]:
        """(in_idx, out_idx) of offset k."""
        s, e = self.ptr[k], self.ptr[k + 1]
        return self.in_idx[s:e], self.out_idx[s:e]

    def transposed(self) -> "KernelMap":
        """The same pairs with input and output swapped (the adjoint map)."""
        return KernelMap(self.out_idx, self.in_idx, self.ptr, self.n_out, self.n_in, self.identity,
                         not self.swapped, self.tables)

    def neighbour_table(self) -> Tensor:
        """(n_out, K) int64: the input row that output row j reads through offset k, ``n_in`` where none.

        The dense form of the map for a gather -> one GEMM convolution (row ``n_in`` of the padded input is
        zeros); built once per map (cached; the transposed map has its own).
        """
        table = self.tables.get(self.swapped)
        if table is None:
            counts = torch.tensor([self.ptr[k + 1] - self.ptr[k] for k in range(self.volume)],
                                  device=self.in_idx.device)
            k_ids = torch.repeat_interleave(torch.arange(self.volume, device=self.in_idx.device), counts)
            table = torch.full((self.n_out, self.volume), self.n_in, dtype=torch.long, device=self.in_idx.device)
            table[self.out_idx, k_ids] = self.in_idx  # one pair per (output row, offset): no collisions
            self.tables[self.swapped] = table
        return table


def build_kernel_map(
    src_hash: CoordinateHash,
    dst_coords: Tensor,
    offsets: Tensor,
    step: int,
    *,
    same_set: bool = False,
    symmetric: bool = False,
) -> KernelMap:
    """Pairs ``(i, j)`` per offset k with ``src[i] == dst[j] + offsets[k] * step``.

    A convolution with output coords ``dst`` and input coords ``src`` uses the map as is
    (``in_idx = i``); a transposed convolution swaps it.

    Args:
        src_hash: hash of the source (input) coordinates.
        dst_coords: (M, 4) int destination (output) coordinates.
        offsets: (K, 3) int64 offsets.
        step: voxel units per offset unit (input tensor stride times dilation).
        same_set: src and dst are the same coordinate set (submanifold): offset 0 is the identity.
        symmetric: with ``same_set``, the offset set is closed under negation; the map of -o is
            then the swap of the map of o, and only half of the offsets are looked up.
    Returns:
        KernelMap with n_in = src rows, n_out = M.
    """
    device = dst_coords.device
    m = int(dst_coords.shape[0])
    k_total = int(offsets.shape[0])
    offs = offsets.to(device=device, dtype=torch.long)
    off_list = [tuple(o) for o in offs.tolist()]
    index_of = {o: i for i, o in enumerate(off_list)}

    identity = [False] * k_total
    lookup: list[int] = []
    mirror: dict[int, int] = {}  # k -> the offset whose swapped map it is
    for k, o in enumerate(off_list):
        if same_set and o == (0, 0, 0):
            identity[k] = True
        elif same_set and symmetric and (-o[0], -o[1], -o[2]) in index_of and o < (0, 0, 0):
            mirror[k] = index_of[(-o[0], -o[1], -o[2])]
        else:
            lookup.append(k)

    found: dict[int, tuple[Tensor, Tensor]] = {}
    if lookup and m > 0:
        rows = src_hash.query_offsets(dst_coords, offs[lookup] * step)  # (L, M)
        hit = rows >= 0
        counts = hit.sum(dim=1).tolist()
        flat_hit = hit.reshape(-1)
        all_in = rows.reshape(-1)[flat_hit]
        all_out = torch.arange(m, device=device).repeat(len(lookup))[flat_hit]
        start = 0
        for k, c in zip(lookup, counts):
            found[k] = (all_in[start : start + c], all_out[start : start + c])
            start += c

    empty = torch.zeros(0, dtype=torch.long, device=device)
    ins, outs, ptr = [], [], [0]
    for k in range(k_total):
        if identity[k]:
            a = torch.arange(m, device=device)
            i_k, o_k = a, a
        elif k in mirror:
            i_src, o_src = found.get(mirror[k], (empty, empty))
            i_k, o_k = o_src, i_src
            # keep the output order ascending like the looked-up offsets
            order = torch.argsort(o_k)
            i_k, o_k = i_k[order], o_k[order]
        else:
            i_k, o_k = found.get(k, (empty, empty))
        ins.append(i_k)
        outs.append(o_k)
        ptr.append(ptr[-1] + int(i_k.shape[0]))
    in_idx = torch.cat(ins) if ins else empty
    out_idx = torch.cat(outs) if outs else empty
    return KernelMap(in_idx, out_idx, ptr, src_hash.n, m, identity)
