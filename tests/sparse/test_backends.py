"""Every installed backend agrees with the torch backend on the same weights, forward and backward.

Tolerance: float32, ``max|a - b| < 1e-4 * max(1, max|a|)`` for outputs and gradients (a = torch
backend). Outputs are O(1) so this is an absolute 1e-4; weight gradients sum thousands of pairs
(values up to ~50), where float32 summation order alone moves the last digits. Measured here:
~1e-7 per op output, ~1e-6 for the UNet.
"""

from __future__ import annotations

import logging

import pytest
import torch

from gen3d_ros.sparse import (
    GenerativeConv3d,
    SparseTensor,
    SparseUNet,
    StridedConv3d,
    SubmanifoldConv3d,
    TransposedConv3d,
    available_backends,
    get_backend,
    set_backend,
    unavailable_reason,
)
from gen3d_ros.sparse import backends as backends_mod
from gen3d_ros.sparse import conv as conv_mod

TOL = 1e-4
OTHER_BACKENDS = ["minkowski", "spconv"]


def _require(name: str) -> None:
    reason = unavailable_reason(name)
    if reason is not None:
        pytest.skip(f"{name} backend not usable here: {reason}")


def _scene(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    occ = torch.rand(2, 12, 12, 12, generator=g) < 0.25
    c = torch.nonzero(occ).int().contiguous()  # nonzero() is column-major; native spconv/ME need row-major
    c[:, 1:] -= 6  # negative coordinates too
    return c


def _run(make, backend: str, coords: torch.Tensor, c_in: int, target_fn=None):
    """Forward + backward of a fresh layer (same seed => same weights) with the given backend."""
    torch.manual_seed(7)
    layer = make()
    layer.backend_name = backend
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(coords.shape[0], c_in, generator=g, requires_grad=True)
    x = SparseTensor(feats, coords)
    y = target_fn(layer, x) if target_fn else layer(x)
    upstream = torch.randn(y.feats.shape, generator=g)
    (y.feats * upstream).sum().backward()
    return y, feats.grad, layer.weight.grad




OPS = {
    "submanifold_cube3": (lambda: SubmanifoldConv3d(3, 5, 3), None),
    "submanifold_cube5_dilation2": (lambda: SubmanifoldConv3d(3, 5, 5, dilation=2), None),
    "submanifold_hypercross2": (lambda: SubmanifoldConv3d(3, 5, "hypercross2"), None),
    "strided_k2": (lambda: StridedConv3d(3, 5, 2), None),
    "strided_k3": (lambda: StridedConv3d(3, 5, 3), None),
    "transposed_k2": (lambda: TransposedConv3d(4, 5, 2), "up"),
    "transposed_k3": (lambda: TransposedConv3d(4, 5, 3), "up"),
    "generative_cube3": (lambda: GenerativeConv3d(3, 5, 3), None),
    "generative_hypercross2": (lambda: GenerativeConv3d(3, 5, "hypercross2"), None),
}


def _up(layer, x):
    torch.manual_seed(11)
    pool = StridedConv3d(x.num_channels, layer.in_channels, 2, backend="torch")
    return layer(pool(x), x)


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
@pytest.mark.parametrize("op", list(OPS))
def test_backend_matches_torch_forward_and_gradients(backend, op, caplog, monkeypatch):
    _require(backend)
    monkeypatch.setattr(conv_mod, "_fallback_logged", set())  # the fallback warning is logged once
    make, kind = OPS[op]
    coords = _scene()
    fn = _up if kind == "up" else None
    ref = _run(make, "torch", coords, 3, fn)
    with caplog.at_level(logging.WARNING, logger="gen3d_ros.sparse"):
        out = _run(make, backend, coords, 3, fn)
    assert out[0].key == ref[0].key and torch.equal(out[0].coords, ref[0].coords)
    for name, a, b in zip(("output", "grad feats", "grad weight"), ref, out):
        a = a.feats if isinstance(a, SparseTensor) else a
        b = b.feats if isinstance(b, SparseTensor) else b
        diff = (a - b).abs().max().item()
        assert diff < TOL * max(1.0, a.abs().max().item()), f"{backend} {op} {name}: max abs diff {diff}"
    fell_back = any("using the torch backend" in r.message for r in caplog.records)
    assert fell_back == (backend == "spconv" and op.startswith("generative"))


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_backend_unet_matches_torch(backend):
    _require(backend)
    coords = _scene(1)
    results = []
    for name in ("torch", backend):
        torch.manual_seed(5)
        net = set_backend(SparseUNet(3, 7, widths=(8, 16, 32), kernel="hypercross2"), name)
        feats = torch.randn(coords.shape[0], 3, generator=torch.Generator().manual_seed(2))
        y = net(SparseTensor(feats, coords))
        y.feats.square().mean().backward()
        results.append((y.feats.detach(), net.stem[0].weight.grad.clone(), net.ups[0].weight.grad.clone()))
    for a, b in zip(*results):
        assert (a - b).abs().max().item() < TOL * max(1.0, a.abs().max().item())


def test_torch_backend_always_available():
    assert "torch" in available_backends()
    assert get_backend("torch").name == "torch"


def test_backend_choice_follows_argument_env_and_default_order(monkeypatch, caplog):
    monkeypatch.setattr(backends_mod, "_default_logged", set())
    with caplog.at_level(logging.INFO, logger="gen3d_ros.sparse"):
        default = get_backend()
    if torch.cuda.is_available():
        cuda = torch.device("cuda")
        expected = next(n for n in available_backends() if get_backend(n).supports(cuda))
    else:
        expected = "torch"  # CPU-only default (see gen3d_ros.sparse.backends)
    assert default.name == expected
    assert any(f"sparse conv backend: {expected}" in r.message for r in caplog.records)
    monkeypatch.setenv("GEN3D_SPARSE_BACKEND", "torch")
    assert get_backend().name == "torch"
    monkeypatch.setenv("GEN3D_SPARSE_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="nonsense"):
        get_backend()
    with pytest.raises(ValueError, match="not one of"):
        get_backend("cuda-magic")


def test_requesting_a_missing_backend_says_why(monkeypatch):
    monkeypatch.setitem(backends_mod._failures, "spconv", "ImportError: pretend it is not installed")
    monkeypatch.delitem(backends_mod._instances, "spconv", raising=False)
    with pytest.raises(RuntimeError, match="pretend it is not installed"):
        get_backend("spconv")


@pytest.mark.filterwarnings("ignore:.*should not be instantiated:DeprecationWarning")
def test_weights_copied_from_a_native_minkowski_conv_give_its_outputs():
    _require("minkowski")
    import MinkowskiEngine as ME

    from gen3d_ros.sparse.backends.minkowski_backend import weight_from_minkowski, weight_to_minkowski

    coords = _scene(2)
    feats = torch.randn(coords.shape[0], 3, generator=torch.Generator().manual_seed(4))
    torch.manual_seed(0)
    native = ME.MinkowskiConvolution(3, 4, kernel_size=3, dimension=3, bias=False)
    y_me = native(ME.SparseTensor(feats, coords.contiguous()))
    ours = SubmanifoldConv3d(3, 4, 3, backend="torch")
    ours.weight.data = weight_from_minkowski(native.kernel.detach(), ours.neighbourhood)
    assert torch.equal(weight_to_minkowski(ours.weight.detach(), ours.neighbourhood), native.kernel.detach())
    y = ours(SparseTensor(feats, coords))
    rows = y.manager.hash(y.key).query(y_me.C)
    assert (y.feats[rows] - y_me.F).abs().max().item() < TOL


def test_weights_copied_from_a_native_spconv_conv_give_its_outputs():
    _require("spconv")
    import spconv.pytorch as spconv

    from gen3d_ros.sparse.backends.spconv_backend import weight_from_spconv, weight_to_spconv

    coords = _scene(2)
    feats = torch.randn(coords.shape[0], 3, generator=torch.Generator().manual_seed(4))
    idx = coords.clone()
    idx[:, 1:] += 6
    torch.manual_seed(0)
    native = spconv.SubMConv3d(3, 4, 3, bias=False)
    with torch.no_grad():
        y_sp = native(spconv.SparseConvTensor(feats, idx.contiguous(), [12, 12, 12], 2)).features
    ours = SubmanifoldConv3d(3, 4, 3, backend="torch")
    ours.weight.data = weight_from_spconv(native.weight.detach(), ours.neighbourhood)
    assert torch.equal(weight_to_spconv(ours.weight.detach(), ours.neighbourhood), native.weight.detach())
    y = ours(SparseTensor(feats, coords))  # subm keeps the input row order in both
    assert (y.feats - y_sp).abs().max().item() < TOL
