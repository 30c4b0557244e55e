"""Coordinate hashing: map integer voxel coordinates (b, x, y, z) to row indices.

Coordinates are packed into one int64 key with a mixed-radix code over the bounding box of the
coordinate set (batch, then x, y, z; z fastest). Two lookup structures share that key:

* ``"sorted"``: the keys sorted once; a query is ``torch.searchsorted`` (O(log N), any extent,
  memory 16 bytes per row). Works on CPU and CUDA.
* ``"dense"``: a flat int32 table over the bounding box, ``table[key] = row`` (O(1), memory
  4 bytes per cell of the box). Used when the box is small compared to the number of rows.

``"auto"`` (the default) takes the dense table when the box has at most
``max(DENSE_MIN_CELLS, DENSE_CELLS_PER_ROW * N)`` cells, else the sorted keys. Both return the
same answers; ``tests/sparse/test_hashing.py`` checks that.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: A dense table is used while the bounding box has at most this many cells per row ...
DENSE_CELLS_PER_ROW = 64
#: ... or at most this many cells in all (4 MiB of int32).
DENSE_MIN_CELLS = 1 << 20
#: Never more cells than this in a dense table (256 MiB of int32).
DENSE_MAX_CELLS = 1 << 26

_MAX_KEY_SPACE = 1 << 62

HASH_METHODS = ("auto", "sorted", "dense")


class CoordinateHash:
    """Lookup from coordinates to row index for one coordinate set at one tensor stride.

    Args:
        coords: (N, 4) integer tensor (batch, x, y, z), voxel units, every spatial value a
            multiple of ``stride``; rows must be unique.
        stride: tensor stride of the set (>= 1).
        method: ``"auto"``, ``"sorted"`` or ``"dense"`` (see module docstring).
        check_unique: raise ``ValueError`` when two rows are equal (costs one sort for the
            dense method).
        check_stride: raise ``ValueError`` when a coordinate is not a multiple of ``stride``.
    """

    def __init__(
        self, coords: Tensor, stride: int = 1, method: str = "auto", check_unique: bool = True,
        check_stride: bool = True,
    ) -> None:
        if method not in HASH_METHODS:
            raise ValueError(f"hash method {method!r} is not one of {HASH_METHODS}")
        if coords.dim() != 2 or coords.shape[1] != 4:
            raise ValueError(f"coords must have shape (N, 4) = (batch, x, y, z), got {tuple(coords.shape)}")
        self.stride = int(stride)
        self.device = coords.device
        self.n = int(coords.shape[0])
        scaled = _scale(coords.long(), self.stride, check=check_stride)
        if self.n == 0:
            self.lo = torch.zeros(4, dtype=torch.long, device=self.device)
            self.extent = torch.ones(4, dtype=torch.long, device=self.device)
        else:
            self.lo = scaled.min(dim=0).values
            self.extent = scaled.max(dim=0).values - self.lo + 1
        ext = [int(e) for e in self.extent.tolist()]
        cells = ext[0] * ext[1] * ext[2] * ext[3]
        if cells >= _MAX_KEY_SPACE:
            raise ValueError(
                f"coordinate bounding box {ext} (batch, x, y, z at stride {self.stride}) has {cells} cells, "
                "more than an int64 key can hold; use a coarser voxel size or split the scene"
            )
        self.cells = cells
        # z fastest: key = ((b * ex + x) * ey + y) * ez + z
        self._radix = torch.tensor(
            [ext[1] * ext[2] * ext[3], ext[2] * ext[3], ext[3], 1], dtype=torch.long, device=self.device
        )
        keys = ((scaled - self.lo) * self._radix).sum(dim=1)
        if method == "auto":
            dense_ok = cells <= DENSE_MAX_CELLS and cells <= max(DENSE_MIN_CELLS, DENSE_CELLS_PER_ROW * self.n)
            method = "dense" if dense_ok else "sorted"
        self.method = method
        if method == "sorted":
            self._sorted_keys, self._order = torch.sort(keys)
            if check_unique and self.n > 1 and bool((self._sorted_keys[1:] == self._sorted_keys[:-1]).any()):
                raise ValueError(_duplicate_message(coords, self._sorted_keys, self._order))
        else:
            if cells > DENSE_MAX_CELLS:
                raise ValueError(f"dense hash needs {cells} cells, more than DENSE_MAX_CELLS={DENSE_MAX_CELLS}")
            self._table = torch.full((cells,), -1, dtype=torch.int32, device=self.device)
            self._table[keys] = torch.arange(self.n, dtype=torch.int32, device=self.device)
            if check_unique and int((self._table >= 0).sum()) != self.n:
                sk, order = torch.sort(keys)
                raise ValueError(_duplicate_message(coords, sk, order))

    def query(self, coords: Tensor) -> Tensor:
        """Row index of each query coordinate, -1 where absent.

        Args:
            coords: (M, 4) integer tensor (batch, x, y, z) in voxel units; rows that are not
                multiples of the stride are simply absent.
        Returns:
            (M,) int64 tensor.
        """
        q = coords.long()
        if self.n == 0 or q.shape[0] == 0:
            return torch.full((q.shape[0],), -1, dtype=torch.long, device=q.device)
        ok = torch.ones(q.shape[0], dtype=torch.bool, device=q.device)
        if self.stride != 1:
            ok &= (q[:, 1:] % self.stride == 0).all(dim=1)
            q = torch.cat([q[:, :1], torch.div(q[:, 1:], self.stride, rounding_mode="floor")], dim=1)
        rel = q - self.lo
        ok &= ((rel >= 0) & (rel < self.extent)).all(dim=1)
        keys = (rel * self._radix).sum(dim=1)
        keys = torch.where(ok, keys, torch.zeros_like(keys))
        if self.method == "sorted":
            pos = torch.searchsorted(self._sorted_keys, keys).clamp_(max=self.n - 1)
            ok &= self._sorted_keys[pos] == keys
            rows = self._order[pos]
        else:
            rows = self._table[keys].long()
            ok &= rows >= 0
        return torch.where(ok, rows, torch.full_like(rows, -1))


    def query_offsets(self, coords: Tensor, deltas: Tensor, aligned: bool | None = None) -> Tensor:
        """Rows of ``coords[m] + (0, deltas[l])`` for every pair (l, m); -1 where absent.

        Same answers as :meth:`query` on the (L * M) shifted rows, without materialising them: the
        key of a shifted row is the row's key plus the offset's key, and bounds are checked per axis.

        Args:
            coords: (M, 4) integer (batch, x, y, z), voxel units.
            deltas: (L, 3) integer spatial offsets in voxel units.
            aligned: whether every coordinate and offset is a multiple of the stride (the caller knows it from
                the sets' strides: no device check, no host synchronisation); None: check.
        Returns:
            (L, M) int64.
        """
        m, l_ = int(coords.shape[0]), int(deltas.shape[0])
        s = self.stride
        c = coords.long()
        d = deltas.to(device=c.device, dtype=torch.long)
        if self.n == 0 or m == 0 or l_ == 0:
            return torch.full((l_, m), -1, dtype=torch.long, device=c.device)
        if aligned is None and s != 1:
            aligned = not (bool((c[:, 1:] % s != 0).any()) or bool((d % s != 0).any()))
        if s != 1 and not aligned:
            q = c.unsqueeze(0).repeat(l_, 1, 1)
            q[:, :, 1:] += d.unsqueeze(1)
            return self.query(q.reshape(-1, 4)).reshape(l_, m)
        if s != 1:
            c = torch.cat([c[:, :1], torch.div(c[:, 1:], s, rounding_mode="floor")], dim=1)
            d = torch.div(d, s, rounding_mode="floor")
        rel = c - self.lo  # (M, 4)
        # one broadcast over (L, M, 3) instead of a loop over axes: fewer kernels, which is what a GPU waits on
        shifted = rel[:, 1:].unsqueeze(0) + d.unsqueeze(1)  # (L, M, 3)
        ok = ((shifted >= 0) & (shifted < self.extent[1:])).all(dim=2)
        ok &= ((rel[:, 0] >= 0) & (rel[:, 0] < self.extent[0])).unsqueeze(0)
        keys = (shifted * self._radix[1:]).sum(dim=2) + (rel[:, 0] * self._radix[0]).unsqueeze(0)
        keys = torch.where(ok, keys, torch.zeros_like(keys))
        if self.method == "sorted":
            pos = torch.searchsorted(self._sorted_keys, keys.reshape(-1)).clamp_(max=self.n - 1).reshape(l_, m)
            ok &= self._sorted_keys[pos] == keys
            rows = self._order[pos]
        else:
            rows = self._table[keys].long()
            ok &= rows >= 0
        return torch.where(ok, rows, torch.full_like(rows, -1))


def pack_keys(coords: Tensor, lo: Tensor, extent: Tensor) -> Tensor:
    """Mixed-radix int64 keys of (N, 4) coords inside the box [lo, lo + extent); z fastest."""
    e = extent.tolist() if isinstance(extent, Tensor) else list(extent)
    radix = torch.tensor([e[1] * e[2] * e[3], e[2] * e[3], e[3], 1], dtype=torch.long, device=coords.device)
    return ((coords.long() - lo) * radix).sum(dim=1)


def unpack_keys(keys: Tensor, lo: Tensor, extent: Tensor) -> Tensor:
    """Inverse of :func:`pack_keys`: (N,) int64 keys -> (N, 4) int64 coords (``extent``: a tensor or 4 ints)."""
    e = extent.tolist() if isinstance(extent, Tensor) else list(extent)
    z = keys % e[3]
    r = torch.div(keys, e[3], rounding_mode="floor")
    y = r % e[2]
    r = torch.div(r, e[2], rounding_mode="floor")
    x = r % e[1]
    b = torch.div(r, e[1], rounding_mode="floor")
    return torch.stack([b, x, y, z], dim=1) + lo


def unique_coords(coords: Tensor) -> tuple[Tensor, Tensor]:
    """Unique rows of (N, 4) int coords, sorted by (batch, x, y, z), and the inverse map.

    Returns:
        (unique (U, 4) int32, inverse (N,) int64 with ``unique[inverse] == coords``).
    """
    c = coords.long()
    if c.shape[0] == 0:
        return coords.new_zeros((0, 4), dtype=torch.int32), torch.zeros(0, dtype=torch.long, device=c.device)
    lo = c.min(dim=0).values
    extent = c.max(dim=0).values - lo + 1
    ext = [int(v) for v in extent.tolist()]
    if ext[0] * ext[1] * ext[2] * ext[3] >= _MAX_KEY_SPACE:
        raise ValueError(f"coordinate bounding box {ext} is too large for int64 keys")
    keys = pack_keys(c, lo, ext)  # the host copy: one synchronisation, not three
    uk, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    return unpack_keys(uk, lo, ext).int(), inverse


def _scale(coords: Tensor, stride: int, check: bool = True) -> Tensor:
    if stride == 1:
        return coords
    if check and bool((coords[:, 1:] % stride != 0).any()):
        bad = coords[(coords[:, 1:] % stride != 0).any(dim=1)][0].tolist()
        raise ValueError(
            f"coordinate {bad} is not a multiple of tensor stride {stride}; coords are in voxel units "
            "at the finest resolution and a stride-s tensor holds multiples of s"
        )
    return torch.cat([coords[:, :1], torch.div(coords[:, 1:], stride, rounding_mode="floor")], dim=1)


def _duplicate_message(coords: Tensor, sorted_keys: Tensor, order: Tensor) -> str:
    dup = int(torch.nonzero(sorted_keys[1:] == sorted_keys[:-1])[0, 0])
    row_a, row_b = int(order[dup]), int(order[dup + 1])
    return (
        f"coords rows {row_a} and {row_b} are both {coords[row_a].tolist()}; a SparseTensor needs unique "
        "coordinates (merge duplicates first, e.g. SparseTensor.from_points or unique_coords)"
    )
