"""Pure-torch sparse convolution: kernel maps by coordinate hashing, then gather -> GEMM -> scatter-add.

Runs on CPU and CUDA, float32 or float64, deterministic: inside one kernel offset every output row
appears at most once, so each ``index_add_`` has no colliding indices (no atomic races), and the
offsets are summed in a fixed order. This is the reference the other backends are tested against.

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
            return _SparseConvFunction.apply(feats.to(dtype), weight.to(dtype), kmap)
    return _SparseConvFunction.apply(feats, weight, kmap)


class TorchBackend:
    """Reference backend (always available, CPU and CUDA)."""

    name = "torch"

    def supports(self, device: torch.device) -> bool:
        return True

    def submanifold_conv(
        self, x: SparseTensor, weight: Tensor, neighbourhood: Neighbourhood, dilation: int = 1
    ) -> SparseTensor:
        km = x.manager.kernel_map(x.key, x.key, neighbourhood, x.stride * dilation)
        return x.replace_feats(sparse_conv(x.feats, weight, km))

    def strided_conv(self, x: SparseTensor, weight: Tensor, neighbourhood: Neighbourhood, stride: int) -> SparseTensor:
        out_key = x.manager.downsample(x.key, stride)
        km = x.manager.kernel_map(x.key, out_key, neighbourhood, x.stride)
        return SparseTensor(sparse_conv(x.feats, weight, km), manager=x.manager, coordinate_key=out_key)

    def transposed_conv(
        self, x: SparseTensor, weight: Tensor, neighbourhood: Neighbourhood, stride: int, target: SparseTensor
    ) -> SparseTensor:
        km = x.manager.transposed_kernel_map(x.key, target.key, neighbourhood, target.stride)
        return SparseTensor(sparse_conv(x.feats, weight, km), manager=x.manager, coordinate_key=target.key)

    def generative_conv(
        self, x: SparseTensor, weight: Tensor, neighbourhood: Neighbourhood, stride: int
    ) -> SparseTensor:
        out_stride = x.stride // stride
        out_key, km = x.manager.dilate(x.key, neighbourhood, out_stride, out_stride)
        return SparseTensor(sparse_conv(x.feats, weight, km), manager=x.manager, coordinate_key=out_key)
