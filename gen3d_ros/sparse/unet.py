"""Residual sparse blocks and the sparse UNet used by GCA's transition network."""

from __future__ import annotations

from typing import Sequence

from torch import nn

from gen3d_ros.sparse.conv import StridedConv3d, SubmanifoldConv3d, TransposedConv3d
from gen3d_ros.sparse.fused import fused_for, fused_inference_applies
from gen3d_ros.sparse.kernels import Neighbourhood
from gen3d_ros.sparse.norm import SparseIdentity, make_activation, make_norm
from gen3d_ros.sparse.tensor import SparseTensor, cat


class SparseResBlock(nn.Module):
    """``act(norm(conv(act(norm(conv(x))))) + skip(x))`` with submanifold convs.

    Args:
        in_channels, out_channels: widths (skip is a 1x1x1 conv + norm when they differ).
        kernel: neighbourhood of both convs (cube size, Neighbourhood or ``"hypercross2"``).
        norm: ``"batch"``, ``"instance"`` or ``"none"``.
        activation: ``"relu"`` or ``"elu"``.
        backend: sparse backend name (None: run-time default).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        kernel: Neighbourhood | int | str = 3,
        norm: str = "batch",
        activation: str = "relu",
        backend: str | None = None,
    ) -> None:
        super().__init__()
        out_channels = out_channels or in_channels
        self.conv1 = SubmanifoldConv3d(in_channels, out_channels, kernel, backend=backend)
        self.norm1 = make_norm(norm, out_channels)
        self.act1 = make_activation(activation)
        self.conv2 = SubmanifoldConv3d(out_channels, out_channels, kernel, backend=backend)
        self.norm2 = make_norm(norm, out_channels)
        self.act2 = make_activation(activation)
        if in_channels != out_channels:
            self.skip: nn.Module = nn.Sequential(
                SubmanifoldConv3d(in_channels, out_channels, 1, backend=backend), make_norm(norm, out_channels)
            )
        else:
            self.skip = SparseIdentity()

    def forward(self, x: SparseTensor) -> SparseTensor:
        h = self.act1(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return self.act2(h.replace_feats(h.feats + self.skip(x).feats))


class SparseUNet(nn.Module):
    """Residual encoder/decoder on sparse voxels; the output lives on the input coordinates.

    Level i works at tensor stride ``2**i`` with ``widths[i]`` channels and ``blocks_per_level``
    residual blocks. Down: ``StridedConv3d`` (``down_kernel``, stride 2) + norm + act. Up:
    ``TransposedConv3d`` onto the skip tensor's coordinates + norm + act, concatenation with the skip,
    then residual blocks (the first one reduces 2w -> w). Head: 1x1x1 conv with bias to
    ``out_channels`` (e.g. one occupancy logit per GCA neighbourhood offset).

    Args:
        in_channels, out_channels: input / output feature widths.
        widths: channels per level, finest first, e.g. (32, 64, 128, 256).
        blocks_per_level: residual blocks per encoder level and per decoder level (>= 1).
        kernel: neighbourhood of the submanifold convs (cube 3 by default; ``"hypercross2"``...).
        down_kernel: cube size of the strided and transposed convs (2 or 3).
        norm: ``"batch"``, ``"instance"`` or ``"none"``.
        activation: ``"relu"`` or ``"elu"``.
        backend: sparse backend name (None: run-time default).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        widths: Sequence[int] = (32, 64, 128, 256),
        blocks_per_level: int = 1,
        kernel: Neighbourhood | int | str = 3,
        down_kernel: int = 2,
        norm: str = "batch",
        activation: str = "relu",
        backend: str | None = None,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not widths:
            raise ValueError("widths must name at least one level")
        if blocks_per_level < 1:
            raise ValueError(f"blocks_per_level must be >= 1, got {blocks_per_level}")
        self.in_channels, self.out_channels, self.widths = in_channels, out_channels, widths
        self.num_levels = len(widths)

        def blocks(cin: int, cout: int) -> nn.Sequential:
            mods = [SparseResBlock(cin, cout, kernel, norm, activation, backend)]
            mods += [SparseResBlock(cout, cout, kernel, norm, activation, backend) for _ in range(blocks_per_level - 1)]
            return nn.Sequential(*mods)

        self.stem = nn.Sequential(
            SubmanifoldConv3d(in_channels, widths[0], kernel, backend=backend),
            make_norm(norm, widths[0]),
            make_activation(activation),
        )
        self.encoders = nn.ModuleList([blocks(w, w) for w in widths])
        self.downs = nn.ModuleList(
            nn.Sequential(
                StridedConv3d(widths[i], widths[i + 1], down_kernel, 2, backend=backend),
                make_norm(norm, widths[i + 1]),
                make_activation(activation),
            )
            for i in range(self.num_levels - 1)
        )
        self.ups = nn.ModuleList(
            TransposedConv3d(widths[i + 1], widths[i], down_kernel, 2, backend=backend) for i in range(self.num_levels - 1)
        )
        self.up_post = nn.ModuleList(
            nn.Sequential(make_norm(norm, widths[i]), make_activation(activation)) for i in range(self.num_levels - 1)
        )
        self.decoders = nn.ModuleList(blocks(2 * widths[i], widths[i]) for i in range(self.num_levels - 1))
        self.head = SubmanifoldConv3d(widths[0], out_channels, 1, bias=True, backend=backend)

    def forward_features(self, x: SparseTensor) -> SparseTensor:
        """Decoder features (``widths[0]`` channels) on the input coordinates, before the head."""
        if x.num_channels != self.in_channels:
            raise ValueError(f"SparseUNet expects {self.in_channels} input channels, got {x.num_channels}")
        if fused_inference_applies(self, x):  # eval without gradients: folded norms, fewer launches (fused.py)
            fused = fused_for(self)
            if fused is not None:
                return x.replace_feats(fused.forward_features(x))
        h = self.stem(x)
        skips = []
        for i in range(self.num_levels):
            h = self.encoders[i](h)
            if i < self.num_levels - 1:
                skips.append(h)
                h = self.downs[i](h)
        for i in reversed(range(self.num_levels - 1)):
            h = self.up_post[i](self.ups[i](h, skips[i]))
            h = self.decoders[i](cat(h, skips[i]))
        return h

    def forward(self, x: SparseTensor) -> SparseTensor:
        """(N, in_channels) on x's coords -> (N, out_channels) on the same coords (same key)."""
        return self.head(self.forward_features(x))
