"""``train_robot``: one Dr. Robot training run, from a config to a run folder.

    cfg = robot_train_config("tiny", overrides={"joint_iters": 300})
    metrics = train_robot(cfg, Path("runs/drrobot_tiny"))          # or: gen3d train-robot --preset tiny -o ...

Outputs in the run folder: ``model.pt`` (checkpoint, see :meth:`RobotGaussianModel.save`), ``metrics.json``,
``preview.png`` (rows of ground truth | render | |difference|, held-out poses), ``curves.png`` (losses and
validation PSNR; needs matplotlib), ``config.json``; all written atomically and marked as gen3d_ros outputs
(:mod:`gen3d_ros.outputs`), the folder too (``.gen3d_output``). View caches in ``data/`` (:mod:`.views`).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from gen3d_ros.devices import check_device
from gen3d_ros.outputs import OutputError, write_json
from gen3d_ros.robot.description import load_robot
from gen3d_ros.robot.gaussians import RobotGaussianModel
from gen3d_ros.robot.splatting import resolve_splat_backend
from gen3d_ros.robot.training.config import RobotTrainConfig
from gen3d_ros.robot.training.report import device_name, write_curves, write_preview
from gen3d_ros.robot.training.run_folder import run_folder
from gen3d_ros.robot.training.stages import Stages
from gen3d_ros.robot.training.views import ViewSet, load_or_render_views, views_to_device
from gen3d_ros.robot.urdf import RobotModel


def train_robot(
    cfg: RobotTrainConfig, out_dir: Path, robot: RobotModel | None = None, data_dir: Path | None = None,
) -> dict[str, Any]:
    """Train a model with ``cfg``; write checkpoint, metrics, previews into ``out_dir``; return the metrics.

    ``robot``: the loaded URDF (default ``load_robot(cfg.urdf)``). ``data_dir``: view caches (default
    ``out_dir/data``); must hold matching caches where open3d is missing.

    The config, device, splatting backend and robot are checked before ``out_dir`` is touched, so a bad URDF or
    setting leaves nothing behind. A folder this call creates is marked as a gen3d_ros output and, if the
    training then fails (or is interrupted), removed again; in a folder that existed before, only what this call
    added is removed. Existing run files are replaced only when gen3d_ros wrote them (``OutputError`` otherwise);
    every file is written atomically (:mod:`gen3d_ros.outputs`).
    """
    out_dir = Path(out_dir)
    cfg.validate()
    device = torch.device(check_device(cfg.device))  # DeviceError (a ValueError) naming what is missing
    resolve_splat_backend(cfg.backend, device)  # an unknown backend, or gsplat without CUDA, fails here
    robot = robot if robot is not None else load_robot(cfg.urdf)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"run folder {out_dir} exists and is not a folder; choose another --output")
    with run_folder(out_dir, inputs=[robot.source_path]):
        return _train(cfg, out_dir, robot, device, Path(data_dir) if data_dir else out_dir / "data")


def _train(cfg: RobotTrainConfig, out_dir: Path, robot: RobotModel, device: torch.device,
           data_dir: Path) -> dict[str, Any]:
    """The body of :func:`train_robot`, once the inputs are checked and the run folder is ready."""
    torch.manual_seed(cfg.seed)
    write_json(out_dir / "config.json", dataclasses.asdict(cfg))
    t_data = time.perf_counter()
    views = load_or_render_views(robot, cfg, data_dir)
    t_data = time.perf_counter() - t_data
    data = {k: views_to_device(v, device) for k, v in views.items()}
    model = RobotGaussianModel.from_robot(robot, **dataclasses.asdict(cfg.model)).to(device)
    result = Stages(model, robot, cfg, data, device).run()
    metrics = _metrics(cfg, robot, model, device, views, result, t_data)
    model.save(out_dir / "model.pt",  # atomic: RobotGaussianModel.save uses outputs.save_torch
               extra={"train_config": dataclasses.asdict(cfg)},
               metrics={k: v for k, v in metrics.items() if k != "val_curve"})
    metrics["checkpoint_bytes"] = (out_dir / "model.pt").stat().st_size
    write_preview(model, views["val"], cfg, out_dir / "preview.png")
    write_curves(result["history"], metrics["val_curve"], out_dir / "curves.png")
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def _metrics(cfg: RobotTrainConfig, robot: RobotModel, model: RobotGaussianModel, device: torch.device,
             views: dict[str, ViewSet], result: dict[str, Any], t_data: float) -> dict[str, Any]:
    """``metrics.json``: the robot, device and size, held-out PSNR/SSIM (dB, whole image) before training, after
    the canonical stage and at the end, seconds and iterations per stage, the validation curve."""
    init, final = result["init"], result["final"]
    return {
        "robot": robot.name, "urdf_sha256": robot.urdf_sha256, "device": device_name(device),
        "torch": torch.__version__, "n_gaussians": model.num_gaussians, "sh_degree": model.sh_degree,
        "image_size": cfg.image_size, "psnr_heldout": final["psnr"], "ssim_heldout": final["ssim"],
        "psnr_heldout_min": final["psnr_min"], "psnr_init": init["psnr"], "ssim_init": init["ssim"],
        "psnr_after_canonical": result["after_canonical"]["psnr"], "val_views": len(views["val"]),
        "seconds": {"data": round(t_data, 2), **{k: round(v, 2) for k, v in result["seconds"].items()}},
        "iterations": result["iterations"],
        "val_curve": result["val_curve"],
    }


__all__ = ["train_robot"]
