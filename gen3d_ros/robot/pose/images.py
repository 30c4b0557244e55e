"""The target images of a pose estimate: RGB and robot mask as tensors, masks from the background colour, image
pyramids, the distance-to-silhouette map and a fast 3x3 dilation.

Images are ``[H, W, 3]`` float32 RGB in [0, 1] and ``[H, W]`` float masks (robot = 1), in pixels of the
:class:`~gen3d_ros.geometry.camera.PinholeCamera` they were seen with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gen3d_ros.geometry.camera import PinholeCamera


@dataclass
class Level:
    """The target at one pyramid level: camera, RGB [h, w, 3], mask [h, w] and outside-distance [h, w]."""

    camera: PinholeCamera
    rgb: Tensor
    mask: Tensor
    outside: Tensor


def image_to_tensor(image: np.ndarray | Tensor) -> Tensor:
    """``[H, W, 3]`` float32 in [0, 1] from uint8 (0..255) or float (0..1) RGB."""
    t = torch.as_tensor(np.asarray(image) if not torch.is_tensor(image) else image)
    if t.ndim != 3 or t.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3] RGB, got shape {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        return t.float() / 255.0
    return t.float()


def mask_from_background(rgb: Tensor, background: Sequence[float], threshold: float) -> Tensor:
    """``[H, W]`` float mask of pixels whose colour differs from ``background`` by more than ``threshold``."""
    bg = torch.as_tensor(background, dtype=rgb.dtype, device=rgb.device)
    return ((rgb - bg).abs().amax(dim=-1) > threshold).to(rgb.dtype)


def outside_distance(mask: Tensor) -> Tensor:
    """Euclidean distance (in image widths) from each pixel to the nearest mask pixel; 0 inside the mask."""
    from scipy.ndimage import distance_transform_edt

    m = mask.detach().cpu().numpy() > 0.5
    if not m.any():  # nothing to pull towards: the term is switched off
        return torch.zeros_like(mask)
    dist = distance_transform_edt(~m) / max(mask.shape)
    return torch.as_tensor(dist, dtype=mask.dtype, device=mask.device)


def downsample(image: Tensor, height: int, width: int) -> Tensor:
    """Area-average ``[H, W, C]`` or ``[H, W]`` to ``[height, width, ...]`` (anti-aliased, for pyramids)."""
    squeeze = image.ndim == 2
    x = (image[..., None] if squeeze else image).permute(2, 0, 1)[None]
    if x.shape[-2:] != (height, width):
        x = F.adaptive_avg_pool2d(x, (height, width))
    out = x[0].permute(1, 2, 0)
    return out[..., 0] if squeeze else out


def dilate3(x: Tensor) -> Tensor:
    """3x3 max filter of ``[B, H, W]`` (no padding beyond the image): ``F.max_pool2d(x, 3, 1, 1)`` as two
    separable passes of shifted maxima, the same values ~3x faster on CPU."""
    y = x.clone()
    y[..., 1:] = torch.maximum(y[..., 1:], x[..., :-1])
    y[..., :-1] = torch.maximum(y[..., :-1], x[..., 1:])
    z = y.clone()
    z[..., 1:, :] = torch.maximum(z[..., 1:, :], y[..., :-1, :])
    z[..., :-1, :] = torch.maximum(z[..., :-1, :], y[..., 1:, :])
    return z


def make_level(rgb: Tensor, mask: Tensor, camera: PinholeCamera, scale: float) -> Level:
    """The :class:`Level` of target ``rgb [H, W, 3]`` / ``mask [H, W]`` (seen by ``camera``) at image ``scale``."""
    cam = camera.scaled(scale) if scale != 1.0 else camera
    rgb_s = downsample(rgb, cam.height, cam.width)
    mask_s = downsample(mask, cam.height, cam.width)
    return Level(cam, rgb_s, mask_s, outside_distance(mask_s))


__all__ = ["Level", "dilate3", "downsample", "image_to_tensor", "make_level", "mask_from_background",
           "outside_distance"]
