"""The three stages of Dr. Robot training (Liu et al.), each an Adam loop over its own parameters:

a. **canonical**: the Gaussians' own parameters (means, orientations, scales, opacities, colours) on images of the
   robot at its neutral pose, cameras all around it (skinning plays no part at the neutral pose).
b. **skinning**: the skinning MLP alone, fitted so that the posed Gaussian means match the posed mesh surface
   (Chamfer distance, squared metres) at random joint values: no images needed, so it is cheap.
c. **joint**: everything (Gaussians, skinning, appearance deformation) end to end on images of random poses
   (:func:`~gen3d_ros.robot.training.losses.image_loss`).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from gen3d_ros.geometry.chamfer import chamfer_distance
from gen3d_ros.robot.gaussians import RobotGaussianModel
from gen3d_ros.robot.meshes import sample_surface
from gen3d_ros.robot.training.config import RobotTrainConfig
from gen3d_ros.robot.training.losses import chamfer_l2, image_loss
from gen3d_ros.robot.training.report import evaluate
from gen3d_ros.robot.urdf import RobotModel

log = logging.getLogger("gen3d_ros.robot.training")


def gaussian_groups(model: RobotGaussianModel, cfg: RobotTrainConfig) -> list[dict[str, Any]]:
    """Adam parameter groups of the Gaussians' own parameters (higher SH bands at lr/20, as in 3DGS)."""
    return [
        {"params": [model.means], "lr": cfg.lr_means, "name": "means"},
        {"params": [model.quats], "lr": cfg.lr_quats, "name": "quats"},
        {"params": [model.log_scales], "lr": cfg.lr_scales, "name": "scales"},
        {"params": [model.opacity_logits], "lr": cfg.lr_opacity, "name": "opacity"},
        # The DC term of SH is in units of rgb / SH_C0 (~3.5x rgb): scale the lr so lr_color is in RGB units.
        {"params": [model.sh], "lr": cfg.lr_color / 0.28209479, "name": "sh"},
    ]


def run_stage(
    name: str, iters: int, params: list[dict[str, Any]], step: Callable[[int], Tensor], cfg: RobotTrainConfig,
    history: list[dict[str, Any]], on_val: Callable[[int], None] | None = None, offset: int = 0,
    deadline: float = math.inf,
) -> tuple[float, int]:
    """Adam over ``params`` for ``iters`` steps of ``step(i) -> loss`` with exponential lr decay, stopping early at
    ``deadline`` (``time.perf_counter()`` value); returns (seconds, iterations done)."""
    from tqdm import tqdm

    if iters == 0 or not params:
        return 0.0, 0
    opt = torch.optim.Adam(params, eps=1e-15)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: cfg.lr_final_factor ** (i / max(iters, 1)))
    t0 = time.perf_counter()
    bar = tqdm(range(iters), desc=f"stage {name}", unit="it", leave=False, mininterval=1.0)
    done = 0
    for i in bar:
        if time.perf_counter() > deadline:
            log.warning("stage %s stopped at the time budget after %d of %d iterations", name, i, iters)
            break
        opt.zero_grad(set_to_none=True)
        loss = step(i)
        loss.backward()
        opt.step()
        sched.step()
        done += 1
        value = loss.item()
        history.append({"stage": name, "iter": offset + i, "loss": value})
        if i % 10 == 0:
            bar.set_postfix(loss=f"{value:.4f}")
        if on_val is not None and (i + 1) % cfg.val_every == 0 and i + 1 < iters:
            on_val(offset + i + 1)
    return time.perf_counter() - t0, done


class Stages:
    """The stages of one training run over ``data`` (``{"canonical", "train", "val"}`` view tensors on ``device``,
    see :func:`~gen3d_ros.robot.training.views.views_to_device`), with the loss history, the validation curve and
    one batch generator (seeded by ``cfg.seed``) shared by every stage, in order."""

    def __init__(self, model: RobotGaussianModel, robot: RobotModel, cfg: RobotTrainConfig,
                 data: dict[str, dict[str, Tensor]], device: torch.device) -> None:
        self.model, self.robot, self.cfg, self.data, self.device = model, robot, cfg, data, device
        self.background = torch.tensor(cfg.background, device=device)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.history: list[dict[str, Any]] = []  # {"stage", "iter", "loss"} per step
        self.val_curve: list[dict[str, Any]] = []  # {"iter", "psnr", "ssim", "psnr_min"} per validation
        self.image_iters = 0  # canonical + joint image iterations so far (drives the SH schedule)

    def validate(self, it: int) -> dict[str, float]:
        """Held-out PSNR/SSIM after ``it`` iterations, appended to :attr:`val_curve` and logged."""
        m = evaluate(self.model, self.data["val"], self.cfg)
        self.val_curve.append({"iter": it, **m})
        log.info("iter %d: held-out PSNR %.2f dB, SSIM %.4f", it, m["psnr"], m["ssim"])
        return m

    def image_step(self, views: dict[str, Tensor]) -> Callable[[int], Tensor]:
        """The loss of one random batch of ``views`` rendered at their poses (SH bands switched on over time)."""
        model, cfg = self.model, self.cfg

        def step(_: int) -> Tensor:
            model.active_sh_degree = min(model.sh_degree, self.image_iters // max(cfg.sh_increase_every, 1))
            self.image_iters += 1
            idx = torch.randint(len(views["q"]), (cfg.batch_views,), generator=self.generator).to(self.device)
            out = model.render(views["q"][idx], views["T"][idx], cfg.camera, background=self.background,
                               backend=cfg.backend)
            return image_loss(out.rgb, out.alpha, views["rgb"][idx].float() / 255.0, views["mask"][idx], cfg)
        return step

    def skin_step(self) -> Callable[[int], Tensor]:
        """The Chamfer distance (m^2) between the posed Gaussian means and the posed mesh surface at random poses.

        The targets are a fixed set of surface samples, in their links' frames, posed by FK at each step."""
        model, cfg, device = self.model, self.cfg, self.device
        surf = sample_surface(self.robot, cfg.chamfer_points, np.random.default_rng(cfg.seed + 1))
        surf_pts = torch.as_tensor(surf.points, dtype=torch.float32, device=device)
        surf_link = torch.as_tensor(surf.link_index, device=device)
        # geometry.chamfer_distance's torch kNN is the fast one on CPU, dense cdist is the fast one on CUDA
        chamfer = chamfer_l2 if device.type == "cuda" else chamfer_distance

        def step(_: int) -> Tensor:
            q = model.fk.sample(cfg.skinning_poses, self.generator).to(device)
            T = model.fk(q)[:, surf_link]  # [B, M, 4, 4]
            target = (T[..., :3, :3] @ surf_pts[..., None])[..., 0] + T[..., :3, 3]
            return chamfer(model.posed_means(q), target)
        return step

    def run(self) -> dict[str, Any]:
        """Validation, the three stages, validation after each; returns ``{"init", "after_canonical", "final"}``
        metrics, ``"seconds"`` and ``"iterations"`` per stage, the loss ``"history"`` and the ``"val_curve"``.
        ``cfg.time_budget_s`` > 0 stops the stages early."""
        model, cfg = self.model, self.cfg
        init = self.validate(0)
        skin_step = self.skin_step()
        times, done = {}, {}
        deadline = time.perf_counter() + cfg.time_budget_s if cfg.time_budget_s > 0 else math.inf
        times["canonical"], done["canonical"] = run_stage(
            "canonical", cfg.canonical_iters, gaussian_groups(model, cfg), self.image_step(self.data["canonical"]),
            cfg, self.history, deadline=deadline)
        it0 = done["canonical"]
        after_canonical = self.validate(it0)
        skin_params = [{"params": list(model.skin_mlp.parameters()), "lr": cfg.lr_mlp}] if model.skin_mlp else []
        times["skinning"], done["skinning"] = run_stage(
            "skinning", cfg.skinning_iters, skin_params, skin_step, cfg, self.history, offset=it0, deadline=deadline)
        it0 += done["skinning"]
        mlp_params = [p for mod in (model.skin_mlp, model.appearance_mlp) if mod is not None for p in mod.parameters()]
        joint_groups = gaussian_groups(model, cfg) + ([{"params": mlp_params, "lr": cfg.lr_mlp}] if mlp_params else [])
        times["joint"], done["joint"] = run_stage(
            "joint", cfg.joint_iters, joint_groups, self.image_step(self.data["train"]), cfg, self.history,
            on_val=self.validate, offset=it0, deadline=deadline)
        it0 += done["joint"]
        model.active_sh_degree = model.sh_degree  # evaluate and save with every band
        final = self.validate(it0)
        return {"init": init, "after_canonical": after_canonical, "final": final, "seconds": times,
                "iterations": done, "history": self.history, "val_curve": self.val_curve}


__all__ = ["Stages", "gaussian_groups", "run_stage"]
