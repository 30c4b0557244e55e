"""Kernel geometry: neighbourhoods (the kernel offsets of a sparse convolution) and where they sit in a cube.

Offset order (the weight layout ``[K, C_in, C_out]`` follows it)
------------------------------------------------------------------
Offsets are integer triples ``(dx, dy, dz)`` sorted lexicographically, **dx slowest, dz fastest**.
For a cube of odd size k the offsets run over ``-(k-1)/2 .. (k-1)/2``; for even k over
``-(k//2 - 1) .. k//2`` (k = 2: ``0, 1``), MinkowskiEngine's convention. So cube offset index
``k = (a * ks + b) * ks + c`` for the dense kernel position ``(a, b, c)``, and a dense
``torch.nn.Conv3d`` weight ``w[C_out, C_in, ks, ks, ks]`` converts with
``w.permute(2, 3, 4, 1, 0).reshape(K, C_in, C_out)`` (see ``conv.dense_to_sparse_weight``).
The L1-ball ``hypercross(r)`` keeps, in the same order, the cube offsets of size ``2r + 1``
with ``|dx| + |dy| + |dz| <= r`` (r = 1: 7, r = 2: 25, r = 3: 63 offsets).

Every backend converts weights to its own kernel layout through :func:`enclosing_cube_size` and
:func:`cube_indices` (like MinkowskiEngine's ``KernelGenerator``, this module depends on no layer or backend).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import Tensor

NEIGHBOURHOOD_KINDS = ("cube", "hypercross", "custom")


_OFFSET_CACHE: dict[tuple, Tensor] = {}


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
        """(K, 3) int64 offsets in the documented order. Cached per device (a host-to-device copy per call
        stalls a GPU pipeline): treat the result as read-only."""
        if device is None:  # the default device may be a context's (e.g. "meta" while shapes are checked)
            return torch.tensor(self.offset_list, dtype=torch.long).reshape(-1, 3)
        key = (tuple(self.offset_list), str(torch.device(device)))
        cached = _OFFSET_CACHE.get(key)
        if cached is None:
            cached = torch.tensor(self.offset_list, dtype=torch.long, device=device).reshape(-1, 3)
            _OFFSET_CACHE[key] = cached
        return cached

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


def cube_indices(neighbourhood: Neighbourhood, kernel_size: int) -> Tensor:
    """(K,) int64 index of each offset of ``neighbourhood`` in the cube of ``kernel_size`` (our order).

    Raises ValueError naming the offset when one lies outside that cube."""
    cube = {o: i for i, o in enumerate(Neighbourhood.cube(kernel_size).offset_list)}
    try:
        return torch.tensor([cube[o] for o in neighbourhood.offset_list], dtype=torch.long)
    except KeyError as exc:
        raise ValueError(f"offset {exc.args[0]} of {neighbourhood} is outside a cube of size {kernel_size}") from None


def enclosing_cube_size(neighbourhood: Neighbourhood) -> int:
    """Edge length k of the smallest cube (our offset convention) holding every offset of ``neighbourhood``:
    its own size for a cube or hypercross, ``2 * max |offset component| + 1`` for a custom set."""
    if neighbourhood.kind in ("cube", "hypercross"):
        return neighbourhood.size
    r = max(max(abs(v) for v in o) for o in neighbourhood.offset_list)
    return 2 * r + 1
