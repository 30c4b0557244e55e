"""An inference-only fast path of :class:`~gen3d_ros.sparse.unet.SparseUNet` (issue 12): the same function with
fewer kernel launches, which is what a GPU waits on at GCA's sizes (10^4-10^5 voxels, 16-64 channels).

What it changes against the layer-by-layer reference (``SparseUNet.forward_features`` with ``fused`` off):

- **batch norm folded into the convolutions**: in eval mode a norm is ``x * scale + shift`` per channel, so
  ``norm(conv(x)) = x (*) (W * scale) + shift``: one GEMM with a bias (``addmm``) instead of GEMM + norm;
- **the residual sum inside the last GEMM**: ``addmm(skip, gathered, W)``;
- **strided / transposed convs of kernel 2 without hash lookups**: every fine voxel has exactly one parent
  ``floor(c / 2s) * 2s`` and one kernel offset (its position in the parent), both known from the downsampling
  (``unique``'s inverse) — the stride-2 conv is a gather-GEMM over a (parents, 8) child table; the transposed conv
  one GEMM on the parents ``(N_c, C_in) @ (C_in, 8 C_out)`` and a gather of each child's row;
- activations in place.

The coordinate sets and the submanifold neighbour tables still come from the input's
:class:`~gen3d_ros.sparse.tensor.CoordinateManager` (shared, cached), so results equal the reference to float
rounding (``tests/sparse/test_fused.py``). Supported: ``norm`` batch or none, ``relu`` / ``elu``, ``down_kernel``
2; anything else runs the reference.

Switch: :func:`set_fused_inference` (``auto``: on for CUDA tensors in eval mode without gradients; ``on``: also on
the CPU; ``off``: never).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from gen3d_ros.sparse.kernels import Neighbourhood
from gen3d_ros.sparse.norm import SparseBatchNorm, SparseELU, SparseIdentity, SparseReLU
from gen3d_ros.sparse.tensor import SparseTensor

MODES = ("auto", "on", "off")
_mode = "auto"
_GATHER_ELEMENTS = 1 << 26
"""Largest gathered (rows, K * C_in) block of one GEMM (as the torch backend's ``gather_gemm``)."""


def set_fused_inference(mode: str) -> str:
    """``auto`` (CUDA inference), ``on`` (any device, inference) or ``off``; returns the previous mode."""
    global _mode
    if mode not in MODES:
        raise ValueError(f"unknown fused inference mode {mode!r}; choose one of {', '.join(MODES)}")
    previous, _mode = _mode, mode
    return previous


def fused_inference_applies(module: torch.nn.Module, x: SparseTensor) -> bool:
    """Whether ``module`` (in eval mode, no gradients) runs the fused path on ``x`` under the current mode."""
    if _mode == "off" or module.training or torch.is_grad_enabled() or len(x) == 0:
        return False
    return _mode == "on" or x.feats.is_cuda


def fast_paths_apply(device: torch.device) -> bool:
    """Whether inference fast paths outside the UNet (e.g. GCA's boxed chain) run on ``device`` under the current
    mode (``auto``: CUDA only)."""
    return _mode == "on" or (_mode == "auto" and torch.device(device).type == "cuda")


@dataclass
class _Conv:
    """A convolution with its following norm folded in: weight (K, C_in, C_out), bias (C_out,) or None."""

    weight: Tensor
    bias: Tensor | None
    neighbourhood: Neighbourhood
    step_factor: int = 1
    """Offsets step ``stride * step_factor`` voxels (the conv's dilation)."""


def _norm_affine(norm: torch.nn.Module, channels: int, like: Tensor) -> tuple[Tensor, Tensor] | None:
    """``(scale, shift)`` (C,) of an eval-mode norm, None for no norm; raises TypeError for one that can't fold."""
    if isinstance(norm, SparseIdentity):
        return None
    if not isinstance(norm, SparseBatchNorm):
        raise TypeError(f"{type(norm).__name__} does not fold into a convolution")
    bn = norm.bn
    if bn.running_mean is None:  # track_running_stats=False normalises by the batch even in eval mode
        raise TypeError("a batch norm without running statistics does not fold")
    scale = torch.rsqrt(bn.running_var.to(like) + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.to(like)
    shift = -bn.running_mean.to(like) * scale
    if bn.bias is not None:
        shift = shift + bn.bias.to(like)
    return scale, shift


def _fold(conv: torch.nn.Module, norm: torch.nn.Module | None) -> _Conv:
    """``norm(conv(x))`` as one conv: ``W * scale`` per output channel, bias ``b * scale + shift``."""
    w = conv.weight.detach()
    b = conv.bias.detach() if conv.bias is not None else None
    affine = _norm_affine(norm, w.shape[2], w) if norm is not None else None
    if affine is not None:
        scale, shift = affine
        w = w * scale
        b = shift if b is None else b * scale + shift
    return _Conv(w.contiguous(), b, conv.neighbourhood, int(getattr(conv, "dilation", 1)))


def _activation(module: torch.nn.Module) -> str:
    if isinstance(module, SparseReLU):
        return "relu"
    if isinstance(module, SparseELU) and module.alpha == 1.0:
        return "elu"
    raise TypeError(f"activation {type(module).__name__} is not fused")


def _act_(x: Tensor, kind: str) -> Tensor:
    return F.relu_(x) if kind == "relu" else F.elu_(x)


_DENSE_MAX_CELLS = 1 << 24
"""Largest dense lookup box of one level (int64: 128 MiB); bigger sets use the manager's hash tables."""


class _Level:
    """One level's coordinate set at stride ``s``: its rows in a dense int64 lookup box (the set's bounding box at
    stride ``s``, widened by ``margin`` cells on every side so that no neighbour lookup needs a bounds check), row
    ``N`` where a cell is empty. Submanifold neighbour tables are then one broadcast add and one gather."""

    def __init__(self, x: SparseTensor, scaled: Tensor, lo: list[int], hi: list[int], margin: int) -> None:
        """``scaled`` (N, 4) int64: ``x``'s coordinates with the cells divided by the stride; ``lo``, ``hi``:
        inclusive (4,) bounds of ``scaled`` (a box holding every row)."""
        self.x, self.s, self.n, self.scaled = x, x.stride, len(scaled), scaled
        self.bounds = (lo, hi)
        self.lo = [lo[0]] + [v - margin for v in lo[1:]]
        self.ext = [hi[0] - lo[0] + 1] + [h - v + 1 + 2 * margin for v, h in zip(lo[1:], hi[1:])]
        e = self.ext
        self.radix = [e[1] * e[2] * e[3], e[2] * e[3], e[3], 1]
        self.cells = e[0] * e[1] * e[2] * e[3]
        self.margin = margin
        self.tables: dict[tuple, Tensor] = {}
        self._dense: Tensor | None = None
        self._keys: Tensor | None = None

    @staticmethod
    def of(x: SparseTensor, margin: int) -> "_Level":
        """The level of an input tensor (one host read: its bounding box)."""
        c = x.coords.long()
        scaled = c if x.stride == 1 else torch.cat([c[:, :1], torch.div(c[:, 1:], x.stride, rounding_mode="floor")], 1)
        lo, hi = torch.stack([scaled.min(0).values, scaled.max(0).values]).tolist()
        return _Level(x, scaled, lo, hi, margin)

    @property
    def fits(self) -> bool:
        return self.cells <= _DENSE_MAX_CELLS

    def keys(self) -> Tensor:
        """(N,) int64 box key of every row."""
        if self._keys is None:
            self._keys = _dot(self.scaled, self.radix, sum(v * r for v, r in zip(self.lo, self.radix)))
        return self._keys

    def down(self) -> tuple["_Level", Tensor, Tensor]:
        """The stride-2s level (the parents ``floor(c / 2s) * 2s``, sorted (batch, x, y, z) like
        ``CoordinateManager.downsample``), each row's parent row (N,) and kernel offset index in the parent
        (N,) (cube-2 order: dx slowest). Keys in the parents' box, known on the host: no read besides ``unique``'s."""
        lo, hi = self.bounds
        plo = [lo[0]] + [v // 2 for v in lo[1:]]
        phi = [hi[0]] + [v // 2 for v in hi[1:]]
        e = [b - a + 1 for a, b in zip(plo, phi)]
        radix = [e[1] * e[2] * e[3], e[2] * e[3], e[3], 1]
        xyz = self.scaled[:, 1:]
        parent = torch.cat([self.scaled[:, :1], torch.div(xyz, 2, rounding_mode="floor")], 1)
        k = _dot(xyz - 2 * parent[:, 1:], [4, 2, 1])
        uk, inverse = torch.unique(_dot(parent, radix, sum(v * r for v, r in zip(plo, radix))), sorted=True,
                                   return_inverse=True)
        scaled = torch.stack([uk // radix[0] + plo[0], (uk // radix[1]) % e[1] + plo[1],
                              (uk // radix[2]) % e[2] + plo[2], uk % e[3] + plo[3]], 1)
        s2 = 2 * self.s
        coords = torch.cat([scaled[:, :1], scaled[:, 1:] * s2], 1).int()
        key = self.x.manager.insert(coords, s2, check=False)
        x = SparseTensor(coords.new_zeros(len(coords), 0, dtype=torch.float32), manager=self.x.manager,
                         coordinate_key=key)
        return _Level(x, scaled, plo, phi, self.margin), inverse, k

    def table(self, neighbourhood: Neighbourhood, step_factor: int) -> Tensor:
        """(N, K) int64: the row at ``coord + offset * s * step_factor`` for every row and offset, N where none
        (the layout of ``CoordinateManager.neighbour_table``)."""
        key = (neighbourhood, step_factor)
        if key not in self.tables:
            offs = neighbourhood.offset_list
            if not self.fits or max(max(abs(v) for v in o) for o in offs) * step_factor > self.margin:
                self.tables[key] = self.x.manager.neighbour_table(self.x.key, self.x.key, neighbourhood,
                                                                  self.s * step_factor)
            else:
                if self._dense is None:
                    keys = self.keys()
                    self._dense = torch.full((self.cells,), self.n, dtype=torch.long, device=keys.device)
                    self._dense[keys] = torch.arange(self.n, device=keys.device)
                delta = _dot(neighbourhood.offsets(self._dense.device), [self.radix[1] * step_factor,
                                                                         self.radix[2] * step_factor, step_factor])
                self.tables[key] = self._dense[self.keys()[:, None] + delta[None, :]]
        return self.tables[key]


def _dot(cols: Tensor, weights: list[int], minus: int = 0) -> Tensor:
    """``cols @ weights - minus`` for (N, D) int64 columns and D python ints, without copying ``weights`` to the
    device (a host-to-device copy waits for the GPU's queue)."""
    out = cols[:, -1] * weights[-1] - minus
    for j in range(cols.shape[1] - 1):
        out = out.add_(cols[:, j], alpha=weights[j])
    return out


def _radius(unet: torch.nn.Module) -> int:
    """The largest |offset component| times dilation of the net's submanifold convs: the lookup boxes' margin."""
    r = 0
    for m in unet.modules():
        if hasattr(m, "neighbourhood") and hasattr(m, "dilation"):
            r = max(r, max(max(abs(v) for v in o) for o in m.neighbourhood.offset_list) * int(m.dilation))
    return r


@dataclass
class _Block:
    conv1: _Conv
    conv2: _Conv
    skip: _Conv | None
    """The 1x1 skip conv (+ its norm), None for the identity."""


def _fold_block(block: torch.nn.Module) -> _Block:
    skip = None
    if not isinstance(block.skip, SparseIdentity):
        skip = _fold(block.skip[0], block.skip[1])
    return _Block(_fold(block.conv1, block.norm1), _fold(block.conv2, block.norm2), skip)


class FusedUNet:
    """The folded weights of one :class:`~gen3d_ros.sparse.unet.SparseUNet` (a snapshot: rebuild it after the
    weights change; :func:`fused_for` does) and its fused ``forward_features``."""

    def __init__(self, unet: torch.nn.Module) -> None:
        self.act = _activation(unet.stem[2])
        for m in unet.modules():  # every activation of the net must be the stem's kind
            if isinstance(m, (SparseReLU, SparseELU)) and _activation(m) != self.act:
                raise TypeError("mixed activations are not fused")
        self.stem = _fold(unet.stem[0], unet.stem[1])
        self.encoders = [[_fold_block(b) for b in level] for level in unet.encoders]
        self.downs = []
        for d in unet.downs:
            if d[0].neighbourhood != Neighbourhood.cube(2) or d[0].stride != 2:
                raise TypeError("only kernel-2, stride-2 downsampling is fused")
            self.downs.append(_fold(d[0], d[1]))
        self.ups = []
        for up, post in zip(unet.ups, unet.up_post):
            if up.neighbourhood != Neighbourhood.cube(2) or up.stride != 2:
                raise TypeError("only kernel-2, stride-2 upsampling is fused")
            c = _fold(up, post[0])
            k, c_in, c_out = c.weight.shape  # (8, C_in, C_out) -> (C_in, 8 * C_out): one GEMM for all children
            bias = c.bias if c.bias is not None else c.weight.new_zeros(c_out)
            self.ups.append(_Conv(c.weight.permute(1, 0, 2).reshape(c_in, k * c_out).contiguous(),
                                  bias.repeat(k), c.neighbourhood))
        self.decoders = [[_fold_block(b) for b in level] for level in unet.decoders]
        self.margin = _radius(unet)

    # -------------------------------------------------------------------------------------------- ops
    def _subm(self, feats: Tensor, level: _Level, conv: _Conv, add: Tensor | None = None) -> Tensor:
        """Submanifold conv on ``level``'s set + bias (+ ``add``, e.g. the residual)."""
        if conv.neighbourhood.offset_list == ((0, 0, 0),):
            return _addmm(feats, conv.weight[0], conv.bias, add)
        return _gather_gemm(feats, conv.weight, level.table(conv.neighbourhood, conv.step_factor), conv.bias, add)

    def _block(self, feats: Tensor, level: _Level, block: _Block) -> Tensor:
        h = _act_(self._subm(feats, level, block.conv1), self.act)
        skip = feats if block.skip is None else self._subm(feats, level, block.skip)
        return _act_(self._subm(h, level, block.conv2, add=skip), self.act)

    def _strided(self, feats: Tensor, n_coarse: int, inverse: Tensor, k: Tensor, conv: _Conv) -> Tensor:
        table = torch.full((n_coarse, 8), len(feats), dtype=torch.long, device=feats.device)
        table[inverse, k] = torch.arange(len(feats), device=feats.device)  # one child per (parent, offset)
        return _gather_gemm(feats, conv.weight, table, conv.bias, None)

    def _transposed(self, feats: Tensor, inverse: Tensor, k: Tensor, conv: _Conv) -> Tensor:
        c_out = conv.weight.shape[1] // 8
        every = torch.addmm(conv.bias, feats, conv.weight)  # (N_c, 8 C_out): each parent's 8 children
        return every.reshape(-1, c_out)[inverse * 8 + k]

    def forward_features(self, x: SparseTensor) -> Tensor:
        """Decoder features (N, widths[0]) on ``x``'s coordinates (as ``SparseUNet.forward_features``)."""
        level = _Level.of(x, self.margin)
        feats = _act_(self._subm(x.feats, level, self.stem), self.act)
        levels = len(self.encoders)
        skips: list[tuple[Tensor, _Level, Tensor, Tensor]] = []
        for i in range(levels):
            for block in self.encoders[i]:
                feats = self._block(feats, level, block)
            if i < levels - 1:
                coarse, inverse, k = level.down()
                skips.append((feats, level, inverse, k))
                feats = _act_(self._strided(feats, coarse.n, inverse, k, self.downs[i]), self.act)
                level = coarse
        for i in reversed(range(levels - 1)):
            skip, level, inverse, k = skips[i]
            up = _act_(self._transposed(feats, inverse, k, self.ups[i]), self.act)
            feats = torch.cat([up, skip], dim=1)
            for block in self.decoders[i]:
                feats = self._block(feats, level, block)
        return feats


def _addmm(a: Tensor, w: Tensor, bias: Tensor | None, add: Tensor | None) -> Tensor:
    """``a @ w + bias + add`` in one GEMM where possible."""
    if add is not None:
        out = torch.addmm(add, a, w)
        return out if bias is None else out.add_(bias)
    return torch.addmm(bias, a, w) if bias is not None else a @ w


def _gather_gemm(feats: Tensor, weight: Tensor, table: Tensor, bias: Tensor | None, add: Tensor | None) -> Tensor:
    """``concat_k(feats_pad[table[:, k]]) @ W.reshape(K C_in, C_out) + bias + add`` in row chunks of at most
    :data:`_GATHER_ELEMENTS` gathered elements; ``table`` (N_out, K), ``len(feats)`` where no neighbour."""
    k, c_in, c_out = weight.shape
    padded = F.pad(feats, (0, 0, 0, 1))  # row N: zeros, read where a neighbour is missing
    w = weight.reshape(k * c_in, c_out)
    rows = max(1, _GATHER_ELEMENTS // max(1, k * c_in))
    if table.shape[0] <= rows:
        return _addmm(padded[table].reshape(-1, k * c_in), w, bias, add)
    return torch.cat([_addmm(padded[table[s:s + rows]].reshape(-1, k * c_in), w, bias,
                             None if add is None else add[s:s + rows]) for s in range(0, table.shape[0], rows)])


def fused_for(unet: torch.nn.Module) -> FusedUNet | None:
    """The :class:`FusedUNet` of ``unet``, cached on it until a parameter or buffer changes (version counters,
    storage, device, dtype); None when the net has a layer that does not fold (it then runs the reference)."""
    state = [*unet.parameters(), *unet.buffers()]
    key = tuple((t._version, t.data_ptr(), t.dtype, t.device) for t in state)
    cached = getattr(unet, "_fused_cache", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    try:
        fused: FusedUNet | None = FusedUNet(unet)
    except TypeError:
        fused = None
    object.__setattr__(unet, "_fused_cache", (key, fused))  # not a submodule or buffer: no state_dict entry
    return fused


__all__ = ["FusedUNet", "MODES", "fast_paths_apply", "fused_for", "fused_inference_applies", "set_fused_inference"]
