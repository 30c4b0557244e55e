"""The torch backend under ``torch.autocast`` (bf16 on the CPU): it runs, and agrees with float32.

bf16 keeps 8 significant bits (relative rounding 2^-9 ~ 0.2 %): one conv's outputs and gradients should be
within ~1 % of float32 (they are ~0.3 % here). A bug that drops an offset or a gradient term is off by far more.
"""

from __future__ import annotations

import pytest
import torch

from gen3d_ros.sparse import GenerativeConv3d, SparseTensor, SparseUNet, StridedConv3d, SubmanifoldConv3d


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().float() - b.detach()).norm() / b.detach().norm())


@pytest.mark.parametrize("make", [lambda: SubmanifoldConv3d(8, 16, 3, backend="torch"),
                                  lambda: StridedConv3d(8, 16, 2, backend="torch"),
                                  lambda: GenerativeConv3d(8, 16, "hypercross1", backend="torch")],
                         ids=["submanifold", "strided", "generative"])
def test_sparse_conv_under_bf16_autocast_matches_float32(gen, grids, make):
    torch.manual_seed(0)
    conv = make()
    coords = grids.random_coords(gen, 2, 10, 0.3)
    feats = torch.randn(len(coords), 8, generator=gen, requires_grad=True)
    ref = conv(SparseTensor(feats, coords)).feats
    w = torch.randn(ref.shape, generator=gen)  # a loss without the cancellations of a plain sum
    grad_f, grad_w = torch.autograd.grad((ref * w).sum(), [feats, conv.weight])

    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(SparseTensor(feats, coords)).feats
    amp_f, amp_w = torch.autograd.grad((out.float() * w).sum(), [feats, conv.weight])

    assert out.dtype == torch.bfloat16  # the GEMMs ran in bf16, as nn.Linear's would
    assert amp_f.dtype == amp_w.dtype == torch.float32  # gradients reach the float32 leaves in their dtype
    assert _relative(out, ref) < 0.01
    assert _relative(amp_f, grad_f) < 0.01
    assert _relative(amp_w, grad_w) < 0.01


def test_unet_trains_under_bf16_autocast(gen, grids):
    coords = grids.random_coords(gen, 2, 10, 0.2, 1, -5)
    x = torch.randn(len(coords), 3, generator=gen)
    net = SparseUNet(3, 7, widths=(8, 16), kernel=3, backend="torch")
    ref = net(SparseTensor(x, coords)).feats
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(SparseTensor(x, coords)).feats
    out.float().square().mean().backward()
    assert _relative(out, ref) < 0.05  # ~10 layers of bf16 rounding, batch norms in between
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all(), name
