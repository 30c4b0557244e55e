"""spconv 2.x backend: our SparseTensor/weights converted to spconv's per call.

Conversions
-----------
* Coordinates: spconv wants non-negative, row-major (contiguous) int32 cell indices at unit stride.
  For an op on tensor stride s we subtract an origin ``lo`` that is a multiple of the coarsest
  stride involved (so floors agree) and divide by s; ``spatial_shape`` is the extent. Batch column
  unchanged. (spconv reads the raw buffer: a column-major index tensor, e.g. straight from
  ``torch.nonzero(...).int()``, gives silently wrong neighbours.)
* Weights: spconv 2.x keeps ``[C_out, kx, ky, kz, C_in]``; cube offset ``(a, b, c)`` (index ``a + r``
  etc.) is our cube offset index ``(a * k + b) * k + c``. Both are cross-correlations, so
  ``w_sp = W.reshape(k, k, k, C_in, C_out).permute(4, 0, 1, 2, 3)`` (:func:`weight_to_spconv`).
  A hypercross is run as the enclosing cube with zero weights outside the ball (same result).
* Output rows come back in our order (submanifold: unchanged; strided: permuted through our hash).
* Transposed conv onto target coordinates: spconv's ``SparseInverseConv3d`` needs the indice pairs
  of the forward conv from the target, so we generate them on the target (cached per
  coordinate set), place x's features on the generated coarse set (zeros where x has no voxel),
  and invert.

CPU notes (spconv 2.3.8), both patched at import time of this module, nothing in site-packages edited:
* its CPU backward calls ``spconv.pytorch.ops.get_current_stream()``, which asks CUDA for a stream
  and fails without CUDA; we replace that function (only when CUDA is unavailable) by one returning
  0, the value its CPU paths pass everywhere else (:func:`_patch_cpu_stream`);
* its C++ ``scatter_add_cpu`` races when torch runs more than one thread; we route it through
  ``torch.index_add_`` (:func:`_patch_cpu_scatter_add`).

Generative convs are not implemented here (``NotImplementedError``; the layer falls back to torch).
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

import spconv.pytorch as spconv
from spconv.pytorch import ops as _spconv_ops

from gen3d_ros.sparse.kernels import Neighbourhood, cube_indices, enclosing_cube_size
from gen3d_ros.sparse.tensor import SparseTensor

log = logging.getLogger("gen3d_ros.sparse")


def _patch_cpu_stream() -> None:
    """spconv 2.3.8 CPU backward (``indice_conv_backward``) calls ``get_current_stream()``
    unconditionally; without CUDA that raises. Return stream 0 instead, as its CPU paths do."""
    if torch.cuda.is_available() or getattr(_spconv_ops.get_current_stream, "_gen3d_patched", False):
        return

    def get_current_stream() -> int:
        return 0

    get_current_stream._gen3d_patched = True  # type: ignore[attr-defined]
    _spconv_ops.get_current_stream = get_current_stream
    log.debug("patched spconv.pytorch.ops.get_current_stream -> 0 (no CUDA)")


def _patch_cpu_scatter_add() -> None:
    """spconv 2.3.8's ``SpconvOps.scatter_add_cpu`` gives wrong, run-to-run different sums when torch
    runs more than one intra-op thread (measured here: ~5 % of 3x3x3 submanifold convs on 8^3 grids
    with 2 threads, none with 1; the gather kernel and torch.mm are not at fault). We replace it by
    the same scatter-add done with ``torch.index_add_`` on views of the same memory."""
    from spconv.core_cc.csrc.sparse.all import SpconvOps

    if getattr(SpconvOps.scatter_add_cpu, "_gen3d_patched", False):
        return

    def scatter_add_cpu(out, buffer, indices) -> None:
        idx = torch.from_numpy(indices.numpy_view()).long()
        dst = torch.from_numpy(out.numpy_view())
        src = torch.from_numpy(buffer.numpy_view())
        dst.index_add_(0, idx, src[: idx.shape[0]])

    scatter_add_cpu._gen3d_patched = True  # type: ignore[attr-defined]
    SpconvOps.scatter_add_cpu = staticmethod(scatter_add_cpu)
    log.debug("patched spconv SpconvOps.scatter_add_cpu -> torch.index_add_ (thread race in 2.3.8)")


_patch_cpu_stream()
_patch_cpu_scatter_add()


def weight_to_spconv(weight: Tensor, nb: Neighbourhood) -> Tensor:
    """Our ``[K, C_in, C_out]`` -> spconv ``[C_out, k, k, k, C_in]`` (zeros outside nb)."""
    k = enclosing_cube_size(nb)
    if nb.kind == "cube":
        cube = weight
    else:
        if k % 2 == 0:
            raise NotImplementedError(f"{nb} inside an even cube")
        cube = weight.new_zeros(k**3, weight.shape[1], weight.shape[2])
        cube = cube.index_copy(0, cube_indices(nb, k).to(weight.device), weight)
    return cube.reshape(k, k, k, weight.shape[1], weight.shape[2]).permute(4, 0, 1, 2, 3).contiguous()


def weight_from_spconv(w_sp: Tensor, nb: Neighbourhood) -> Tensor:
    """spconv ``[C_out, k, k, k, C_in]`` -> our ``[K, C_in, C_out]`` (the offsets of nb)."""
    k = w_sp.shape[1]
    cube = w_sp.permute(1, 2, 3, 4, 0).reshape(k**3, w_sp.shape[4], w_sp.shape[0])
    return cube if nb.kind == "cube" else cube[cube_indices(nb, k)]


def _padding(k: int) -> int:
    # our cube offsets start at -((k - 1) // 2); spconv's at -padding
    return (k - 1) // 2


class SpconvBackend:
    """spconv 2.x (``spconv`` for CPU, ``spconv-cuXXX`` for CUDA)."""

    name = "spconv"

    def __init__(self) -> None:
        _patch_cpu_stream()

    def supports(self, device: torch.device) -> bool:
        return True

    # ------------------------------------------------------------------ conversion helpers
    @staticmethod
    def _state(x: SparseTensor) -> dict:
        return x.manager.backend_cache.setdefault("spconv", {})

    @staticmethod
    def _to_spconv(x: SparseTensor, lo: Tensor, shape: list[int], feats: Tensor) -> spconv.SparseConvTensor:
        c = x.coords.long()
        idx = torch.cat([c[:, :1], torch.div(c[:, 1:] - lo, x.stride, rounding_mode="floor")], dim=1)
        return spconv.SparseConvTensor(feats, idx.int().contiguous(), shape, max(x.batch_size, 1))

    @staticmethod
    def _frame(tensors: list[SparseTensor], align: int, unit: int, margin: int) -> tuple[Tensor, list[int]]:
        """Origin (multiple of ``align``) and spatial shape in ``unit`` cells covering all tensors, with
        ``margin`` spare cells on the high side (spconv sizes a strided output as
        ``floor((X + 2p - k) / s) + 1``, which drops the last input cell of an odd-sized kernel-2 grid)."""
        cs = torch.cat([t.coords[:, 1:].long() for t in tensors])
        lo = torch.div(cs.min(dim=0).values, align, rounding_mode="floor") * align
        hi = cs.max(dim=0).values
        shape = (torch.div(hi - lo, unit, rounding_mode="floor") + 1 + margin).tolist()
        return lo, [int(v) for v in shape]

    def _base(self, x: SparseTensor, align: int, margin: int) -> tuple[spconv.SparseConvTensor, Tensor]:
        """spconv tensor of x's coordinates (cached per key, alignment and margin so that spconv's
        indice pairs, kept in the tensor's indice_dict, are reused by later layers)."""
        st = self._state(x)
        key = ("base", x.key, align, margin)
        if key not in st:
            lo, shape = self._frame([x], align, x.stride, margin)
            st[key] = (self._to_spconv(x, lo, shape, x.feats.new_zeros(len(x), 1)), lo)
        base, lo = st[key]
        return base, lo

    # ------------------------------------------------------------------ ops
    def submanifold_conv(
        self, x: SparseTensor, weight: Tensor, neighbourhood: Neighbourhood, dilation: int = 1
    ) -> SparseTensor:
        k = enclosing_cube_size(neighbourhood)
        if k % 2 == 0:
            raise NotImplementedError("spconv submanifold conv needs an odd kernel")
        base, _ = self._base(x, x.stride, 0)
        mod = spconv.SubMConv3d(
            x.num_channels, weight.shape[2], k, dilation=dilation, bias=False,
            indice_key=f"gen3d_subm_k{k}_d{dilation}",
        ).to(device=x.device, dtype=x.dtype)
        out = torch.func.functional_call(
            mod, {"weight": weight_to_spconv(weight, neighbourhood)}, (base.replace_feature(x.feats),)
        )
        return x.replace_feats(out.features)

    def strided_conv(self, x: SparseTensor, weight: Tensor, neighbourhood: Neighbourhood, stride: int) -> SparseTensor:
        k = enclosing_cube_size(neighbourhood)
        out_stride = x.stride * stride
        base, lo = self._base(x, out_stride, k)
        mod = spconv.SparseConv3d(
            x.num_channels, weight.shape[2], k, stride=stride, padding=_padding(k), bias=False,
            indice_key=None,  # spconv reuses only submanifold pairs; a keyed strided conv asserts on reuse
        ).to(device=x.device, dtype=x.dtype)
        out = torch.func.functional_call(
            mod, {"weight": weight_to_spconv(weight, neighbourhood)}, (base.replace_feature(x.feats),)
        )
        out_key = x.manager.downsample(x.key, stride)
        # spconv outputs every cell whose window holds an input (kernel 3: also the cells just below an
        # input); ours are the floored input cells only, so drop spconv's extra rows.
        rows = self._rows_in(x, out_key, out.indices, lo, out_stride)
        keep = torch.nonzero(rows >= 0).squeeze(1)
        feats = out.features.new_zeros(x.manager.num_rows(out_key), out.features.shape[1])
        feats = feats.index_copy(0, rows[keep], out.features.index_select(0, keep))
        return SparseTensor(feats, manager=x.manager, coordinate_key=out_key)

    def transposed_conv(
        self, x: SparseTensor, weight: Tensor, neighbourhood: Neighbourhood, stride: int, target: SparseTensor
    ) -> SparseTensor:
        k = enclosing_cube_size(neighbourhood)
        st = self._state(x)
        ikey = f"gen3d_up_k{k}_s{stride}"
        cache = ("up", target.key, x.stride, k, stride)
        if cache not in st:
            # forward conv from the target generates the coarse set and the pairs to invert
            base, lo = self._base(target, x.stride, k)
            gen = spconv.SparseConv3d(1, 1, k, stride=stride, padding=_padding(k), bias=False, indice_key=ikey)
            gen = gen.to(device=x.device, dtype=x.dtype)
            with torch.no_grad():
                coarse = gen(base)
            c_idx = coarse.indices.long()
            coarse_coords = torch.cat([c_idx[:, :1], c_idx[:, 1:] * x.stride + lo], dim=1)
            st[cache] = (coarse, coarse_coords)
        coarse, coarse_coords = st[cache]
        rows = x.manager.hash(x.key).query(coarse_coords)
        hit = rows >= 0
        feats = x.feats.new_zeros(coarse_coords.shape[0], x.num_channels)
        feats = feats.index_copy(0, torch.nonzero(hit).squeeze(1), x.feats.index_select(0, rows[hit]))
        inv = spconv.SparseInverseConv3d(x.num_channels, weight.shape[2], k, indice_key=ikey, bias=False)
        inv = inv.to(device=x.device, dtype=x.dtype)
        out = torch.func.functional_call(inv, {"weight": weight_to_spconv(weight, neighbourhood)},
                                         (coarse.replace_feature(feats),))
        return SparseTensor(out.features, manager=x.manager, coordinate_key=target.key)

    def generative_conv(
        self, x: SparseTensor, weight: Tensor, neighbourhood: Neighbourhood, stride: int
    ) -> SparseTensor:
        raise NotImplementedError("spconv backend has no generative conv")

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _rows_in(x: SparseTensor, key: int, indices: Tensor, lo: Tensor, stride: int) -> Tensor:
        idx = indices.long()
        coords = torch.cat([idx[:, :1], idx[:, 1:] * stride + lo], dim=1)
        rows = x.manager.hash(key).query(coords)
        n_known = int((rows >= 0).sum())
        if n_known != x.manager.num_rows(key):
            raise RuntimeError(
                f"spconv produced {n_known} of the {x.manager.num_rows(key)} voxels of the downsampled set; "
                "coordinate conventions disagree"
            )
        return rows
