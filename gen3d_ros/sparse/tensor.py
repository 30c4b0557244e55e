"""Sparse voxel tensor and its coordinate manager (cache of hash tables and kernel maps).

Conventions (MinkowskiEngine's):
* ``coords``: (N, 4) int32 ``(batch, x, y, z)`` in voxel units of the finest grid. A tensor at
  stride s holds coordinates that are multiples of s (a stride-2 voxel at (b, 4, 6, -2) covers
  the finest voxels 4..5, 6..7, -2..-1).
* ``feats``: (N, C) float, row i belongs to ``coords[i]``. Rows are unique.

Every SparseTensor points at a :class:`CoordinateManager` and an integer coordinate key. Tensors
made by submanifold ops share the key of their input, so the hash table and kernel maps of a
coordinate set are built once and reused by every layer that sees it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from gen3d_ros.sparse.hashing import CoordinateHash, unique_coords
from gen3d_ros.sparse.kernel_map import KernelMap, build_kernel_map
from gen3d_ros.sparse.kernels import Neighbourhood

log = logging.getLogger("gen3d_ros.sparse")


@dataclass
class CacheStats:
    """Hit/miss counters of a :class:`CoordinateManager` (for tests and profiling)."""

    hash_builds: int = 0
    kernel_map_builds: int = 0
    kernel_map_hits: int = 0
    coords_builds: int = 0
    coords_hits: int = 0


class CoordinateManager:
    """Owns coordinate sets and caches what is derived from them.

    Caches (all keyed by coordinate keys, so reused across layers):
    * hash table per coordinate set;
    * kernel maps per (input key, output key, neighbourhood, step);
    * downsampled sets per (key, factor); dilated (generative) sets per (key, neighbourhood, step).

    All coordinate sets of one manager live on one device.

    Args:
        hash_method: ``"auto"``, ``"sorted"`` or ``"dense"`` (see ``gen3d_ros.sparse.hashing``).
    """

    def __init__(self, hash_method: str = "auto") -> None:
        self.hash_method = hash_method
        self._coords: list[Tensor] = []
        self._strides: list[int] = []
        self._batch_sizes: list[int | None] = []
        self._hashes: dict[int, CoordinateHash] = {}
        self._kernel_maps: dict[tuple, KernelMap] = {}
        self._derived: dict[tuple, int] = {}
        self._trusted: list[bool] = []  # per set: inserted with check=False (see insert)
        #: free space for backends (e.g. their own coordinate managers), keyed by backend name
        self.backend_cache: dict[str, object] = {}
        self.stats = CacheStats()

    # ------------------------------------------------------------------ coordinate sets
    def insert(self, coords: Tensor, stride: int = 1, *, check: bool = True) -> int:
        """Register a coordinate set; returns its key.

        Args:
            coords: (N, 4) integer (batch, x, y, z), multiples of ``stride``, unique rows.
            stride: tensor stride (>= 1).
            check: validate shape, dtype, stride multiples and uniqueness now (builds the hash). False: the
                caller guarantees them (a set made by ``unique_coords`` or derived here), and the hash, built on
                first use, skips its checks too: each is a device-to-host synchronisation on a GPU.
        """
        if coords.dim() != 2 or coords.shape[1] != 4:
            raise ValueError(f"coords must have shape (N, 4) = (batch, x, y, z), got {tuple(coords.shape)}")
        if coords.dtype.is_floating_point or coords.dtype == torch.bool:
            raise TypeError(f"coords must be an integer tensor, got {coords.dtype}; voxelize points first")
        if int(stride) < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if self._coords and coords.device != self._coords[0].device:
            raise ValueError(
                f"coords on {coords.device} but this CoordinateManager holds sets on {self._coords[0].device}; "
                "use SparseTensor.to(device)"
            )
        if check and coords.shape[0] > 0 and bool((coords[:, 0] < 0).any()):
            raise ValueError("batch indices (coords[:, 0]) must be >= 0")
        key = len(self._coords)
        self._coords.append(coords.int().contiguous())
        self._strides.append(int(stride))
        self._batch_sizes.append(None)
        self._trusted.append(not check)
        if check:
            self.hash(key)
        return key

    def coords(self, key: int) -> Tensor:
        """(N, 4) int32 coordinates of a set."""
        return self._coords[key]

    def stride(self, key: int) -> int:
        return self._strides[key]

    def num_rows(self, key: int) -> int:
        return int(self._coords[key].shape[0])

    def batch_size(self, key: int) -> int:
        """1 + the largest batch index of the set (0 for an empty set); cached."""
        if self._batch_sizes[key] is None:
            c = self._coords[key]
            self._batch_sizes[key] = int(c[:, 0].max()) + 1 if c.shape[0] else 0
        return self._batch_sizes[key]  # type: ignore[return-value]

    def hash(self, key: int) -> CoordinateHash:
        """The lookup table of a set (built on first use)."""
        h = self._hashes.get(key)
        if h is None:
            h = CoordinateHash(self._coords[key], self._strides[key], self.hash_method,
                               check_unique=not self._trusted[key], check_stride=not self._trusted[key])
            self._hashes[key] = h
            self.stats.hash_builds += 1
            log.debug("hash for key %d: %d rows, method %s, %d cells", key, h.n, h.method, h.cells)
        return h

    # ------------------------------------------------------------------ derived sets
    def downsample(self, key: int, factor: int = 2) -> int:
        """Key of ``unique(floor(coords / (s * factor)) * (s * factor))`` at stride ``s * factor``.

        Rows are sorted by (batch, x, y, z).
        """
        cache_key = ("down", key, int(factor))
        if cache_key in self._derived:
            self.stats.coords_hits += 1
            return self._derived[cache_key]
        new_stride = self._strides[key] * int(factor)
        c = self._coords[key].long()
        spatial = torch.div(c[:, 1:], new_stride, rounding_mode="floor") * new_stride
        down, _ = unique_coords(torch.cat([c[:, :1], spatial], dim=1))
        out = self.insert(down, new_stride, check=False)
        self._batch_sizes[out] = self._batch_sizes[key]
        self._derived[cache_key] = out
        self.stats.coords_builds += 1
        return out

    def dilate(self, key: int, neighbourhood: Neighbourhood, step: int, out_stride: int) -> tuple[int, KernelMap]:
        """Generative output set ``{p + o * step}`` over rows p and offsets o, and its scatter map.

        The returned KernelMap is in conv orientation for a *transposed* op: ``in_idx`` are rows of
        ``key``, ``out_idx`` rows of the new set, with ``out = in + offsets[k] * step``.
        """
        cache_key = ("dilate", key, neighbourhood, int(step), int(out_stride))
        if cache_key in self._derived:
            self.stats.coords_hits += 1
            out = self._derived[cache_key]
            return out, self._kernel_maps[("scatter", key, out, neighbourhood, int(step))]
        c = self._coords[key].long()
        n = c.shape[0]
        offs = neighbourhood.offsets(c.device) * int(step)
        k = offs.shape[0]
        cand = c.unsqueeze(0).repeat(k, 1, 1)
        cand[:, :, 1:] += offs.unsqueeze(1)
        cand = cand.reshape(-1, 4)
        uniq, inverse = unique_coords(cand)
        out = self.insert(uniq, out_stride, check=False)
        self._batch_sizes[out] = self._batch_sizes[key]
        self._derived[cache_key] = out
        ptr = [i * n for i in range(k + 1)]
        kmap = KernelMap(
            torch.arange(n, device=c.device).repeat(k), inverse, ptr, n, int(uniq.shape[0]), [False] * k
        )
        self._kernel_maps[("scatter", key, out, neighbourhood, int(step))] = kmap
        self.stats.coords_builds += 1
        return out, kmap

    # ------------------------------------------------------------------ kernel maps
    def kernel_map(self, in_key: int, out_key: int, neighbourhood: Neighbourhood, step: int) -> KernelMap:
        """Conv map: pairs with ``in_coord == out_coord + offset * step`` (cached).

        Submanifold conv: ``in_key == out_key``, step = stride * dilation. Strided conv: out_key is
        the downsampled set, step = input stride.
        """
        cache_key = ("conv", in_key, out_key, neighbourhood, int(step))
        km = self._kernel_maps.get(cache_key)
        if km is not None:
            self.stats.kernel_map_hits += 1
            return km
        same = in_key == out_key
        km = build_kernel_map(
            self.hash(in_key),
            self._coords[out_key],
            neighbourhood.offsets(self._coords[out_key].device),
            int(step),
            same_set=same,
            symmetric=same and neighbourhood.is_symmetric,
        )
        self._kernel_maps[cache_key] = km
        self.stats.kernel_map_builds += 1
        return km

    def has_scatter_map(self, in_key: int, out_key: int, neighbourhood: Neighbourhood, step: int) -> bool:
        """Whether ``out_key`` was made from ``in_key`` by :meth:`dilate` (its transposed map is that scatter)."""
        return ("scatter", in_key, out_key, neighbourhood, int(step)) in self._kernel_maps

    def transposed_kernel_map(
        self, in_key: int, out_key: int, neighbourhood: Neighbourhood, step: int
    ) -> KernelMap:
        """Map of a transposed conv from set ``in_key`` onto set ``out_key``:
        pairs with ``out_coord == in_coord + offset * step``.

        It is the swap of the conv map (input ``out_key`` -> output ``in_key``), so a strided conv
        and the transposed conv that undoes it share one cached map.
        """
        scatter_key = ("scatter", in_key, out_key, neighbourhood, int(step))
        km = self._kernel_maps.get(scatter_key)
        if km is not None:
            self.stats.kernel_map_hits += 1
            return km
        return self.kernel_map(out_key, in_key, neighbourhood, step).transposed()


    def neighbour_table(self, in_key: int, out_key: int, neighbourhood: Neighbourhood, step: int, *,
                        transposed: bool = False) -> Tensor:
        """(rows of ``out_key``, K) int64: the row of ``in_key`` at ``out + offset * step`` (``transposed``:
        ``out - offset * step``), ``num_rows(in_key)`` where absent — the dense form of :meth:`kernel_map`
        (:meth:`transposed_kernel_map`) for the gather -> one GEMM convolution, built from hash lookups without
        compacting the pairs (no host synchronisation). Cached."""
        cache_key = ("table", in_key, out_key, neighbourhood, int(step), bool(transposed))
        table = self._kernel_maps.get(cache_key)
        if table is not None:
            self.stats.kernel_map_hits += 1
            return table
        out_coords = self._coords[out_key]
        offsets = neighbourhood.offsets(out_coords.device) * int(step)
        s_in = self._strides[in_key]
        # strides are powers of two here: multiples of the input stride everywhere, known without looking
        aligned = self._strides[out_key] % s_in == 0 and int(step) % s_in == 0
        rows = self.hash(in_key).query_offsets(out_coords, -offsets if transposed else offsets,
                                               aligned=True if aligned else None)  # (K, M)
        table = torch.where(rows >= 0, rows, torch.full_like(rows, self.num_rows(in_key))).t().contiguous()
        self._kernel_maps[cache_key] = table
        self.stats.kernel_map_builds += 1
        return table


class SparseTensor:
    """Sparse voxel features: ``feats[i]`` lives at ``coords[i]``.

    Args:
        feats: (N, C) float tensor.
        coords: (N, 4) integer tensor (batch, x, y, z), voxel units, multiples of ``stride``,
            unique rows, on the same device as ``feats``. Ignored (may be None) when
            ``coordinate_key`` is given.
        stride: tensor stride (>= 1).
        manager: CoordinateManager to register in (a new one when None).
        coordinate_key: reuse a set already in ``manager`` (no checks, no copy).
        check: validate ``coords`` (see :meth:`CoordinateManager.insert`); False for sets unique by
            construction, e.g. the states of a cellular automaton (no host synchronisation on a GPU).
    """

    __slots__ = ("feats", "manager", "key")

    def __init__(
        self,
        feats: Tensor,
        coords: Tensor | None = None,
        stride: int = 1,
        *,
        manager: CoordinateManager | None = None,
        coordinate_key: int | None = None,
        check: bool = True,
    ) -> None:
        if feats.dim() != 2:
            raise ValueError(f"feats must have shape (N, C), got {tuple(feats.shape)}")
        if coordinate_key is None:
            if coords is None:
                raise ValueError("give coords or (manager, coordinate_key)")
            if coords.device != feats.device:
                raise ValueError(f"coords on {coords.device} but feats on {feats.device}")
            manager = manager if manager is not None else CoordinateManager()
            coordinate_key = manager.insert(coords, stride, check=check)
        elif manager is None:
            raise ValueError("coordinate_key needs its manager")
        n = manager.num_rows(coordinate_key)
        if feats.shape[0] != n:
            raise ValueError(f"feats has {feats.shape[0]} rows but coords have {n}")
        self.feats = feats
        self.manager = manager
        self.key = coordinate_key

    # ---------------------------------------------------------------- constructors
    @staticmethod
    def from_duplicates(
        coords: Tensor, feats: Tensor, stride: int = 1, reduce: str = "mean", manager: CoordinateManager | None = None
    ) -> "SparseTensor":
        """Merge rows with equal coordinates (``reduce``: ``"mean"``, ``"sum"`` or ``"first"``)."""
        uniq, inverse = unique_coords(coords)
        n = uniq.shape[0]
        if reduce in ("mean", "sum"):
            out = feats.new_zeros(n, feats.shape[1]).index_add_(0, inverse, feats)
            if reduce == "mean":
                cnt = torch.bincount(inverse, minlength=n).clamp_(min=1).to(feats.dtype)
                out = out / cnt[:, None]
        elif reduce == "first":
            first = torch.full((n,), feats.shape[0], dtype=torch.long, device=feats.device)
            first = first.scatter_reduce(0, inverse, torch.arange(feats.shape[0], device=feats.device), "amin")
            out = feats[first]
        else:
            raise ValueError(f"reduce {reduce!r} is not 'mean', 'sum' or 'first'")
        return SparseTensor(out, uniq.to(feats.device), stride, manager=manager)

    def replace_feats(self, feats: Tensor) -> "SparseTensor":
        """Same coordinates, new features (N, C')."""
        return SparseTensor(feats, manager=self.manager, coordinate_key=self.key)

    # ---------------------------------------------------------------- properties
    @property
    def coords(self) -> Tensor:
        """(N, 4) int32 (batch, x, y, z)."""
        return self.manager.coords(self.key)

    @property
    def stride(self) -> int:
        return self.manager.stride(self.key)

    @property
    def batch_size(self) -> int:
        return self.manager.batch_size(self.key)

    @property
    def num_channels(self) -> int:
        return int(self.feats.shape[1])

    @property
    def device(self) -> torch.device:
        return self.feats.device

    @property
    def dtype(self) -> torch.dtype:
        return self.feats.dtype

    def __len__(self) -> int:
        return int(self.feats.shape[0])

    def __repr__(self) -> str:
        return (
            f"SparseTensor(N={len(self)}, C={self.num_channels}, stride={self.stride}, "
            f"batch_size={self.batch_size}, key={self.key}, device={self.device})"
        )

    def same_coords(self, other: "SparseTensor") -> bool:
        """True when both share one coordinate set (same manager and key)."""
        return self.manager is other.manager and self.key == other.key

    # ---------------------------------------------------------------- conversions
    def to(self, device: torch.device | str) -> "SparseTensor":
        """Copy to a device (a new CoordinateManager there; caches are rebuilt on use)."""
        device = torch.device(device)
        if device == self.device:
            return self
        return SparseTensor(self.feats.to(device), self.coords.to(device), self.stride)

    def batch_rows(self, b: int) -> Tensor:
        """Row indices of batch item b."""
        return torch.nonzero(self.coords[:, 0] == b).squeeze(1)

    def dense(self, shape: tuple[int, int, int] | None = None, origin: tuple[int, int, int] | None = None) -> Tensor:
        """Dense (B, C, X, Y, Z) grid at this tensor's stride; cell ``(coords - origin) / stride``.

        Args:
            shape: grid size in cells at this stride (default: just enough for the coords).
            origin: voxel coordinate of cell (0, 0, 0) (default: the coords' minimum).
        """
        c = self.coords.long()
        s = self.stride
        org = torch.tensor(origin, device=c.device) if origin is not None else c[:, 1:].min(dim=0).values
        cell = torch.div(c[:, 1:] - org, s, rounding_mode="floor")
        if shape is None:
            shape = tuple(int(v) + 1 for v in cell.max(dim=0).values.tolist())
        if bool((cell < 0).any()) or any(int(cell[:, i].max()) >= shape[i] for i in range(3)):
            raise ValueError(f"coords fall outside the dense grid {shape} at origin {org.tolist()}")
        out = self.feats.new_zeros(self.batch_size, self.num_channels, *shape)
        out[c[:, 0], :, cell[:, 0], cell[:, 1], cell[:, 2]] = self.feats
        return out


def cat(*tensors: SparseTensor) -> SparseTensor:
    """Concatenate features of tensors that share one coordinate set (channels add up)."""
    first = tensors[0]
    for t in tensors[1:]:
        if not first.same_coords(t):
            raise ValueError("cat needs tensors on the same coordinate set (same manager and coordinate key)")
    return first.replace_feats(torch.cat([t.feats for t in tensors], dim=1))
