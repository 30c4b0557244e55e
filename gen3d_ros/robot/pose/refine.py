"""Gradient refinement of pose hypotheses through the differentiable renderer.

Joints are ``q = lower + (upper - lower) sigmoid(z)`` (limits by construction) and the camera is an axis-angle
increment on a base rotation about the robot's centre plus that centre's camera-frame position
(:mod:`gen3d_ros.robot.parametrization`); Adam with one learning rate per quantity, decaying exponentially over a
level. Frames and units: ``q`` rad / m; ``T_camera_base`` base -> OpenCV camera, metres.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gen3d_ros.robot.parametrization import CameraPoseParam, joints_from_unconstrained, unconstrained_from_joints
from gen3d_ros.robot.pose.config import PoseEstimate, PoseEstimatorConfig
from gen3d_ros.robot.pose.images import Level
from gen3d_ros.robot.pose.losses import image_loss_terms, smoothness_penalty
from gen3d_ros.robot.pose.surface import PosedSurface


@dataclass
class PoseState:
    """A batch of ``B`` hypotheses being optimised (only the free parts get an optimiser)."""

    z: Tensor  # [B, J] joint logits
    cam: CameraPoseParam


class PoseRefiner:
    """Scores and refines batches of hypotheses of ``model`` (anything with ``render(q, T_camera_base, camera,
    background, backend)``) against a target :class:`~gen3d_ros.robot.pose.images.Level`.

    ``background [3]``: RGB the robot is rendered on; ``surface``: the posed surface samples (the camera's pivot).
    """

    def __init__(self, model, config: PoseEstimatorConfig, surface: PosedSurface, background: Tensor,
                 device: torch.device) -> None:
        self.model = model
        self.config = config
        self.surface = surface
        self.background = background
        self.device = device
        self.joint_names: list[str] = list(model.fk.joint_names)
        self.lower = model.fk.lower.to(device)
        self.upper = model.fk.upper.to(device)

    def make_state(self, q: Tensor, T: Tensor) -> PoseState:
        """The :class:`PoseState` of joints ``q [B, J]`` and cameras ``T [B, 4, 4]`` (pivot: the posed surface's
        centroid)."""
        z = unconstrained_from_joints(q, self.lower, self.upper).detach().clone()
        return PoseState(z=z, cam=CameraPoseParam(T, self.surface.pivot(q).detach()).to(self.device))

    def select(self, state: PoseState, index: Tensor) -> PoseState:
        """The hypotheses at ``index`` (detached copies)."""
        index = index.to(self.device)
        return PoseState(z=state.z[index].detach().clone(), cam=state.cam.select(index))

    def joints(self, state: PoseState) -> Tensor:
        """``q [B, J]`` of ``state``."""
        return joints_from_unconstrained(state.z, self.lower, self.upper)

    def render_losses(self, state: PoseState, level: Level) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss ``[B]`` and its weighted terms of every hypothesis rendered at ``level``."""
        out = self.model.render(self.joints(state), state.cam(), level.camera, background=self.background,
                                backend=self.config.backend)
        cfg = self.config
        terms = image_loss_terms(out.rgb, out.alpha, level, cfg.w_rgb, cfg.w_mask, cfg.w_outside)
        return sum(terms.values()), terms

    @torch.no_grad()
    def score(self, state: PoseState, level: Level, chunk: int = 16) -> Tensor:
        """Loss ``[B]`` of every hypothesis at ``level`` (forward renders only, in chunks to bound memory)."""
        losses = []
        for start in range(0, state.z.shape[0], chunk):
            idx = torch.arange(start, min(start + chunk, state.z.shape[0]))
            losses.append(self.render_losses(self.select(state, idx), level)[0].cpu())
        return torch.cat(losses)

    def _param_groups(self, state: PoseState, optimise_q: bool, optimise_T: bool,
                      lr_scale: float) -> list[dict]:
        """Adam groups of the free parts of ``state`` (the rest get no gradient)."""
        cfg = self.config
        groups = []
        if optimise_q:
            state.z.requires_grad_(True)
            groups.append({"params": [state.z], "lr": cfg.lr_joints * lr_scale})
        if optimise_T:
            groups += [{"params": [state.cam.omega], "lr": cfg.lr_rotation * lr_scale},
                       {"params": [state.cam.t_c], "lr": cfg.lr_translation * lr_scale}]
        else:
            state.cam.requires_grad_(False)
        return groups

    def optimise(
        self,
        state: PoseState,
        level: Level,
        iterations: int,
        optimise_q: bool,
        optimise_T: bool,
        prior: tuple[Tensor, Tensor, Tensor] | None = None,
        lr_scale: float = 1.0,
    ) -> tuple[PoseState, Tensor, int, bool]:
        """Adam on the free parameters; returns (the best state seen per hypothesis, its loss [B], steps, converged).

        ``prior = (q_prev [B, J], R_prev [B, 3, 3], pivot_prev [B, 3])`` adds the smoothness penalty towards it.
        """
        cfg = self.config
        groups = self._param_groups(state, optimise_q, optimise_T, lr_scale)
        B = state.z.shape[0]
        best_loss = torch.full((B,), float("inf"))
        best_z, best_T = state.z.detach().clone(), state.cam().detach().clone()
        if not groups or iterations == 0:
            with torch.no_grad():
                loss, _ = self.render_losses(state, level)
            return state, loss.cpu(), 0, True
        opt = torch.optim.Adam(groups)
        # Exponential decay to lr_decay x the start over the level: large steps to travel, small ones to settle
        # (Adam's steps are ~lr whatever the gradient, so a constant lr would keep circling the minimum).
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.lr_decay ** (1.0 / max(iterations, 1)))
        history: list[float] = []
        converged, used = False, 0
        for _ in range(iterations):
            opt.zero_grad(set_to_none=True)
            loss, _ = self.render_losses(state, level)
            if prior is not None:
                loss = loss + smoothness_penalty(self.joints(state), state.cam.rotation(), state.cam.t_c, prior,
                                                 cfg.w_smooth_joints, cfg.w_smooth_camera)
            # Track the best parameters per hypothesis (the loss belongs to the parameters before this step).
            with torch.no_grad():
                better = loss.detach().cpu() < best_loss
                if better.any():
                    idx = better.nonzero()[:, 0].to(self.device)
                    best_loss[better] = loss.detach().cpu()[better]
                    best_z[idx] = state.z.detach()[idx]
                    best_T[idx] = state.cam().detach()[idx]
            loss.sum().backward()
            opt.step()
            sched.step()
            used += 1
            history.append(float(best_loss.min()))
            if len(history) > cfg.patience:
                old = history[-1 - cfg.patience]
                if old - history[-1] <= cfg.tolerance * abs(old):
                    converged = True
                    break
        pivot = state.cam.pivot.detach()
        return PoseState(z=best_z, cam=CameraPoseParam(best_T, pivot)), best_loss, used, converged

    def result(
        self, state: PoseState, level: Level, iterations: int, converged: bool, seconds: float, hypotheses: int
    ) -> PoseEstimate:
        """The :class:`PoseEstimate` of the first hypothesis of ``state``, its loss rendered at ``level``."""
        with torch.no_grad():
            loss, terms = self.render_losses(state, level)
            q = self.joints(state)
            T = state.cam()
        return PoseEstimate(
            q=q[0].double().cpu().numpy(),
            T_camera_base=T[0].double().cpu().numpy(),
            loss=float(loss[0]),
            iterations=int(iterations),
            converged=bool(converged),
            seconds=float(seconds),
            joint_names=list(self.joint_names),
            loss_terms={k: float(v[0]) for k, v in terms.items()},
            hypotheses=int(hypotheses),
        )


__all__ = ["PoseRefiner", "PoseState"]
