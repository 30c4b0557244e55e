"""The keypoint network: a small ResNet-style encoder-decoder giving one heatmap per keypoint and a robot mask.

    net = KeypointNet(num_keypoints=20, width=32)
    heat, mask_logit = net(images)                  # images [B, 3, S, S] in [0, 1]; heat [B, K, S/4, S/4] logits
    uv, conf = decode_heatmaps(heat)                # [B, K, 2] in input pixels (continuous, corner = 0), [B, K]

Each heatmap is a spatial softmax: the network says *where* a keypoint is (trained with cross-entropy against a
Gaussian around the true location), and the probability mass near the peak says how sure it is (occluded or
truncated keypoints spread their mass: low confidence, low weight in PnP). Sub-cell locations come from a parabola
through the log-probabilities at the peak (a Gaussian's logarithm is one). Widths ``w, 2w, 4w, 8w`` at strides 4, 8, 16, with skip
connections back to stride 4; ``width=32`` has 3.1 M parameters (ResNet-18 has 11 M).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class _Block(nn.Module):
    """ResNet basic block (two 3x3 convs, batch norm, identity or 1x1 shortcut)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                      if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.short(x))


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class KeypointNet(nn.Module):
    """Heatmaps ``[B, K, S/4, S/4]`` (logits of a spatial softmax) and a mask logit ``[B, 1, S/4, S/4]`` from
    images ``[B, 3, S, S]`` (RGB in [0, 1]; S a multiple of 16)."""

    def __init__(self, num_keypoints: int, width: int = 32) -> None:
        super().__init__()
        w = width
        self.num_keypoints, self.width = num_keypoints, width
        self.stem = nn.Sequential(_conv(3, w), nn.MaxPool2d(2), _conv(w, w))                # /2
        self.layer1 = nn.Sequential(_Block(w, w, 2), _Block(w, w, 1))                       # /4
        self.layer2 = nn.Sequential(_Block(w, 2 * w, 2), _Block(2 * w, 2 * w, 1))           # /8
        self.layer3 = nn.Sequential(_Block(2 * w, 4 * w, 2), _Block(4 * w, 4 * w, 1))       # /16
        self.layer4 = nn.Sequential(_Block(4 * w, 8 * w, 1), _Block(8 * w, 8 * w, 1))       # /16, wider context
        self.up3 = _conv(8 * w + 2 * w, 2 * w)   # /8: upsampled /16 features + layer2's
        self.up2 = _conv(2 * w + w, 2 * w)       # /4: + layer1's
        self.head = nn.Sequential(_conv(2 * w, 2 * w), nn.Conv2d(2 * w, num_keypoints + 1, 1))
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x = (images - self.mean) / self.std
        f1 = self.layer1(self.stem(x))
        f2 = self.layer2(f1)
        f4 = self.layer4(self.layer3(f2))
        y = self.up3(torch.cat([F.interpolate(f4, size=f2.shape[-2:], mode="bilinear", align_corners=False), f2], 1))
        y = self.up2(torch.cat([F.interpolate(y, size=f1.shape[-2:], mode="bilinear", align_corners=False), f1], 1))
        out = self.head(y)
        return out[:, :-1], out[:, -1:]


def decode_heatmaps(heat: Tensor, stride: int = 4, window: int = 2) -> tuple[Tensor, Tensor]:
    """``(uv [B, K, 2], confidence [B, K])`` from heatmap logits ``[B, K, h, w]``.

    ``uv`` in input-image pixels, continuous (top-left corner = 0, a cell's centre at ``stride * (i + 0.5)``): the
    most likely cell moved by the vertex of a parabola through the log-probabilities of it and its two neighbours
    along each axis (exact for a Gaussian heatmap, unlike a windowed soft-argmax, which is pulled towards the
    window's centre), at most half a cell. ``confidence`` is the softmax mass in the ``(2 window + 1)^2`` cells
    around the peak (1: all of it there; ~0: spread out, keypoint not found).
    """
    B, K, h, w = heat.shape
    logp = torch.log_softmax(heat.reshape(B, K, h * w).float(), dim=-1).reshape(B, K, h, w)
    prob = logp.exp()
    peak = logp.reshape(B, K, -1).argmax(-1)
    py, px = peak // w, peak % w
    bi = torch.arange(B, device=heat.device)[:, None]
    ki = torch.arange(K, device=heat.device)[None, :]

    def at(dy: int, dx: int) -> Tensor:
        return logp[bi, ki, (py + dy).clamp(0, h - 1), (px + dx).clamp(0, w - 1)]

    def vertex(minus: Tensor, centre: Tensor, plus: Tensor, interior: Tensor) -> Tensor:
        curvature = 2 * centre - minus - plus
        off = 0.5 * (plus - minus) / curvature.clamp_min(1e-6)
        return torch.where(interior & (curvature > 1e-6), off.clamp(-0.5, 0.5), torch.zeros_like(off))

    c = at(0, 0)
    du = vertex(at(0, -1), c, at(0, 1), (px > 0) & (px < w - 1))
    dv = vertex(at(-1, 0), c, at(1, 0), (py > 0) & (py < h - 1))
    offs = torch.arange(-window, window + 1, device=heat.device)
    ys, xs = py[..., None] + offs, px[..., None] + offs  # [B, K, n]
    valid = ((ys >= 0) & (ys < h))[..., :, None] & ((xs >= 0) & (xs < w))[..., None, :]
    patch = prob[bi[..., None, None], ki[..., None, None], ys.clamp(0, h - 1)[..., :, None],
                 xs.clamp(0, w - 1)[..., None, :]]
    mass = (patch * valid).sum(dim=(-1, -2))
    uv = torch.stack([px.float() + 0.5 + du, py.float() + 0.5 + dv], dim=-1)
    return uv * stride, mass


def heatmap_targets(uv: Tensor, present: Tensor, size: tuple[int, int], stride: int = 4, sigma: float = 1.0
                    ) -> Tensor:
    """Target distributions ``[B, K, h, w]`` (each sums to 1 where ``present``): a Gaussian of ``sigma`` cells
    around ``uv [B, K, 2]`` (input pixels, continuous) on the ``size = (h, w)`` heatmap grid."""
    h, w = size
    ys = (torch.arange(h, device=uv.device, dtype=torch.float32) + 0.5)
    xs = (torch.arange(w, device=uv.device, dtype=torch.float32) + 0.5)
    cu, cv = uv[..., 0] / stride, uv[..., 1] / stride
    g = torch.exp(-((xs[None, None, None, :] - cu[..., None, None]) ** 2
                    + (ys[None, None, :, None] - cv[..., None, None]) ** 2) / (2 * sigma ** 2))
    g = g * present[..., None, None].float()
    return g / g.sum(dim=(-1, -2), keepdim=True).clamp_min(1e-12)


__all__ = ["KeypointNet", "decode_heatmaps", "heatmap_targets"]
