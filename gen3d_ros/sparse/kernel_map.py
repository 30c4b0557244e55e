"""Neighbourhoods (kernel offsets) and kernel maps (input/output row pairs per offset).

Offset order (the weight layout ``[K, C_in, C_out]`` follows it)
------------------------------------------------------------------
Offsets are integer triples ``(dx, dy, dz)`` sorted lexicographically, **dx slowest, dz fastest**.
For a cube of odd size k the offsets run over ``-(k-1)/2 .. (k-1)/2``; for even k over
``-(k//2 - 1) .. k//2`` (k = 2: ``0, 1``), MinkowskiEngine's convention. So cube offset index
``k = (a * ks + b) * ks + c`` for the dense kernel position ``(a, b, c)``, and a dense
``torch.nn.Conv3d`` weight ``w[C_out, C_in, ks, ks, ks]`` converts with
``w.permute(2, 3, 4, 1, 0).reshape(K, C_in, C_out)`` (see ``ops.dense_to_sparse_weight``).
The L1-ball ``hypercross(r)`` keeps, in the same order, the cube offsets of size ``2r + 1``
with ``|dx| + |dy| + |dz| <= r`` (r = 1: 7, r = 2: 25, r = 3: 63 offsets).

Kernel map
----------
For each offset k, pairs ``(in_idx, out_idx)`` of rows: output row ``out_idx`` reads input row
``in_idx`` through weight ``W[k]``. Pairs of all offsets are concatenated; offset k owns the slice
``ptr[k]:ptr[k+1]``. Inside one offset, in_idx and out_idx are each free of repeats (an offset is a
translation), which makes the scatter-add deterministic even on CUDA.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import Tensor

from gen3d_ros.sparse.hashing import CoordinateHash

NEIGHBOURHOOD_KINDS = ("cube", "hypercross", "custom")


@dataclass(frozen=True)
class Neighbourhood:
    """A set of kernel offsets in units of the (input) tensor stride.

    Build one with :meth:`cube`, :meth:`hypercross` or :meth:`custom`. Hashable (used as a cache key).

    Attributes:
        kind: ``"cube"``, ``"hypercross"`` or ``"custom"``.
        size: cube edge length (cube), ``2 * radius + 1`` (hypercross), 0 (custom).
        custom_offsets: the offsets of a custom neighbourhood, in the order given.
    """

    kind: str
    size: int
    custom_offsets: tuple[tuple[int, int, int], ...] = field(default=(), repr=False)

    @staticmethod
    def cube(kernel_size: int) -> "Neighbourhood":
        """All offsets of a ``kernel_size``^3 cube (27 for 3, 8 for 2, 1 for 1)."""
        if int(kernel_size) < 1:
            raise ValueError(f"cube kernel_size must be >= 1, got {kernel_size}")
        return Neighbourhood("cube", int(kernel_size))

    @staticmethod
    def hypercross(radius: int) -> "Neighbourhood":
        """Offsets with L1 norm <= radius (GCA's neighbourhood; 25 for radius 2, 63 for radius 3)."""
        if int(radius) < 0:
            raise ValueError(f"hypercross radius must be >= 0, got {radius}")
        return Neighbourhood("hypercross", 2 * int(radius) + 1)

    @staticmethod
    def custom(offsets) -> "Neighbourhood":
        """Any list of unique integer (dx, dy, dz) offsets; the order given is the weight order."""
        offs = tuple(tuple(int(v) for v in o) for o in (offsets.tolist() if isinstance(offsets, Tensor) else offsets))
        if not offs or any(len(o) != 3 for o in offs):
            raise ValueError(f"custom offsets must be a non-empty list of (dx, dy, dz), got {offsets!r}")
        if len(set(offs)) != len(offs):
            raise ValueError("custom offsets contain a repeated offset")
        return Neighbourhood("custom", 0, offs)

    @staticmethod
    def parse(spec: "Neighbourhood | int | str") -> "Neighbourhood":
        """Accept a Neighbourhood, an int (cube size) or a string ``"cube3"``, ``"hypercross2"``."""
        if isinstance(spec, Neighbourhood):
            return spec
        if isinstance(spec, int):
            return Neighbourhood.cube(spec)
        if isinstance(spec, str):
            for kind, make in (("cube", Neighbourhood.cube), ("hypercross", Neighbourhood.hypercross)):
                if spec.startswith(kind) and spec[len(kind):].isdigit():
                    return make(int(spec[len(kind):]))
        raise ValueError(
            f"neighbourhood {spec!r} is not a Neighbourhood, an int cube size, 'cubeK' or 'hypercrossR'"
        )

    @property
    def radius(self) -> int:
        """Hypercross radius (or half cube size)."""
        return (self.size - 1) // 2

    @cached_property
    def offset_list(self) -> tuple[tuple[int, int, int], ...]:
        if self.kind == "custom":
            return self.custom_offsets
        k = self.size
        rng = range(-((k - 1) // 2), k // 2 + 1)
        cube = itertools.product(rng, rng, rng)  # dx slowest, dz fastest
        if self.kind == "cube":
            return tuple(cube)
        r = self.radius
        return tuple(o for o in cube if abs(o[0]) + abs(o[1]) + abs(o[2]) <= r)

    def offsets(self, device: torch.device | str | None = None) -> Tensor:
        """(K, 3) int64 offsets in the documented order."""
        return torch.tensor(self.offset_list, dtype=torch.long, device=device).reshape(-1, 3)

    @property
    def volume(self) -> int:
        """Number of offsets K."""
        return len(self.offset_list)

    @cached_property
    def is_symmetric(self) -> bool:
        """True when -o is an offset for every offset o."""
        s = set(self.offset_list)
        return all((-a, -b, -c) in s for a, b, c in s)

    def __str__(self) -> str:
        if self.kind == "hypercross":
            return f"hypercross{self.radius}"
        if self.kind == "cube":
            return f"cube{self.size}"
        return f"custom{self.volume}"


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
        return KernelMap(self.out_idx, self.in_idx, self.ptr, self.n_out, self.n_in, self.identity)


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
