"""Pure-torch sparse convolution: kernel maps by coordinate hashing, then gather -> GEMM -> scatter-add.

Runs on CPU and CUDA, float32 or float64, deterministic: inside one kernel offset every output row
appears at most once, so each ``index_add_`` has no colliding indices (no atomic races), and the
offsets are summed in a fixed order. This is the reference the other backends are tested against.

Two algorithms compute the same sum (:func:`set_conv_algorithm`):

- ``"offsets"`` (the reference): per kernel offset, gather the input rows, one GEMM, scatter-add the outputs;
  ~3 kernels per offset: 81 launches for a 3x3x3 kernel, which dominate on a GPU at these sizes (10^4-10^5 rows,
  16-64 channels).
- ``"gather_gemm"``: the map as a dense (rows, K) neighbour table; every output row gathers its K neighbours
  (zeros where none) into one (rows, K * C_in) matrix and one GEMM with the (K * C_in, C_out) weight does the
  sum: two launches, no scatter, no atomics; ~K x the input's memory (chunked over rows). Gradients flow
  through autograd.
- ``"auto"`` (default): ``gather_gemm`` for CUDA inference (no gradient needed), ``offsets`` otherwise.

Under ``torch.autocast`` (bf16 or fp16) the GEMMs run in the autocast dtype, like ``nn.Linear``'s, and the
output has that dtype; the sums over kernel offsets (forward and input gradient) accumulate in float32.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from gen3d_ros.sparse.kernel_map import KernelMap
from gen3d_ros.sparse.kernels import Neighbourhood
from gen3d_ros.sparse.tensor import SparseTensor


_LOW_PRECISION = (torch.float16, torch.bfloat16)
_ALGORITHMS = ("auto", "offsets", "gather_gemm")
_algorithm = "auto"
_GATHER_ELEMENTS = 1 << 26
"""Largest gathered (rows, K * C_in) block of one GEMM; bigger maps run in row chunks (~256 MB in float32)."""


def set_conv_algorithm(name: str) -> str:
    """Select the torch backend's algorithm (``auto``, ``offsets``, ``gather_gemm``; see the module docstring)
    for every later convolution; returns the previous one."""
    global _algorithm
    if name not in _ALGORITHMS:
        raise ValueError(f"unknown sparse conv algorithm {name!r}; choose one of {', '.join(_ALGORITHMS)}")
    previous, _algorithm = _algorithm, name
    return previous


def _use_gather_gemm(feats: Tensor, weight: Tensor) -> bool:
    if _algorithm != "auto":
        return _algorithm == "gather_gemm"
    needs_grad = torch.is_grad_enabled() and (feats.requires_grad or weight.requires_grad)
    return feats.is_cuda and not needs_grad


def gather_gemm_conv(feats: Tensor, weight: Tensor, kmap: KernelMap | Tensor) -> Tensor:
    """The ``gather_gemm`` algorithm: ``out[j] = concat_k(feats_pad[table[j, k]]) @ weight.reshape(K*C_in, C_out)``.

    ``kmap``: a :class:`KernelMap` or its :meth:`~KernelMap.neighbour_table` ((N_out, K) int64, ``N_in`` where
    there is no neighbour)."""
    table = kmap.neighbour_table() if isinstance(kmap, KernelMap) else kmap
    k, c_in, c_out = weight.shape
    if table.shape[1] != k:
        raise ValueError(f"neighbour table has {table.shape[1]} offsets, the weight {k}")
    padded = torch.cat([feats, feats.new_zeros(1, c_in)])
    w = weight.reshape(k * c_in, c_out)
    rows = max(1, _GATHER_ELEMENTS // max(1, k * c_in))
    if table.shape[0] <= rows:
        return padded[table].reshape(-1, k * c_in) @ w
    return torch.cat([padded[table[s:s + rows]].reshape(-1, k * c_in) @ w for s in range(0, table.shape[0], rows)])


def _table_conv(feats: Tensor, weight: Tensor, table: Tensor) -> Tensor:
    """:func:`gather_gemm_conv` under the same autocast rule as :func:`sparse_conv`."""
    device_type = feats.device.type
    if device_type in ("cpu", "cuda") and torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
        with torch.autocast(device_type, enabled=False):
            return gather_gemm_conv(feats.to(dtype), weight.to(dtype), table)
    return gather_gemm_conv(feats, weight, table)


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half-precision features (a sum over 27 offsets in bf16 loses ~2 digits), else ``dtype``."""
    return torch.float32 if dtype in _LOW_PRECISION else dtype


def _add_mm(out: Tensor, a: Tensor, b: Tensor) -> None:
    """``out += a @ b`` where ``out`` may be float32 and ``a``, ``b`` half precision (addmm_ needs one dtype)."""
    if out.dtype == a.dtype:
        out.addmm_(a, b)
    else:
        out += a @ b


class _SparseConvFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, feats: Tensor, weight: Tensor, kmap: KernelMap) -> Tensor:  # type: ignore[override]
        ctx.kmap = kmap
        ctx.save_for_backward(feats, weight)
        acc = _accumulation_dtype(feats.dtype)
        out = feats.new_zeros(kmap.n_out, weight.shape[2], dtype=acc)
        for k in range(kmap.volume):
            s, e = kmap.ptr[k], kmap.ptr[k + 1]
            if s == e:
                continue
            if kmap.identity[k]:
                _add_mm(out, feats, weight[k])
            else:
                out.index_add_(0, kmap.out_idx[s:e], (feats.index_select(0, kmap.in_idx[s:e]) @ weight[k]).to(acc))
        return out.to(feats.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        feats, weight = ctx.saved_tensors
        kmap: KernelMap = ctx.kmap
        need_f, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_out = grad_out.contiguous().to(feats.dtype)
        acc = _accumulation_dtype(feats.dtype)
        grad_feats = torch.zeros_like(feats, dtype=acc) if need_f else None
        grad_weight = torch.zeros_like(weight) if need_w else None
        for k in range(kmap.volume):
            s, e = kmap.ptr[k], kmap.ptr[k + 1]
            if s == e:
                continue
            if kmap.identity[k]:
                g, f = grad_out, feats
                if need_f:
                    _add_mm(grad_feats, g, weight[k].t())
            else:
                g = grad_out.index_select(0, kmap.out_idx[s:e])
                f = feats.index_select(0, kmap.in_idx[s:e])
                if need_f:
                    grad_feats.index_add_(0, kmap.in_idx[s:e], (g @ weight[k].t()).to(acc))
            if need_w:
                torch.mm(f.t(), g, out=grad_weight[k])
        return (grad_feats.to(feats.dtype) if need_f else None), grad_weight, None


def sparse_conv(feats: Tensor, weight: Tensor, kmap: KernelMap) -> Tensor:
    """``out[j] = sum_k sum_{(i, j) in map_k} feats[i] @ weight[k]``.

    Args:
        feats: (N_in, C_in) float.
        weight: (K, C_in, C_out), K = kmap.volume, same dtype/device as feats.
        kmap: kernel map (input rows -> output rows per offset).
    Returns:
        (N_out, C_out); in the autocast dtype when autocast is on for the features' device.
    """
    if weight.dim() != 3 or weight.shape[0] != kmap.volume or weight.shape[1] != feats.shape[1]:
        raise ValueError(
            f"weight shape {tuple(weight.shape)} does not fit kernel volume {kmap.volume} and "
            f"{feats.shape[1]} input channels; expected ({kmap.volume}, {feats.shape[1]}, C_out)"
        )
    if feats.shape[0] != kmap.n_in:
        raise ValueError(f"feats has {feats.shape[0]} rows but the kernel map expects {kmap.n_in}")
    device_type = feats.device.type
    if device_type in ("cpu", "cuda") and torch.is_autocast_enabled(device_type):
        # index_add_ is not an autocast op and refuses mixed dtypes: cast both operands to the autocast dtype
        # here (their backward casts the gradients back) and run the function with autocast off.
        dtype = torch.get_autocast_dtype(device_type)
        with torch.autocast(device_type, enabled=False):
            return _convolve(feats.to(dtype), weight.to(dtype), kmap)
    return _convolve(feats, weight, kmap)


def _convolve(feats: Tensor, weight: Tensor, kmap: KernelMap) -> Tensor:
    if _use_gather_gemm(feats, weight):
        return gather_gemm_conv(feats, weight, kmap)
    return _SparseConvFunction.apply(feats, weight, kmap)


class TorchBackend:
    """Reference backend (always available, CPU and CUDA)."""

    name = "torch"

    def supports(self, device: torch.device) -> bool:
        return True

    def submanifold_conv(
        self, x: SparseTensor, weight: Tensor, neighbourhood: Neighbourhood, dilation: int = 1
    ) -> SparseTensor:
        if _use_gather_gemm(x.feats, weight):
            table = x.manager.neighbour_table(x.key, x.key, neighbourhood, x.stride * dilation)
            return x.replace_feats(_table_conv(x.feats, weight, table))
        km = x.manager.kernel_map(x.key, x.key, neighbourhood, x.stride * dilation)
        return x.replace_feats(sparse_conv(x.feats, weight, km))

    def strided_conv(self, x: SparseTensor, weight: Tensor, neighbourhood: Neighbourhood, stride: int) -> SparseTensor:
        out_key = x.manager.downsample(x.key, stride)
        if _use_gather_gemm(x.feats, weight):
            feats = _table_conv(x.feats, weight, x.manager.neighbour_table(x.key, out_key, neighbourhood, x.stride))
        else:
            feats = sparse_conv(x.feats, weight, x.manager.kernel_map(x.key, out_key, neighbourhood, x.stride))
        return SparseTensor(feats, manager=x.manager, coordinate_key=out_key)

    def transposed_conv(
        self, x: SparseTensor, weight: Tensor, neighbourhood: Neighbourhood, stride: int, target: SparseTensor
    ) -> SparseTensor:
        if _use_gather_gemm(x.feats, weight) and not x.manager.has_scatter_map(x.key, target.key, neighbourhood,
                                                                                 target.stride):
            table = x.manager.neighbour_table(x.key, target.key, neighbourhood, target.stride, transposed=True)
            return SparseTensor(_table_conv(x.feats, weight, table), manager=x.manager, coordinate_key=target.key)
        km = x.manager.transposed_kernel_map(x.key, target.key, neighbourhood, target.stride)
        return SparseTensor(sparse_conv(x.feats, weight, km), manager=x.manager, coordinate_key=target.key)

    def generative_conv(
        self, x: SparseTensor, weight: Tensor, neighbourhood: Neighbourhood, stride: int
    ) -> SparseTensor:
        out_stride = x.stride // stride
        out_key, km = x.manager.dilate(x.key, neighbourhood, out_stride, out_stride)
        return SparseTensor(sparse_conv(x.feats, weight, km), manager=x.manager, coordinate_key=out_key)
