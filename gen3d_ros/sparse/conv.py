"""Sparse convolution layers (torch ``nn.Module``), computed by the selected backend.

Weights are ``[K, C_in, C_out]`` with K offsets in the order of
:class:`~gen3d_ros.sparse.kernels.Neighbourhood` (dx slowest, dz fastest). With ``d`` the
offset unit in voxels and ``o_k`` the k-th offset:

* ``SubmanifoldConv3d``: outputs on the input coords; ``y(p) = sum_k x(p + d o_k) W_k``, d = s * dilation.
  Same as dense ``conv3d`` (cross-correlation, 'same' padding) read at the input sites.
* ``StridedConv3d``: outputs on ``unique(floor(p / (s f)) * s f)``; ``y(q) = sum_k x(q + s o_k) W_k``.
  Same as dense ``conv3d(stride=f)`` (kernel 2: no padding; kernel 3: padding 1).
* ``TransposedConv3d``: outputs on given target coords at stride ``s / f``;
  ``y(q) = sum_k x(q - (s/f) o_k) W_k``. Same as dense ``conv_transpose3d(stride=f)`` read at the
  targets. With the same weights it is the adjoint of ``StridedConv3d``.
* ``GenerativeConv3d``: outputs on every cell ``p + d o_k`` (the dilated set), scatter semantics as
  the transposed conv; stride 1 keeps the tensor stride (d = s), stride f upsamples (d = s / f).
"""

from __future__ import annotations

import logging
import math

import torch
from torch import Tensor, nn

from gen3d_ros.sparse.backends import SparseBackend, get_backend
from gen3d_ros.sparse.kernels import Neighbourhood, cube_indices, enclosing_cube_size
from gen3d_ros.sparse.tensor import SparseTensor

log = logging.getLogger("gen3d_ros.sparse")
_fallback_logged: set[tuple[str, str]] = set()


def dense_to_sparse_weight(w: Tensor, neighbourhood: Neighbourhood | None = None, transposed: bool = False) -> Tensor:
    """Convert a dense conv weight to our ``[K, C_in, C_out]`` layout.

    Args:
        w: ``Conv3d`` weight ``(C_out, C_in, k, k, k)``, or with ``transposed=True`` a
            ``ConvTranspose3d`` weight ``(C_in, C_out, k, k, k)``.
        neighbourhood: keep only these offsets of the cube (default: the whole cube). For a
            hypercross the other cube entries are dropped.
    """
    k = w.shape[2]
    if w.shape[2:] != (k, k, k):
        raise ValueError(f"dense weight must be a cube kernel, got {tuple(w.shape)}")
    cube = w.permute(2, 3, 4, 1, 0) if not transposed else w.permute(2, 3, 4, 0, 1)
    cube = cube.reshape(k**3, cube.shape[3], cube.shape[4])
    if neighbourhood is None or neighbourhood == Neighbourhood.cube(k):
        return cube.contiguous()
    return cube[cube_indices(neighbourhood, k)].contiguous()


def sparse_to_dense_weight(
    weight: Tensor, neighbourhood: Neighbourhood, kernel_size: int | None = None, transposed: bool = False
) -> Tensor:
    """Inverse of :func:`dense_to_sparse_weight` (offsets missing from the neighbourhood are 0)."""
    k = kernel_size or enclosing_cube_size(neighbourhood)
    cube = weight.new_zeros(k**3, weight.shape[1], weight.shape[2])
    cube[cube_indices(neighbourhood, k)] = weight
    cube = cube.reshape(k, k, k, weight.shape[1], weight.shape[2])
    return (cube.permute(4, 3, 0, 1, 2) if not transposed else cube.permute(3, 4, 0, 1, 2)).contiguous()


class _SparseConv(nn.Module):
    """Shared parameters and backend dispatch."""

    _op = ""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: Neighbourhood | int | str,
        bias: bool,
        backend: str | None,
    ) -> None:
        super().__init__()
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.neighbourhood = Neighbourhood.parse(kernel)
        k = self.neighbourhood.volume
        self.weight = nn.Parameter(torch.empty(k, self.in_channels, self.out_channels))
        self.bias = nn.Parameter(torch.zeros(self.out_channels)) if bias else None
        self.backend_name = backend
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = K * C_in (torch's Conv3d default)."""
        bound = 1.0 / math.sqrt(self.neighbourhood.volume * self.in_channels)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def _backend(self, x: SparseTensor) -> SparseBackend:
        b = get_backend(self.backend_name)
        if not b.supports(x.device):
            return self._fallback(b, f"device {x.device}")
        return b

    def _fallback(self, b: SparseBackend, why: str) -> SparseBackend:
        tag = (b.name, f"{self._op}:{why}")
        if tag not in _fallback_logged:
            _fallback_logged.add(tag)
            log.warning("sparse backend %s cannot run %s (%s); using the torch backend", b.name, self._op, why)
        return get_backend("torch")

    def _run(self, x: SparseTensor, method: str, *args) -> SparseTensor:
        if x.num_channels != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects {self.in_channels} input channels, got {x.num_channels}")
        b = self._backend(x)
        try:
            out = getattr(b, method)(x, self.weight, self.neighbourhood, *args)
        except NotImplementedError as exc:
            out = getattr(self._fallback(b, str(exc)), method)(x, self.weight, self.neighbourhood, *args)
        if self.bias is not None:
            out = out.replace_feats(out.feats + self.bias)
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, neighbourhood={self.neighbourhood}, "
            f"bias={self.bias is not None}, backend={self.backend_name or 'auto'}"
        )


class SubmanifoldConv3d(_SparseConv):
    """Convolution whose outputs are exactly the input coordinates.

    Args:
        in_channels, out_channels: feature widths.
        kernel: Neighbourhood, cube size (int) or ``"hypercross2"``-style string. Default cube 3.
        dilation: offset multiplier (offsets step ``stride * dilation`` voxels).
        bias: add a learned bias.
        backend: backend name, or None for ``get_backend()``'s choice at call time.
    """

    _op = "submanifold_conv"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: Neighbourhood | int | str = 3,
        dilation: int = 1,
        bias: bool = False,
        backend: str | None = None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel, bias, backend)
        self.dilation = int(dilation)

    def forward(self, x: SparseTensor) -> SparseTensor:
        if self.neighbourhood.offset_list == ((0, 0, 0),):  # 1x1x1: a per-voxel linear layer
            out = x.feats @ self.weight[0]
            if self.bias is not None:
                out = out + self.bias
            return x.replace_feats(out)
        return self._run(x, "submanifold_conv", self.dilation)


class StridedConv3d(_SparseConv):
    """Downsampling convolution: stride ``s`` -> ``s * stride``; outputs on the floored, unique coords.

    Args:
        kernel: default cube 2 (each input voxel feeds exactly one output); cube 3 also works.
        stride: downsampling factor (default 2).
    """

    _op = "strided_conv"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: Neighbourhood | int | str = 2,
        stride: int = 2,
        bias: bool = False,
        backend: str | None = None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel, bias, backend)
        if int(stride) < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.stride = int(stride)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return self._run(x, "strided_conv", self.stride)


class TransposedConv3d(_SparseConv):
    """Upsampling convolution onto *known* target coordinates (e.g. an encoder skip tensor).

    ``forward(x, target)``: x at stride s, target at stride ``s / stride`` on the same
    CoordinateManager; the output has target's coordinates (target's features are not used).
    """

    _op = "transposed_conv"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: Neighbourhood | int | str = 2,
        stride: int = 2,
        bias: bool = False,
        backend: str | None = None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel, bias, backend)
        self.stride = int(stride)

    def forward(self, x: SparseTensor, target: SparseTensor) -> SparseTensor:
        if target.manager is not x.manager:
            raise ValueError(
                "TransposedConv3d target must share x's CoordinateManager (use a tensor from the same network pass)"
            )
        if target.stride * self.stride != x.stride:
            raise ValueError(
                f"TransposedConv3d with stride {self.stride} maps tensor stride {x.stride} to "
                f"{x.stride // self.stride}, but the target has stride {target.stride}"
            )
        return self._run(x, "transposed_conv", self.stride, target)


class GenerativeConv3d(_SparseConv):
    """Convolution that generates new cells: outputs on ``{p + d o_k}`` for every input p and offset.

    With ``stride=1`` the tensor stride stays (``d = s``): GCA's growth onto the neighbourhood. With
    ``stride=f`` it upsamples to stride ``s / f`` (``d = s / f``; kernel 2, stride 2 makes the 8
    children of every voxel) — MinkowskiEngine's generative transposed convolution.
    """

    _op = "generative_conv"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: Neighbourhood | int | str = 3,
        stride: int = 1,
        bias: bool = False,
        backend: str | None = None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel, bias, backend)
        self.stride = int(stride)

    def forward(self, x: SparseTensor) -> SparseTensor:
        if x.stride % self.stride != 0:
            raise ValueError(f"cannot upsample tensor stride {x.stride} by {self.stride}")
        return self._run(x, "generative_conv", self.stride)


class GenerativeTransposedConv3d(GenerativeConv3d):
    """:class:`GenerativeConv3d` defaulting to kernel 2, stride 2 (every voxel makes its 8 children)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: Neighbourhood | int | str = 2,
        stride: int = 2,
        bias: bool = False,
        backend: str | None = None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel, stride, bias, backend)


def set_backend(module: nn.Module, name: str | None) -> nn.Module:
    """Make every sparse conv inside ``module`` use backend ``name`` (None: run-time default).

    Weights are unchanged (one layout for all backends), so a trained network can be moved between
    backends. Returns ``module``.
    """
    if name is not None:
        get_backend(name)  # fail now, with the reason, if it is not usable
    for m in module.modules():
        if isinstance(m, _SparseConv):
            m.backend_name = name
    return module
