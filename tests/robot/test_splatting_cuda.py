"""gsplat vs pure-torch splatting on CUDA: the same scene must render the same images and gradients.

Skips without CUDA or without gsplat (``pip install gsplat==1.5.3``; its kernels JIT-compile on first use, ~80 s).
bench/splat_agreement.py measures the same agreement (plus speed) and writes bench/results/splat_agreement.json.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gen3d_ros.geometry.camera import PinholeCamera, sample_sphere_cameras
from gen3d_ros.robot.splatting import (
    available_splat_backends,
    expected_depth,
    psnr,
    random_gaussians,
    render_gaussians,
    resolve_splat_backend,
)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def gsplat_ready():
    pytest.importorskip("gsplat")
    assert "gsplat" in available_splat_backends()
    return True


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    return float(a @ b / (a.norm() * b.norm()))


@pytest.mark.parametrize("sh_degree", [0, 3])
def test_backends_agree_on_cuda(gsplat_ready, sh_degree):
    device = torch.device("cuda")
    assert resolve_splat_backend("auto", device) == "gsplat"
    scene = random_gaussians(10_000, seed=1, sh_degree=sh_degree, device=device)
    Ts = torch.tensor(sample_sphere_cameras(4, np.random.default_rng(1)), dtype=torch.float32, device=device)
    cam = PinholeCamera.from_fov(256, 256, 50.0)
    bg = torch.tensor([0.3, 0.4, 0.5], device=device)
    outs, grads = {}, {}
    for backend in ("gsplat", "torch"):
        leaves = {k: v.clone().requires_grad_(True) for k, v in scene.items()}
        T = Ts.clone().requires_grad_(True)
        out = render_gaussians(
            **leaves, T_camera_base=T, camera=cam, background=bg, sh_degree=sh_degree, backend=backend
        )
        assert out.rgb.shape == (4, 256, 256, 3)
        assert out.alpha.shape == (4, 256, 256) and out.depth.shape == (4, 256, 256)
        flat = torch.cat((out.rgb.flatten(), out.alpha.flatten(), 0.3 * out.depth.flatten()))
        W = torch.randn(flat.numel(), generator=torch.Generator().manual_seed(0)).to(device)
        (flat @ W).backward()
        outs[backend] = out
        grads[backend] = {**{k: v.grad for k, v in leaves.items()}, "T": T.grad}
    a, b = outs["gsplat"], outs["torch"]
    report = {
        "psnr_rgb": [psnr(a.rgb[v], b.rgb[v]) for v in range(4)],
        "psnr_alpha": [psnr(a.alpha[v], b.alpha[v]) for v in range(4)],
        "cos": {k: _cosine(grads["gsplat"][k], grads["torch"][k]) for k in grads["gsplat"]},
    }
    print(f"sh{sh_degree}: {report}")
    assert min(report["psnr_rgb"]) >= 40.0, report
    assert min(report["psnr_alpha"]) >= 40.0, report
    assert a.alpha.mean() > 0.2  # the scene covers a good part of every view
    both = (a.alpha > 0.5) & (b.alpha > 0.5)
    assert (expected_depth(a) - expected_depth(b))[both].abs().mean() < 1e-3  # metres
    assert report["cos"]["means"] > 0.99, report
    assert report["cos"]["T"] > 0.99, report
    for k in ("quats", "scales", "opacities", "colors"):
        assert report["cos"][k] > 0.98, report


def test_torch_backend_cuda_matches_cpu():
    """The torch backend alone on CUDA equals itself on CPU (same maths on both devices)."""
    scene = random_gaussians(2000, seed=2, sh_degree=1, dtype=torch.float64)
    T = torch.tensor(sample_sphere_cameras(1, np.random.default_rng(2))[0])
    cam = PinholeCamera.from_fov(64, 48, 50.0)
    cpu = render_gaussians(**scene, T_camera_base=T, camera=cam, backend="torch")
    gpu = render_gaussians(
        **{k: v.cuda() for k, v in scene.items()}, T_camera_base=T.cuda(), camera=cam, backend="torch"
    )
    for name in ("rgb", "alpha", "depth"):
        torch.testing.assert_close(getattr(gpu, name).cpu(), getattr(cpu, name), atol=1e-9, rtol=0)


def test_leading_batch_dimensions_agree_on_cuda(gsplat_ready):
    """``means [B, N, 3]`` with ``T [B, C, 4, 4]`` in one gsplat call equals B separate calls, and the torch backend."""
    device = torch.device("cuda")
    sets = [random_gaussians(3000, seed=10 + b, sh_degree=1, device=device) for b in range(3)]
    batched = {k: torch.stack([s[k] for s in sets]) for k in sets[0]}
    Ts = torch.tensor(sample_sphere_cameras(6, np.random.default_rng(3)), dtype=torch.float32,
                      device=device).reshape(3, 2, 4, 4)
    bg = torch.rand(3, 2, 3, generator=torch.Generator().manual_seed(3)).to(device)
    cam = PinholeCamera.from_fov(96, 80, 50.0)
    out = render_gaussians(**batched, T_camera_base=Ts, camera=cam, background=bg, backend="gsplat")
    assert out.rgb.shape == (3, 2, 80, 96, 3) and out.alpha.shape == (3, 2, 80, 96)
    one_view = render_gaussians(**batched, T_camera_base=Ts[:, 0], camera=cam, background=bg[:, 0], backend="gsplat")
    assert one_view.rgb.shape == (3, 80, 96, 3)
    reference = render_gaussians(**batched, T_camera_base=Ts, camera=cam, background=bg, backend="torch")
    for b in range(3):
        alone = render_gaussians(**sets[b], T_camera_base=Ts[b], camera=cam, background=bg[b], backend="gsplat")
        assert alone.alpha.mean() > 0.1
        for name in ("rgb", "alpha", "depth"):  # the same kernels on the same numbers
            torch.testing.assert_close(getattr(out, name)[b], getattr(alone, name), atol=1e-5, rtol=0)
            torch.testing.assert_close(getattr(one_view, name)[b], getattr(alone, name)[0], atol=1e-5, rtol=0)
        for c in range(2):
            assert psnr(out.rgb[b, c], reference.rgb[b, c]) >= 40.0
            assert psnr(out.alpha[b, c], reference.alpha[b, c]) >= 40.0
