"""Structural similarity (SSIM, Wang et al. 2004) of images, differentiable, for Dr. Robot's image loss.

The standard settings of 3DGS and most papers: an 11x11 Gaussian window of std-dev 1.5 px, ``C1 = (0.01 L)^2``,
``C2 = (0.03 L)^2`` with data range ``L = 1``, zero padding (``"same"`` size), the mean over pixels and
channels. Images are channels-last like the renderer's: ``[H, W, C]`` or ``[B, H, W, C]`` in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _window(size: int, sigma: float, channels: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Depthwise conv weights ``[C, 1, size, size]`` of a normalised 2D Gaussian."""
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2.0
    g = torch.exp(-(x * x) / (2.0 * sigma * sigma))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim_map(a: Tensor, b: Tensor, window_size: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> Tensor:
    """Per-pixel SSIM ``[B, C, H, W]`` of channels-last images ``a``, ``b`` (``[H, W, C]`` or ``[B, H, W, C]``)."""
    if a.shape != b.shape or a.ndim not in (3, 4):
        raise ValueError(f"ssim needs two [H, W, C] or [B, H, W, C] images of one shape, got {tuple(a.shape)}, "
                         f"{tuple(b.shape)}")
    if a.ndim == 3:
        a, b = a[None], b[None]
    x, y = a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2)
    C = x.shape[1]
    w = _window(window_size, sigma, C, x.dtype, x.device)
    blur = lambda t: F.conv2d(t, w, padding=window_size // 2, groups=C)  # noqa: E731
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))


def ssim(a: Tensor, b: Tensor, window_size: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> Tensor:
    """Mean SSIM (scalar tensor, 1 = identical) of two channels-last images or batches; differentiable."""
    return ssim_map(a, b, window_size, sigma, data_range).mean()


__all__ = ["ssim", "ssim_map"]
