"""K-nearest neighbours on batched point clouds, and the geometry-backend choice.

Backends (one API, chosen at run time, logged on the ``gen3d_ros.geometry`` logger):

* ``"pytorch3d"``: ``pytorch3d.ops.knn_points`` / ``pytorch3d.loss.chamfer_distance`` /
  ``pytorch3d.transforms`` when pytorch3d imports (CUDA machines with a pytorch3d build);
* ``"torch"``: the pure-torch implementation in this package (always available; the only one on the CPU
  machines, where pytorch3d has no Linux wheel or source on the registry).

``$GEN3D_GEOMETRY_BACKEND`` (``pytorch3d`` | ``torch``) forces one; so does ``backend=`` on every public
function. Both give the same results: the tests compare them where pytorch3d imports, and always
compare the torch implementation with brute-force numpy/scipy references.

:func:`knn_points` has pytorch3d's semantics: squared Euclidean distances (``norm=2``) or L1 distances
(``norm=1``), ascending order, padded batches via ``lengths1``/``lengths2`` with zeros in ``dists`` and
``idx`` where a cloud of ``p1`` is shorter than ``N`` or a cloud of ``p2`` has fewer than ``K`` points.
The torch implementation finds neighbours chunk by chunk over ``p1`` (at most ``_CHUNK_BYTES`` of distance
matrix at a time, exact differences rather than the ``|a|^2 + |b|^2 - 2ab`` expansion, so clouds far from
the origin keep their neighbours), then gathers the neighbours and recomputes their distances with
autograd, so gradients flow to ``p1`` and ``p2`` (for norm=1 with pytorch3d's subgradient, sign(0) = -1).
Checked against pytorch3d 0.7.9's CPU kernel: identical indices, distances and Chamfer values, gradients
equal up to float32 summation order. Exact ties: with K=1 both return the lowest index; with K > 1 the
order of tied neighbours is unspecified in both (distances agree).

:func:`nearest_distances` is the numpy/scipy path for large CPU point sets (metrics on 200k x 200k
points): a KD-tree, no gradients.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from typing import NamedTuple

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

log = logging.getLogger("gen3d_ros.geometry")

BACKEND_NAMES = ("pytorch3d", "torch")
ENV_VAR = "GEN3D_GEOMETRY_BACKEND"

_CHUNK_BYTES = 256 * 2**20  # the most distance matrix (B x rows x M) one chunk of the torch k-NN holds
_SMALL_NUMEL = 1 << 15  # B x n x m x D at or below which distances are broadcast, not torch.cdist

_pytorch3d_state: dict[str, object] = {}  # "ok": bool, "reason": str (why it does not import)
_logged: set[str] = set()


class KNN(NamedTuple):
    """Result of :func:`knn_points`.

    dists: (B, N, K) squared Euclidean (norm=2) or L1 (norm=1) distances, ascending along K.
    idx:   (B, N, K) int64 indices into ``p2``'s second dimension.
    """

    dists: Tensor
    idx: Tensor


# --------------------------------------------------------------------------------------------------
# backend choice


def _probe_pytorch3d() -> bool:
    if "ok" not in _pytorch3d_state:
        try:
            if importlib.util.find_spec("pytorch3d") is None:
                raise ImportError("pytorch3d is not installed")
            for mod in ("pytorch3d.ops", "pytorch3d.loss", "pytorch3d.transforms"):
                importlib.import_module(mod)
        except Exception as exc:  # an installed but broken build (ABI mismatch, missing _C) is not fatal
            _pytorch3d_state.update(ok=False, reason=f"{type(exc).__name__}: {exc}")
        else:
            _pytorch3d_state.update(ok=True, reason=None)
    return bool(_pytorch3d_state["ok"])


def pytorch3d_available() -> bool:
    """Whether pytorch3d's ops, loss and transforms import here."""
    return _probe_pytorch3d()


def pytorch3d_unavailable_reason() -> str | None:
    """Why pytorch3d does not import here (None when it does)."""
    return None if _probe_pytorch3d() else str(_pytorch3d_state["reason"])


def resolve_backend(backend: str | None = None) -> str:
    """The geometry backend to use: ``backend`` if given, else ``$GEN3D_GEOMETRY_BACKEND``, else
    ``"pytorch3d"`` when it imports and ``"torch"`` otherwise. The choice is logged once per reason.

    Raises:
        ValueError: an unknown name.
        RuntimeError: ``"pytorch3d"`` was requested but does not import here.
    """
    requested = backend if backend is not None else (os.environ.get(ENV_VAR) or None)
    if requested is not None:
        name = requested.strip().lower()
        source = "argument" if backend is not None else ENV_VAR
        if name not in BACKEND_NAMES:
            raise ValueError(f"geometry backend {requested!r} (from {source}) is not one of {BACKEND_NAMES}")
        if name == "pytorch3d" and not _probe_pytorch3d():
            raise RuntimeError(
                f"geometry backend 'pytorch3d' (from {source}) is not usable here: "
                f"{_pytorch3d_state['reason']}; use 'torch'"
            )
        if backend is None:  # explicit per-call choices (tests, comparisons) are not worth a log line
            _log_choice(name, f"from {ENV_VAR}")
        return name
    if _probe_pytorch3d():
        _log_choice("pytorch3d", "default: pytorch3d imports")
        return "pytorch3d"
    _log_choice("torch", f"default; pytorch3d unavailable: {_pytorch3d_state['reason']}")
    return "torch"


def knn_backend() -> str:
    """The backend :func:`knn_points` uses without ``backend=``: ``"pytorch3d"`` or ``"torch"``."""
    return resolve_backend(None)


def _log_choice(name: str, why: str) -> None:
    tag = f"{name}:{why}"
    if tag not in _logged:
        _logged.add(tag)
        log.info("geometry backend (k-NN, Chamfer, rotations): %s (%s)", name, why)


def _reset_backend_cache() -> None:
    """Forget the pytorch3d probe and the logged choices (tests)."""
    _pytorch3d_state.clear()
    _logged.clear()


# --------------------------------------------------------------------------------------------------
# k-NN


def _check_lengths(lengths: Tensor | None, batch: int, size: int, name: str, device: torch.device) -> Tensor:
    if lengths is None:
        return torch.full((batch,), size, dtype=torch.int64, device=device)
    if not torch.is_tensor(lengths):
        lengths = torch.as_tensor(lengths)
    if lengths.shape != (batch,):
        raise ValueError(f"{name} must have shape ({batch},) (one length per cloud), got {tuple(lengths.shape)}")
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got {lengths.dtype}")
    lengths = lengths.to(device=device, dtype=torch.int64)
    values = lengths.tolist()  # B is small; a host list avoids reductions (parallel regions) on CPU
    if any(v < 0 or v > size for v in values):
        raise ValueError(f"{name} must lie in [0, {size}], got {values}")
    return lengths


def knn_gather(x: Tensor, idx: Tensor, lengths: Tensor | None = None) -> Tensor:
    """Gathers neighbours: ``out[b, i, k] = x[b, idx[b, i, k]]``, zeros where ``k >= lengths[b]``.

    Args:
        x: (B, M, U) features or points.
        idx: (B, N, K) int64 indices into ``x``'s second dimension (as returned by :func:`knn_points`).
        lengths: (B,) valid points per cloud of ``x``, or None for all M.

    Returns:
        (B, N, K, U), differentiable wrt ``x`` (pytorch3d's ``knn_gather``).
    """
    if x.ndim != 3 or idx.ndim != 3 or x.shape[0] != idx.shape[0]:
        raise ValueError(f"knn_gather needs x (B, M, U) and idx (B, N, K), got {tuple(x.shape)} and {tuple(idx.shape)}")
    b, _, u = x.shape
    _, n, k = idx.shape
    out = torch.gather(x, 1, idx.reshape(b, n * k, 1).expand(-1, -1, u)).reshape(b, n, k, u)
    if lengths is not None:
        lengths = _check_lengths(lengths, b, x.shape[1], "lengths", x.device)
        if b and min(lengths.tolist()) < k:
            keep = torch.arange(k, device=x.device)[None] < lengths[:, None]  # (B, K)
            out = out * keep[:, None, :, None].to(out.dtype)
    return out


def knn_points(
    p1: Tensor,
    p2: Tensor,
    K: int = 1,
    lengths1: Tensor | None = None,
    lengths2: Tensor | None = None,
    *,
    norm: int = 2,
    backend: str | None = None,
) -> KNN:
    """The K nearest neighbours in ``p2`` of every point of ``p1`` (pytorch3d semantics).

    Args:
        p1: (B, N, D) float, queries (padded clouds: rows ``>= lengths1[b]`` are ignored).
        p2: (B, M, D) float, same dtype and device, points searched (rows ``>= lengths2[b]`` ignored).
        K: neighbours per query, >= 1.
        lengths1: (B,) int, valid rows of each cloud of ``p1``, or None for all N.
        lengths2: (B,) int, valid rows of each cloud of ``p2``, or None for all M.
        norm: 2 for squared Euclidean distances, 1 for L1 (sum of absolute differences).
        backend: ``"pytorch3d"`` | ``"torch"`` | None (see :func:`resolve_backend`).

    Returns:
        :class:`KNN` ``(dists (B, N, K), idx (B, N, K) int64)``, ascending along K. Both are 0 where
        ``i >= lengths1[b]`` or ``k >= lengths2[b]`` (also when K > M). ``dists`` is differentiable
        wrt ``p1`` and ``p2``; ``idx`` is not. Unlike pytorch3d's ``_KNN`` there is no third ``knn`` field:
        use :func:`knn_gather` ``(p2, idx, lengths2)`` for the neighbour points.

    Cost (torch backend): O(B N M D) time, at most 256 MB of distance matrix at once; for 100k+ points
    without gradients use :func:`nearest_distances` (KD-tree) instead.

    Raises:
        ValueError: mismatched shapes, K < 1, norm not 1 or 2, bad lengths.
    """
    if not (torch.is_tensor(p1) and torch.is_tensor(p2)):
        raise TypeError(f"knn_points needs tensors, got {type(p1).__name__} and {type(p2).__name__}")
    if p1.ndim != 3 or p2.ndim != 3:
        raise ValueError(f"p1 and p2 must be (B, N, D) and (B, M, D), got {tuple(p1.shape)} and {tuple(p2.shape)}")
    if p1.shape[0] != p2.shape[0] or p1.shape[2] != p2.shape[2]:
        raise ValueError(
            f"p1 {tuple(p1.shape)} and p2 {tuple(p2.shape)} must agree in batch size and point dimension"
        )
    if p1.dtype != p2.dtype or p1.device != p2.device:
        raise ValueError(f"p1 ({p1.dtype}, {p1.device}) and p2 ({p2.dtype}, {p2.device}) must share dtype and device")
    if not p1.dtype.is_floating_point:
        raise ValueError(f"knn_points needs floating-point points, got {p1.dtype}")
    if int(K) < 1:
        raise ValueError(f"K must be >= 1, got {K}")
    if norm not in (1, 2):
        raise ValueError(f"norm must be 1 (L1) or 2 (squared Euclidean), got {norm!r}")
    K = int(K)
    bsz, n, _ = p1.shape
    m = p2.shape[1]
    l1 = _check_lengths(lengths1, bsz, n, "lengths1", p1.device)
    l2 = _check_lengths(lengths2, bsz, m, "lengths2", p1.device)
    if resolve_backend(backend) == "pytorch3d":
        from pytorch3d.ops import knn_points as p3d_knn_points

        extra = {} if norm == 2 else {"norm": norm}  # older pytorch3d has no norm argument
        res = p3d_knn_points(p1, p2, lengths1=l1, lengths2=l2, K=K, **extra)
        return KNN(dists=res.dists, idx=res.idx)
    return _knn_points_torch(p1, p2, K, l1, l2, norm)


def _pairwise(a: Tensor, b: Tensor, norm: int) -> Tensor:
    """(B, n, m) distances for ranking: Euclidean (norm=2, up to monotone squaring) or L1, from exact
    coordinate differences. Small problems use plain broadcasting, which stays on one thread: torch.cdist
    always opens a parallel region, and on a busy 2-core machine that costs milliseconds per call."""
    if a.shape[0] * a.shape[1] * b.shape[1] * a.shape[2] <= _SMALL_NUMEL:
        diff = a[:, :, None, :] - b[:, None, :, :]
        return diff.square().sum(-1) if norm == 2 else diff.abs().sum(-1)
    return torch.cdist(a, b, p=float(norm), compute_mode="donot_use_mm_for_euclid_dist")


def _chunks(bsz: int, n: int, m: int, element_size: int):
    """(b0, b1, r0, r1) slabs of the (B, N, M) distance matrix, each at most ``_CHUNK_BYTES``."""
    row_bytes = m * element_size  # one query row of one cloud's distance matrix
    if n * row_bytes <= _CHUNK_BYTES:  # whole clouds fit: several clouds per chunk
        b_step, rows = max(1, _CHUNK_BYTES // max(1, n * row_bytes)), n
    else:  # one cloud at a time, a slab of query rows per chunk
        b_step, rows = 1, max(1, _CHUNK_BYTES // row_bytes)
    for b0 in range(0, bsz, b_step):
        for r0 in range(0, n, rows):
            yield b0, min(bsz, b0 + b_step), r0, min(n, r0 + rows)


@torch.no_grad()
def _search(p1: Tensor, p2: Tensor, K: int, l2: Tensor, norm: int) -> Tensor:
    """Exact neighbour search without autograd: ``idx (B, N, K)`` into p2, ascending, not yet masked.
    Ties go to the lowest index (as in pytorch3d's kernels)."""
    bsz, n, _ = p1.shape
    m = p2.shape[1]
    device = p1.device
    a, b = p1.detach(), p2.detach()
    kk = min(K, m)
    idx = torch.zeros((bsz, n, K), dtype=torch.int64, device=device)
    invalid2 = torch.arange(m, device=device)[None, :] >= l2[:, None]  # (B, M)
    any_invalid2 = bool(invalid2.any())
    for b0, b1, r0, r1 in _chunks(bsz, n, m, p1.element_size()):
        dist = _pairwise(a[b0:b1, r0:r1], b[b0:b1], norm)
        if any_invalid2:
            dist.masked_fill_(invalid2[b0:b1, None, :], float("inf"))
        if kk == 1:
            # On CPU, min(dim) is ~2x faster than argmin on big matrices but always opens a parallel region
            # (milliseconds per call on a busy 2-core machine); argmin stays on one thread when small.
            small = dist.numel() <= _SMALL_NUMEL
            idx[b0:b1, r0:r1, :1] = dist.argmin(dim=2, keepdim=True) if small else dist.min(2, keepdim=True).indices
        else:
            idx[b0:b1, r0:r1, :kk] = dist.topk(kk, dim=2, largest=False, sorted=True).indices
        del dist
    return idx


def _gathered_distances(p1: Tensor, p2: Tensor, idx: Tensor, valid: Tensor, norm: int) -> Tensor:
    """(B, N, K) distances from p1 to ``p2[idx]``, differentiable wrt both; 0 where not ``valid``."""
    diff = p1[:, :, None, :] - knn_gather(p2, idx)
    if norm == 2:
        dists = diff.square().sum(-1)
    else:  # |diff| whose subgradient at 0 is -1, as pytorch3d's kernel has it (abs() would give 0)
        dists = torch.where(diff > 0, diff, -diff).sum(-1)
    return torch.where(valid, dists, torch.zeros((), dtype=dists.dtype, device=dists.device))


def _knn_points_torch(p1: Tensor, p2: Tensor, K: int, l1: Tensor, l2: Tensor, norm: int) -> KNN:
    """Pure-torch k-NN: exact chunked search without autograd, then differentiable distance recomputation."""
    bsz, n, _ = p1.shape
    m = p2.shape[1]
    device = p1.device
    if bsz == 0 or n == 0 or m == 0:
        zero = p1[..., :0].sum() + p2[..., :0].sum()  # 0, but on the autograd graph of both inputs
        idx = torch.zeros((bsz, n, K), dtype=torch.int64, device=device)
        return KNN(dists=p1.new_zeros((bsz, n, K)) + zero, idx=idx)
    idx = _search(p1, p2, K, l2, norm)
    valid = (torch.arange(n, device=device)[None, :, None] < l1[:, None, None]) & (
        torch.arange(K, device=device)[None, None, :] < l2[:, None, None]
    )  # (B, N, K); also false for k >= M since l2 <= M
    idx.masked_fill_(~valid, 0)
    return KNN(dists=_gathered_distances(p1, p2, idx, valid, norm), idx=idx)


# --------------------------------------------------------------------------------------------------
# large CPU point sets


def nearest_distances(a: np.ndarray, b: np.ndarray, *, workers: int = -1) -> np.ndarray:
    """Euclidean distance from every point of ``a`` to its nearest point of ``b`` (KD-tree, no gradients).

    Args:
        a: (N, D) points (metres), queries.
        b: (M, D) points, same D.
        workers: threads for the query (-1: all cores).

    Returns:
        (N,) float64 distances (not squared); all ``inf`` when ``b`` is empty.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"nearest_distances needs (N, D) and (M, D) arrays, got shapes {a.shape} and {b.shape}")
    if a.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    if b.shape[0] == 0:
        return np.full(a.shape[0], np.inf, dtype=np.float64)
    tree = cKDTree(np.asarray(b, dtype=np.float64))
    dist, _ = tree.query(np.asarray(a, dtype=np.float64), k=1, workers=workers)
    return np.asarray(dist, dtype=np.float64)


__all__ = [
    "BACKEND_NAMES",
    "ENV_VAR",
    "KNN",
    "knn_backend",
    "knn_gather",
    "knn_points",
    "nearest_distances",
    "pytorch3d_available",
    "pytorch3d_unavailable_reason",
    "resolve_backend",
]
