"""Sparse-convolution backends behind one interface, chosen at run time.

Names: ``"minkowski"`` (MinkowskiEngine), ``"spconv"`` (spconv 2.x), ``"torch"`` (pure torch,
always available). ``get_backend()`` without a name takes ``$GEN3D_SPARSE_BACKEND`` when set, else
the default order, and logs the choice on the ``gen3d_ros.sparse`` logger:

* where CUDA is available: the first of minkowski -> spconv -> torch that loads and runs CUDA
  tensors (a CPU-only MinkowskiEngine build is skipped);
* on CPU-only machines: torch. Measured on a 2-core CPU, SparseUNet(16, 32, 64) forward+backward on
  30k voxels: torch ~0.2 s, spconv 2.3.8 ~0.25 s, MinkowskiEngine 0.5.4 (openblas) ~1.5 s. The
  other two stay available by name (their role on CPU is the agreement tests).

A backend implements (all return a :class:`~gen3d_ros.sparse.tensor.SparseTensor` in *our*
coordinate order, so layers of different backends can be mixed)::

    supports(device) -> bool
    submanifold_conv(x, weight[K, Cin, Cout], neighbourhood, dilation) -> on x's coordinates
    strided_conv(x, weight, neighbourhood, stride)                      -> on manager.downsample(x)
    transposed_conv(x, weight, neighbourhood, stride, target)           -> on target's coordinates
    generative_conv(x, weight, neighbourhood, stride)                   -> on the dilated set

A backend that cannot do an op raises ``NotImplementedError``; the layers then use the torch
backend for that call.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import Protocol

import torch
from torch import Tensor

from gen3d_ros.sparse.kernels import Neighbourhood
from gen3d_ros.sparse.tensor import SparseTensor

log = logging.getLogger("gen3d_ros.sparse")

BACKEND_NAMES = ("minkowski", "spconv", "torch")
ENV_VAR = "GEN3D_SPARSE_BACKEND"


class SparseBackend(Protocol):
    name: str

    def supports(self, device: torch.device) -> bool: ...

    def submanifold_conv(
        self, x: SparseTensor, weight: Tensor, neighbourhood: Neighbourhood, dilation: int = 1
    ) -> SparseTensor: ...

    def strided_conv(
        self, x: SparseTensor, weight: Tensor, neighbourhood: Neighbourhood, stride: int
    ) -> SparseTensor: ...

    def transposed_conv(
        self, x: SparseTensor, weight: Tensor, neighbourhood: Neighbourhood, stride: int, target: SparseTensor
    ) -> SparseTensor: ...

    def generative_conv(
        self, x: SparseTensor, weight: Tensor, neighbourhood: Neighbourhood, stride: int
    ) -> SparseTensor: ...


_instances: dict[str, SparseBackend] = {}
_failures: dict[str, str] = {}
_default_logged: set[str] = set()


def _load(name: str) -> SparseBackend | None:
    """Instantiate a backend or return None (reason kept in ``_failures``)."""
    if name in _instances:
        return _instances[name]
    if name in _failures:
        return None
    try:
        if name == "torch":
            from gen3d_ros.sparse.backends.torch_backend import TorchBackend

            inst: SparseBackend = TorchBackend()
        elif name == "minkowski":
            if importlib.util.find_spec("MinkowskiEngine") is None:
                raise ImportError("MinkowskiEngine is not installed (scripts/build_minkowski.sh builds it)")
            from gen3d_ros.sparse.backends.minkowski_backend import MinkowskiBackend

            inst = MinkowskiBackend()
        elif name == "spconv":
            if importlib.util.find_spec("spconv") is None:
                raise ImportError("spconv is not installed (pip install spconv==2.3.8, or spconv-cuXXX)")
            from gen3d_ros.sparse.backends.spconv_backend import SpconvBackend

            inst = SpconvBackend()
        else:
            raise ValueError(f"unknown sparse backend {name!r}; choose one of {BACKEND_NAMES}")
    except ValueError:
        raise
    except Exception as exc:  # an installed but broken extension (ABI mismatch, missing .so) is not fatal
        _failures[name] = f"{type(exc).__name__}: {exc}"
        log.debug("sparse backend %s unavailable: %s", name, _failures[name])
        return None
    _instances[name] = inst
    return inst


def available_backends() -> list[str]:
    """Names of the backends that import and load here (in the CUDA default order)."""
    return [n for n in BACKEND_NAMES if _load(n) is not None]


def unavailable_reason(name: str) -> str | None:
    """Why a backend did not load (None when it loads)."""
    return None if _load(name) is not None else _failures.get(name, "unknown")


def get_backend(name: str | None = None) -> SparseBackend:
    """The backend called ``name``; None means ``$GEN3D_SPARSE_BACKEND`` or the default order.

    Raises:
        ValueError: unknown name.
        RuntimeError: the named backend is not installed or fails to load.
    """
    requested = name or os.environ.get(ENV_VAR) or None
    if requested:
        requested = requested.strip().lower()
        if requested not in BACKEND_NAMES:
            raise ValueError(
                f"sparse backend {requested!r} (from {'argument' if name else ENV_VAR}) is not one of {BACKEND_NAMES}"
            )
        inst = _load(requested)
        if inst is None:
            raise RuntimeError(f"sparse backend {requested!r} is not usable here: {_failures.get(requested)}")
        _log_choice(inst.name, "requested" if name else f"from {ENV_VAR}")
        return inst
    if torch.cuda.is_available():
        cuda = torch.device("cuda")
        for cand in BACKEND_NAMES:
            inst = _load(cand)
            if inst is not None and inst.supports(cuda):
                _log_choice(inst.name, "default order with CUDA: minkowski -> spconv -> torch")
                return inst
    inst = _load("torch")
    if inst is None:  # pragma: no cover
        raise RuntimeError(f"the torch sparse backend does not load: {_failures.get('torch')}")
    _log_choice(inst.name, "default without CUDA (fastest here; others by name)")
    return inst


def _log_choice(name: str, why: str) -> None:
    tag = f"{name}:{why}"
    if tag not in _default_logged:
        _default_logged.add(tag)
        skipped = {k: v for k, v in _failures.items() if k != name}
        log.info("sparse conv backend: %s (%s)%s", name, why, f"; unavailable: {skipped}" if skipped else "")


__all__ = [
    "BACKEND_NAMES",
    "ENV_VAR",
    "SparseBackend",
    "available_backends",
    "get_backend",
    "unavailable_reason",
]
