"""The torch backend on CUDA: same results as on CPU, deterministic. Skipped without a GPU."""

from __future__ import annotations

import pytest
import torch

from gen3d_ros.sparse import CoordinateHash, CoordinateManager, SparseTensor, SparseUNet

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def _coords():
    g = torch.Generator().manual_seed(0)
    occ = torch.rand(2, 24, 24, 8, generator=g) < 0.2
    c = torch.nonzero(occ).int()
    c[:, 1:] -= 10
    return c


@pytest.mark.parametrize("method", ["sorted", "dense"])
def test_cuda_hash_matches_cpu(method):
    c = _coords()
    q = torch.cat([c, c + torch.tensor([0, 1, -1, 0], dtype=torch.int32)])
    cpu = CoordinateHash(c, 1, method).query(q)
    gpu = CoordinateHash(c.cuda(), 1, method).query(q.cuda())
    assert torch.equal(cpu, gpu.cpu())


@pytest.mark.parametrize("method", ["sorted", "dense"])
def test_cuda_unet_matches_cpu_and_is_deterministic(method):
    c = _coords()
    feats = torch.randn(c.shape[0], 3, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    net = SparseUNet(3, 25, widths=(8, 16, 32), kernel="hypercross2", backend="torch")
    outs = []
    for dev in ("cpu", "cuda", "cuda"):
        net.to(dev).zero_grad()
        x = SparseTensor(feats.to(dev), c.to(dev), manager=CoordinateManager(hash_method=method))
        y = net(x)
        y.feats.square().mean().backward()
        outs.append((y.feats.detach().cpu(), net.stem[0].weight.grad.cpu().clone()))
    assert torch.equal(outs[1][0], outs[2][0]) and torch.equal(outs[1][1], outs[2][1])  # deterministic
    for a, b in zip(outs[0], outs[1]):
        assert (a - b).abs().max().item() < 1e-4 * max(1.0, a.abs().max().item())
