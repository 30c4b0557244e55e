"""The torch backend's ``gather_gemm`` algorithm (dense neighbour table, one GEMM) against its ``offsets``
reference (per-offset gather/GEMM/scatter): same outputs and gradients on every op, in row chunks too."""

from __future__ import annotations

import pytest
import torch

from gen3d_ros.sparse import SparseTensor, SparseUNet
from gen3d_ros.sparse.backends import torch_backend
from gen3d_ros.sparse.backends.torch_backend import set_conv_algorithm

from tests.sparse.test_backends import OPS, _run, _scene, _up


@pytest.fixture
def algorithm():
    previous = set_conv_algorithm("auto")
    yield set_conv_algorithm
    set_conv_algorithm(previous)


def _compare(ref, out, what: str, tol: float = 1e-5) -> None:
    for name, a, b in zip(("output", "grad feats", "grad weight"), ref, out):
        a = a.feats if isinstance(a, SparseTensor) else a
        b = b.feats if isinstance(b, SparseTensor) else b
        assert a.shape == b.shape, f"{what} {name}: shape {tuple(b.shape)} != {tuple(a.shape)}"
        diff = (a - b).abs().max().item() if a.numel() else 0.0
        assert diff < tol * max(1.0, a.abs().max().item()), f"{what} {name}: max abs diff {diff}"


@pytest.mark.parametrize("op", list(OPS))
def test_gather_gemm_matches_offsets_forward_and_gradients(op, algorithm):
    make, kind = OPS[op]
    fn = _up if kind == "up" else None
    coords = _scene(1)
    algorithm("offsets")
    ref = _run(make, "torch", coords, 3, fn)
    algorithm("gather_gemm")
    out = _run(make, "torch", coords, 3, fn)
    assert torch.equal(out[0].coords, ref[0].coords)
    _compare(ref, out, op)


def test_gather_gemm_row_chunks_give_the_same_sum(algorithm, monkeypatch):
    make, _ = OPS["submanifold_cube3"]
    coords = _scene(2)
    algorithm("gather_gemm")
    whole = _run(make, "torch", coords, 3)
    monkeypatch.setattr(torch_backend, "_GATHER_ELEMENTS", 27 * 3 * 7)  # 7 rows per GEMM
    chunked = _run(make, "torch", coords, 3)
    _compare(whole, chunked, "chunked", tol=1e-6)


def _unet_outputs(algorithm, seed: int, second: str, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """A small UNet's inference output with the ``offsets`` reference on the CPU and with ``second`` on ``device``."""
    coords = _scene(seed)
    feats = torch.randn(len(coords), 4, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    net = SparseUNet(4, 6, widths=(8, 16), kernel="cube3", backend="torch").eval()
    with torch.no_grad():
        algorithm("offsets")
        ref = net(SparseTensor(feats, coords)).feats
        algorithm(second)
        out = net.to(device)(SparseTensor(feats.to(device), coords.to(device))).feats.cpu()
    return ref, out


def test_unet_inference_agrees_and_auto_keeps_the_reference_for_training(algorithm):
    ref, out = _unet_outputs(algorithm, 3, "gather_gemm")
    assert (ref - out).abs().max().item() < 1e-5 * max(1.0, ref.abs().max().item())
    algorithm("auto")
    x = torch.randn(10, 3)
    w = torch.randn(27, 3, 5, requires_grad=True)
    assert not torch_backend._use_gather_gemm(x, w)  # CPU
    with pytest.raises(ValueError, match="unknown sparse conv algorithm"):
        set_conv_algorithm("fast")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_auto_uses_gather_gemm_for_inference_and_matches_cpu(algorithm):
    algorithm("auto")
    w = torch.randn(27, 3, 5, device="cuda")
    assert torch_backend._use_gather_gemm(torch.randn(4, 3, device="cuda"), w)
    assert not torch_backend._use_gather_gemm(torch.randn(4, 3, device="cuda"), w.requires_grad_())
    ref, out = _unet_outputs(algorithm, 4, "auto", "cuda")
    assert (ref - out).abs().max().item() < 1e-4 * max(1.0, ref.abs().max().item())


def test_offsets_cache_is_per_device_and_ignores_a_default_device_context():
    from gen3d_ros.sparse import Neighbourhood

    n = Neighbourhood.parse("hypercross2")
    with torch.device("meta"):
        assert n.offsets().device.type == "meta"  # the context's default device, not cached
    cpu = n.offsets("cpu")
    assert cpu.device.type == "cpu" and cpu.shape == (n.volume, 3)
    assert n.offsets("cpu") is cpu  # cached: no new host-to-device copy per table
    assert torch.equal(n.offsets(), cpu)
