"""Normalisation and activation layers on sparse features (backend independent)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from gen3d_ros.sparse.tensor import SparseTensor


class SparseBatchNorm(nn.Module):
    """BatchNorm over all occupied voxels of the batch (``nn.BatchNorm1d`` on feats)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(num_features, eps=eps, momentum=momentum, affine=affine)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_feats(self.bn(x.feats))


class SparseInstanceNorm(nn.Module):
    """Normalise each channel over the voxels of each batch item separately.

    Per-item means and variances are computed with a one-hot (B, N) matmul, which is deterministic on
    CUDA too (no atomics). Items never mix: changing one item leaves the others' outputs unchanged.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine else None

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_feats(instance_norm(x.feats, x.coords[:, 0].long(), x.batch_size, self.weight, self.bias, self.eps))

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.weight is not None}"


def instance_norm(
    feats: Tensor, batch: Tensor, batch_size: int, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-5
) -> Tensor:
    """Per-batch-item normalisation of (N, C) feats; ``batch`` (N,) int64 item index."""
    onehot = (batch.unsqueeze(0) == torch.arange(batch_size, device=batch.device).unsqueeze(1)).to(feats.dtype)
    count = onehot.sum(dim=1, keepdim=True).clamp_(min=1.0)  # (B, 1)
    mean = (onehot @ feats) / count  # (B, C)
    centred = feats - mean[batch]
    var = (onehot @ centred.square()) / count
    out = centred * torch.rsqrt(var + eps)[batch]
    if weight is not None:
        out = out * weight + bias
    return out


class SparseReLU(nn.Module):
    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_feats(F.relu(x.feats))


class SparseELU(nn.Module):
    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_feats(F.elu(x.feats, self.alpha))


class SparseIdentity(nn.Module):
    def forward(self, x: SparseTensor) -> SparseTensor:
        return x


def relu(x: SparseTensor) -> SparseTensor:
    return x.replace_feats(F.relu(x.feats))


def elu(x: SparseTensor, alpha: float = 1.0) -> SparseTensor:
    return x.replace_feats(F.elu(x.feats, alpha))


NORMS = ("batch", "instance", "none")
ACTIVATIONS = ("relu", "elu")


def make_norm(kind: str | None, channels: int) -> nn.Module:
    """``"batch"`` | ``"instance"`` | ``"none"``/None."""
    if kind in (None, "none"):
        return SparseIdentity()
    if kind == "batch":
        return SparseBatchNorm(channels)
    if kind == "instance":
        return SparseInstanceNorm(channels)
    raise ValueError(f"norm {kind!r} is not one of {NORMS}")


def make_activation(kind: str) -> nn.Module:
    """``"relu"`` | ``"elu"``."""
    if kind == "relu":
        return SparseReLU()
    if kind == "elu":
        return SparseELU()
    raise ValueError(f"activation {kind!r} is not one of {ACTIVATIONS}")
