"""What a Dr. Robot training run reports: held-out PSNR/SSIM, the preview image and the loss curves."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gen3d_ros.outputs import save_figure, save_image
from gen3d_ros.robot.gaussians import RobotGaussianModel
from gen3d_ros.robot.splatting import psnr
from gen3d_ros.robot.ssim import ssim
from gen3d_ros.robot.training.config import RobotTrainConfig
from gen3d_ros.robot.training.views import ViewSet

log = logging.getLogger("gen3d_ros.robot.training")


@torch.no_grad()
def evaluate(model: RobotGaussianModel, views: dict[str, Tensor], cfg: RobotTrainConfig) -> dict[str, float]:
    """Mean PSNR (dB, whole image) and SSIM of the model's renders against ``views`` (one render per view)."""
    bg = torch.tensor(cfg.background, device=views["q"].device)
    psnrs, ssims = [], []
    for i in range(len(views["q"])):
        out = model.render(views["q"][i], views["T"][i], cfg.camera, background=bg, backend=cfg.backend)
        gt = views["rgb"][i].float() / 255.0
        psnrs.append(psnr(out.rgb.clamp(0, 1), gt))
        ssims.append(float(ssim(out.rgb.clamp(0, 1), gt)))
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "psnr_min": float(np.min(psnrs))}


def device_name(device: torch.device) -> str:
    """The GPU's name, or ``cpu (<processor>)``: what the metrics report as the training device."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()})"


@torch.no_grad()
def write_preview(model: RobotGaussianModel, views: ViewSet, cfg: RobotTrainConfig, path: Path) -> None:
    """PNG with one row per held-out view: ground truth | render | |difference| (x1, clipped)."""
    from PIL import Image

    device = model.means.device
    bg = torch.tensor(cfg.background, device=device)
    rows = []
    for i in range(min(cfg.preview_views, len(views))):
        out = model.render(torch.as_tensor(views.q[i], device=device),
                           torch.as_tensor(views.T_camera_base[i], device=device), views.camera, background=bg,
                           backend=cfg.backend)
        gt = views.rgb[i].astype(np.float32) / 255.0
        render = out.rgb.clamp(0, 1).cpu().numpy()
        rows.append(np.concatenate([gt, render, np.abs(render - gt)], axis=1))
    save_image(Image.fromarray(np.round(np.concatenate(rows, axis=0) * 255).astype(np.uint8)), path)


def write_curves(history: list[dict[str, Any]], val_curve: list[dict[str, Any]], path: Path) -> bool:
    """Training losses per stage and held-out PSNR against the iteration; False (nothing written) without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no %s", path)
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for stage in ("canonical", "skinning", "joint"):
        pts = [(h["iter"], h["loss"]) for h in history if h["stage"] == stage]
        if pts:
            x, y = zip(*pts)
            ax1.plot(x, y, lw=0.8, label=stage)
    ax1.set_yscale("log")
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("loss (skinning: Chamfer, m²)")
    ax1.legend()
    ax2.plot([v["iter"] for v in val_curve], [v["psnr"] for v in val_curve], "o-")
    ax2.set_xlabel("iteration")
    ax2.set_ylabel("held-out PSNR [dB]")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)
    return True


__all__ = ["device_name", "evaluate", "write_curves", "write_preview"]
