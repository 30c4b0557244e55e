"""Pure-torch sparse convolution: kernel maps by coordinate hashing, then gather -> GEMM -> scatter-add.

Runs on CPU and CUDA, float32 or float64, deterministic: inside one kernel offset every output row
appears at most once, so each ``index_add_`` has no colliding indices (no atomic races), and the
offsets are summed in a fixed order. This is the reference the other backends are tested against.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from gen3d_ros.sparse.kernel_map import KernelMap
from gen3d_ros.sparse.kernels import Neighbourhood
from gen3d_ros.sparse.tensor import SparseTensor


class _SparseConvFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, feats: Tensor, weight: Tensor, kmap: KernelMap) -> Tensor:  # type: ignore[override]
        ctx.kmap = kmap
        ctx.save_for_backward(feats, weight)
        out = feats.new_zeros(kmap.n_out, weight.shape[2])
        for k in range(kmap.volume):
            s, e = kmap.ptr[k], kmap.ptr[k + 1]
            if s == e:
                continue
            if kmap.identity[k]:
                out.addmm_(feats, weight[k])
            else:
                out.index_add_(0, kmap.out_idx[s:e], feats.index_select(0, kmap.in_idx[s:e]) @ weight[k])
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        feats, weight = ctx.saved_tensors
        kmap: KernelMap = ctx.kmap
        need_f, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_out = grad_out.contiguous()
        grad_feats = torch.zeros_like(feats) if need_f else None
        grad_weight = torch.zeros_like(weight) if need_w else None
        for k in range(kmap.volume):
            s, e = kmap.ptr[k], kmap.ptr[k + 1]
            if s == e:
                continue
            if kmap.identity[k]:
                g, f = grad_out, feats
                if need_f:
                    grad_feats.addmm_(g, weight[k].t())
            else:
                g = grad_out.index_select(0, kmap.out_idx[s:e])
                f = feats.index_select(0, kmap.in_idx[s:e])
                if need_f:
                    grad_feats.index_add_(0, kmap.in_idx[s:e], g @ weight[k].t())
            if need_w:
                torch.mm(f.t(), g, out=grad_weight[k])
        return grad_feats, grad_weight, None


def sparse_conv(feats: Tensor, weight: Tensor, kmap: KernelMap) -> Tensor:
    """``out[j] = sum_k sum_{(i, j) in map_k} feats[i] @ weight[k]``.

    Args:
        feats: (N_in, C_in) float.
        weight: (K, C_in, C_out), K = kmap.volume, same dtype/device as feats.
        kmap: kernel map (input rows -> output rows per offset).
    Returns:
        (N_out, C_out).
    """
    if weight.dim() != 3 or weight.shape[0] != kmap.volume or weight.shape[1] != feats.shape[1]:
        raise ValueError(
            f"weight shape {tuple(weight.shape)} does not fit kernel volume {kmap.volume} and "
            f"{feats.shape[1]} input channels; expected ({kmap.volume}, {feats.shape[1]}, C_out)"
        )
    if feats.shape[0] != kmap.n_in:
        raise ValueError(f"feats has {feats.shape[0]} rows but the kernel map expects {kmap.n_in}")
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
