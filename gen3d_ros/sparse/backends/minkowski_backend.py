"""MinkowskiEngine 0.5.x backend: our SparseTensor/weights converted to MinkowskiEngine's.

* Coordinates: same convention (batch first, voxel units, multiples of the tensor stride, floor
  when downsampling). Each of our CoordinateManagers gets one ``ME.CoordinateManager``; each of our
  coordinate sets is inserted once (string id ``gen3d<key>``) and ME's row order for it is matched to
  ours through our hash (a permutation, cached). So ME's kernel maps are cached across layers too.
* Weights: ME keeps ``[K, C_in, C_out]`` like us. Its cube order is **dx fastest, dz slowest**
  (ours: dz fastest); :func:`weight_to_minkowski` / :func:`weight_from_minkowski` convert. A
  hypercross runs as its enclosing cube with zero weights (see :func:`kernel_generator`). ME
  convolutions are cross-correlations like ours.
* Every op returns rows in our order on our coordinate key.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

with warnings.catch_warnings():
    # "compiled with CPU_ONLY flag" is expected on CPU machines
    warnings.simplefilter("ignore")
    import MinkowskiEngine as ME

from gen3d_ros.sparse.kernels import Neighbourhood, cube_indices, enclosing_cube_size  # noqa: E402
from gen3d_ros.sparse.tensor import SparseTensor  # noqa: E402

# ME 0.5.4 instantiates its autograd Functions (in module __init__ and forward); torch 2.x warns each time
_INSTANTIATED = r".*should not be instantiated.*"

_CPU_ONLY = not hasattr(ME, "is_cuda_available") or not ME.is_cuda_available()


def _me_cube_perm(k: int) -> Tensor:
    """Index into our cube order for each ME cube offset: ``W_me = W_ours[perm]``."""
    rng = range(-((k - 1) // 2), k // 2 + 1)
    ours = {o: i for i, o in enumerate(Neighbourhood.cube(k).offset_list)}
    # ME: x fastest, then y, z slowest
    return torch.tensor([ours[(x, y, z)] for z in rng for y in rng for x in rng], dtype=torch.long)


def weight_to_minkowski(weight: Tensor, nb: Neighbourhood) -> Tensor:
    """Our ``[K, C_in, C_out]`` -> ME ``[k^3, C_in, C_out]`` for a HYPER_CUBE kernel of size
    ``k`` (the enclosing cube of nb; zeros at cube offsets outside nb)."""
    k = enclosing_cube_size(nb)
    if nb.kind != "cube":
        cube = weight.new_zeros(k**3, weight.shape[1], weight.shape[2])
        weight = cube.index_copy(0, cube_indices(nb, k).to(weight.device), weight)
    return weight.index_select(0, _me_cube_perm(k).to(weight.device))


def weight_from_minkowski(kernel: Tensor, nb: Neighbourhood) -> Tensor:
    """Inverse of :func:`weight_to_minkowski` (cube entries outside nb are dropped)."""
    k = enclosing_cube_size(nb)
    cube = kernel.index_select(0, torch.argsort(_me_cube_perm(k)).to(kernel.device))
    return cube if nb.kind == "cube" else cube.index_select(0, cube_indices(nb, k).to(kernel.device))


def kernel_generator(nb: Neighbourhood, stride: int = 1, dilation: int = 1, expand: bool = False) -> "ME.KernelGenerator":
    """ME HYPER_CUBE KernelGenerator enclosing nb.

    ME 0.5.4's ``RegionType.CUSTOM`` is not usable for this: its Python KernelGenerator fails on a
    tensor ``region_offsets`` (truth value of a tensor) and its CPU kernel-map iterator walks the
    cube bounds only. A hypercross therefore runs as its enclosing cube with zero weights outside the
    ball (same outputs; k^3 / K times the multiply-adds).
    """
    return ME.KernelGenerator(
        kernel_size=enclosing_cube_size(nb), stride=stride, dilation=dilation, expand_coordinates=expand, dimension=3
    )


class _State:
    """ME coordinate manager and key/permutation bookkeeping for one of our CoordinateManagers."""

    def __init__(self, device: torch.device) -> None:
        kind = ME.CoordinateMapType.CUDA if device.type == "cuda" else ME.CoordinateMapType.CPU
        self.cm = ME.CoordinateManager(D=3, coordinate_map_type=kind)
        self.me_key: dict[int, object] = {}  # our key -> ME CoordinateMapKey
        self.to_ours: dict[tuple, Tensor] = {}  # ME key id -> our row of each ME row
        self.from_ours: dict[tuple, Tensor] = {}  # ME key id -> ME row of each of our rows


def _key_id(k) -> tuple:
    stride, string_id = k.get_key()
    return tuple(stride), string_id


class MinkowskiBackend:
    """MinkowskiEngine (CPU-only builds run CPU tensors only)."""

    name = "minkowski"

    def __init__(self) -> None:
        self._modules: dict[tuple, torch.nn.Module] = {}

    def supports(self, device: torch.device) -> bool:
        return device.type == "cpu" or not _CPU_ONLY

    # ------------------------------------------------------------------ conversion
    @staticmethod
    def _state(x: SparseTensor) -> _State:
        st = x.manager.backend_cache.get("minkowski")
        if st is None:
            st = _State(x.device)
            x.manager.backend_cache["minkowski"] = st
        return st  # type: ignore[return-value]

    def _register(self, st: _State, x: SparseTensor, our_key: int, me_key) -> None:
        """Match ME's rows of ``me_key`` to our rows of ``our_key``.

        ME's set may be a superset of ours (a generative conv with a hypercross run as a cube makes
        the cube-dilated set); the extra rows are dropped when reading out, and such a key is never
        used as an input for our set.
        """
        kid = _key_id(me_key)
        if kid in st.from_ours:
            return
        me_coords = st.cm.get_coordinates(me_key).to(x.device)
        rows = x.manager.hash(our_key).query(me_coords)
        n = x.manager.num_rows(our_key)
        hit = torch.nonzero(rows >= 0).squeeze(1)
        if hit.shape[0] != n:
            raise RuntimeError(
                f"MinkowskiEngine set covers {hit.shape[0]} of our {n} voxels; coordinate conventions disagree"
            )
        from_ours = torch.empty(n, dtype=torch.long, device=x.device)
        from_ours[rows[hit]] = hit
        st.from_ours[kid] = from_ours
        if hit.shape[0] == rows.shape[0]:
            st.to_ours[kid] = rows

    def _to_me(self, x: SparseTensor, feats: Tensor | None = None) -> "ME.SparseTensor":
        st = self._state(x)
        key = st.me_key.get(x.key)
        if key is None:
            s = x.stride
            key, _ = st.cm.insert_and_map(x.coords, tensor_stride=[s, s, s], string_id=f"gen3d{x.key}")
            st.me_key[x.key] = key
        self._register(st, x, x.key, key)
        f = x.feats if feats is None else feats
        f = f.index_select(0, st.to_ours[_key_id(key)])
        return ME.SparseTensor(features=f, coordinate_map_key=key, coordinate_manager=st.cm)

    def _from_me(self, y: "ME.SparseTensor", x: SparseTensor, our_key: int) -> SparseTensor:
        st = self._state(x)
        kid = _key_id(y.coordinate_map_key)
        self._register(st, x, our_key, y.coordinate_map_key)
        if kid in st.to_ours:  # exact match: later ops on our_key may start from this ME key
            st.me_key.setdefault(our_key, y.coordinate_map_key)
        feats = y.F.index_select(0, st.from_ours[kid])
        return SparseTensor(feats, manager=x.manager, coordinate_key=our_key)

    def _module(self, kind: str, cin: int, cout: int, nb: Neighbourhood, stride: int, dilation: int, dtype, device):
        key = (kind, cin, cout, nb, stride, dilation, dtype, str(device))
        m = self._modules.get(key)
        if m is None:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_INSTANTIATED, category=DeprecationWarning)
                m = self._new_module(kind, cin, cout, nb, stride, dilation).to(device=device, dtype=dtype)
            self._modules[key] = m
        return m

    @staticmethod
    def _new_module(kind: str, cin: int, cout: int, nb: Neighbourhood, stride: int, dilation: int):
        if kind == "conv":
            kg = kernel_generator(nb, stride, dilation)
            return ME.MinkowskiConvolution(cin, cout, bias=False, kernel_generator=kg, dimension=3)
        if kind == "transpose":
            kg = kernel_generator(nb, stride, dilation)
            return ME.MinkowskiConvolutionTranspose(cin, cout, bias=False, kernel_generator=kg, dimension=3)
        if kind == "generative":
            kg = kernel_generator(nb, stride, dilation, expand=True)
            return ME.MinkowskiGenerativeConvolutionTranspose(cin, cout, bias=False, kernel_generator=kg, dimension=3)
        raise ValueError(f"unknown ME module kind {kind!r}")  # pragma: no cover

    @staticmethod
    def _call(m: torch.nn.Module, weight: Tensor, nb: Neighbourhood, *args, **kwargs):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_INSTANTIATED, category=DeprecationWarning)
            return torch.func.functional_call(m, {"kernel": weight_to_minkowski(weight, nb)}, args, kwargs)

    # ------------------------------------------------------------------ ops
    def submanifold_conv(
        self, x: SparseTensor, weight: Tensor, neighbourhood: Neighbourhood, dilation: int = 1
    ) -> SparseTensor:
        m = self._module("conv", x.num_channels, weight.shape[2], neighbourhood, 1, dilation, x.dtype, x.device)
        y = self._call(m, weight, neighbourhood, self._to_me(x))
        return self._from_me(y, x, x.key)

    def strided_conv(self, x: SparseTensor, weight: Tensor, neighbourhood: Neighbourhood, stride: int) -> SparseTensor:
        m = self._module("conv", x.num_channels, weight.shape[2], neighbourhood, stride, 1, x.dtype, x.device)
        y = self._call(m, weight, neighbourhood, self._to_me(x))
        return self._from_me(y, x, x.manager.downsample(x.key, stride))

    def transposed_conv(
        self, x: SparseTensor, weight: Tensor, neighbourhood: Neighbourhood, stride: int, target: SparseTensor
    ) -> SparseTensor:
        m = self._module("transpose", x.num_channels, weight.shape[2], neighbourhood, stride, 1, x.dtype, x.device)
        tgt = self._to_me(target, target.feats.new_zeros(len(target), 0))
        y = self._call(m, weight, neighbourhood, self._to_me(x), coordinates=tgt.coordinate_map_key)
        return self._from_me(y, x, target.key)

    def generative_conv(
        self, x: SparseTensor, weight: Tensor, neighbourhood: Neighbourhood, stride: int
    ) -> SparseTensor:
        m = self._module("generative", x.num_channels, weight.shape[2], neighbourhood, stride, 1, x.dtype, x.device)
        y = self._call(m, weight, neighbourhood, self._to_me(x))
        out_stride = x.stride // stride
        out_key, _ = x.manager.dilate(x.key, neighbourhood, out_stride, out_stride)
        return self._from_me(y, x, out_key)
