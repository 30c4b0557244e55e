"""Gradient refinement of pose hypotheses through the differentiable renderer.

Joints are ``q = lower + (upper - lower) sigmoid(z)`` (limits by construction) and the camera is an axis-angle
increment on a base rotation about the robot's centre plus that centre's camera-frame position
(:mod:`gen3d_ros.robot.parametrization`); Adam with one learning rate per quantity, decaying exponentially over a
level. Frames and units: ``q`` rad / m; ``T_camera_base`` base -> OpenCV camera, metres.

The inner loop is written for GPUs, where every eager op costs a kernel launch and every host read stalls the
queue: the free parameters are one tensor ``[B, J + 6]`` (joint logits, rotation increment, pivot position) with
one hand-written Adam update (:class:`_Adam`), the best state per hypothesis is kept on the device with
``torch.where`` (no ``.item()``, ``.cpu()`` or ``nonzero``), and the convergence test reads its device-side history
only every ``check_every`` steps (:class:`_ConvergenceTest`; :data:`CHECK_EVERY` when tracking).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from gen3d_ros.robot.parametrization import (CameraPoseParam, camera_from_pivot, joints_from_unconstrained,
                                             unconstrained_from_joints)
from gen3d_ros.robot.pose.config import PoseEstimate, PoseEstimatorConfig
from gen3d_ros.robot.pose.images import Level
from gen3d_ros.robot.pose.losses import TERMS, image_losses, smoothness_penalty
from gen3d_ros.robot.pose.surface import PosedSurface


CHECK_EVERY = 4
"""Steps between reads of the convergence test of :meth:`PoseRefiner.optimise` (after the first read at
``patience + 1`` steps), unless the caller says otherwise. Each read waits for the device; the result is the best
state seen, so reading later never makes it worse (at most ``CHECK_EVERY - 1`` steps more than stopping at the
first step that passes, which 1 does). A tracked frame (12 steps, patience 8) reads once, after step 9."""


@dataclass
class PoseState:
    """A batch of ``B`` hypotheses: joint logits and the camera parametrisation."""

    z: Tensor  # [B, J] joint logits
    cam: CameraPoseParam


@dataclass
class Refined:
    """What :meth:`PoseRefiner.optimise` returns, on the device: the best ``state`` seen per hypothesis, its
    ``loss [B]`` (with the smoothness prior when there was one) and image loss ``terms [B, 3]`` (order
    :data:`~gen3d_ros.robot.pose.losses.TERMS`, weighted), the Adam ``steps`` run and whether the convergence test
    was met."""

    state: PoseState
    loss: Tensor
    terms: Tensor
    steps: int
    converged: bool


class _Adam:
    """``torch.optim.Adam``'s update (betas 0.9 / 0.999, eps 1e-8, no weight decay, no amsgrad) of one tensor with a
    learning rate per element ``lr`` (broadcast over it) times ``gamma`` per step (``ExponentialLR``): 8 ops a
    step, nothing re-created, no host sync."""

    BETAS = (0.9, 0.999)
    EPS = 1e-8

    def __init__(self, x: Tensor, lr: Tensor, gamma: float) -> None:
        self.m = torch.zeros_like(x)
        self.v = torch.zeros_like(x)
        self.lr = lr
        self.gamma = gamma
        self.t = 0

    @torch.no_grad()
    def step(self, x: Tensor, grad: Tensor) -> None:
        """Update ``x`` in place from its gradient ``grad``."""
        self.t += 1
        b1, b2 = self.BETAS
        self.m.lerp_(grad, 1.0 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1.0 - b2)
        denom = (self.v.sqrt() / math.sqrt(1.0 - b2 ** self.t)).add_(self.EPS)
        x.addcdiv_(self.m * self.lr, denom, value=-(self.gamma ** (self.t - 1)) / (1.0 - b1 ** self.t))


class _Best:
    """The best loss ``[B]``, its image terms ``[B, 3]`` and parameters ``[B, D]`` seen so far, on the device."""

    def __init__(self, x: Tensor) -> None:
        self.loss = torch.full(x.shape[:1], float("inf"), dtype=x.dtype, device=x.device)
        self.terms = torch.zeros(x.shape[0], len(TERMS), dtype=x.dtype, device=x.device)
        self.x = x.detach().clone()

    @torch.no_grad()
    def update(self, loss: Tensor, terms: Tensor, x: Tensor) -> None:
        """Keep, per hypothesis, whichever of the best so far and ``(loss, terms, x)`` has the lower loss."""
        better = loss < self.loss
        self.loss = torch.where(better, loss, self.loss)
        self.terms = torch.where(better[:, None], terms, self.terms)
        self.x = torch.where(better[:, None], x, self.x)


class _ConvergenceTest:
    """The config's test, "the best loss improved by less than ``tolerance`` (relative) over ``patience`` steps",
    on a device-side history of the best loss that is read (one host sync) only at the first step that can pass
    and every ``every`` steps after; :meth:`met` at the end looks at the steps since the last read."""

    def __init__(self, config: PoseEstimatorConfig, iterations: int, device: torch.device,
                 every: int = CHECK_EVERY) -> None:
        self.patience, self.tolerance, self.every = config.patience, config.tolerance, every
        self.iterations = iterations
        self.history = torch.full((iterations,), float("inf"), device=device)
        self.read = 0  # steps whose history was looked at

    def record(self, step: int, best_loss: Tensor) -> None:
        """The best loss over hypotheses ``best_loss [B]`` after ``step`` (0-based) steps, kept on the device."""
        self.history[step] = best_loss.detach().min()

    def due(self, steps: int) -> bool:
        """Whether to read the history after ``steps`` steps (never after the last one: the loop ends anyway)."""
        first = self.patience + 1
        return first <= steps < self.iterations and (steps - first) % self.every == 0

    def met(self, steps: int) -> bool:
        """Whether the test passed at any step up to ``steps`` (reads the history: a host sync)."""
        h = self.history[:steps].tolist()
        start, self.read = max(self.read, self.patience), steps
        return any(h[j - self.patience] - h[j] <= self.tolerance * abs(h[j - self.patience])
                   for j in range(start, steps))


class PoseRefiner:
    """Scores and refines batches of hypotheses of ``model`` (anything with ``render(q, T_camera_base, camera,
    background, backend)``; a :class:`~gen3d_ros.robot.gaussians.FrozenGaussianRenderer` renders fastest) against a
    target :class:`~gen3d_ros.robot.pose.images.Level`.

    ``background [3]``: RGB the robot is rendered on; ``surface``: the posed surface samples (the camera's pivot);
    ``cuda_graphs``: on CUDA, run the parameters -> Gaussians and camera part of each Adam step as CUDA graphs
    (:class:`~gen3d_ros.robot.pose.graphs.PoseGraphs`; needs a frozen renderer, joints and camera both free).
    """

    def __init__(self, model, config: PoseEstimatorConfig, surface: PosedSurface, background: Tensor,
                 device: torch.device, cuda_graphs: bool = False) -> None:
        self.model = model
        self.config = config
        self.surface = surface
        self.background = background
        self.device = device
        self.joint_names: list[str] = list(model.fk.joint_names)
        self.lower = model.fk.lower.to(device)
        self.upper = model.fk.upper.to(device)
        self._rates: dict[tuple[bool, bool, float], Tensor] = {}
        self.graphs = None
        self.loss_graphs = None
        if cuda_graphs and device.type == "cuda" and hasattr(model, "render_posed"):
            from gen3d_ros.robot.pose.graphs import LossGraphs, PoseGraphs, loss_graphs_enabled

            self.graphs = PoseGraphs(model, self.lower, self.upper)
            if loss_graphs_enabled():
                self.loss_graphs = LossGraphs((config.w_rgb, config.w_mask, config.w_outside, config.w_smooth_joints,
                                               config.w_smooth_camera))

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

    def render_terms(self, q: Tensor, T: Tensor, level: Level) -> Tensor:
        """Weighted image loss terms ``[B, 3]`` of joints ``q [B, J]`` seen from ``T [B, 4, 4]`` at ``level``."""
        cfg = self.config
        out = self.model.render(q, T, level.camera, background=self.background, backend=cfg.backend)
        return image_losses(out.rgb, out.alpha, level, cfg.w_rgb, cfg.w_mask, cfg.w_outside)

    def render_losses(self, state: PoseState, level: Level) -> tuple[Tensor, Tensor]:
        """Total loss ``[B]`` and its weighted terms ``[B, 3]`` of every hypothesis rendered at ``level``."""
        terms = self.render_terms(self.joints(state), state.cam(), level)
        return terms.sum(-1), terms

    @torch.no_grad()
    def score(self, state: PoseState, level: Level, chunk: int = 16) -> Tensor:
        """Loss ``[B]`` (on the device) of every hypothesis at ``level`` (forward renders only, in chunks to bound
        memory)."""
        losses = []
        for start in range(0, state.z.shape[0], chunk):
            idx = torch.arange(start, min(start + chunk, state.z.shape[0]))
            losses.append(self.render_losses(self.select(state, idx), level)[0])
        return torch.cat(losses)

    def learning_rates(self, optimise_q: bool, optimise_T: bool, lr_scale: float) -> Tensor:
        """Adam's rate per parameter ``[J + 6]`` (joint logits, rotation, translation; 0 for the fixed ones), made on
        the device once per combination."""
        key = (optimise_q, optimise_T, float(lr_scale))
        if key not in self._rates:
            cfg, J = self.config, len(self.joint_names)
            rates = [cfg.lr_joints * optimise_q] * J + [cfg.lr_rotation * optimise_T] * 3 \
                + [cfg.lr_translation * optimise_T] * 3
            self._rates[key] = torch.tensor(rates, dtype=torch.float32, device=self.device) * lr_scale
        return self._rates[key]

    def _loss(self, x: Tensor, cam: CameraPoseParam, level: Level, fixed_q: Tensor | None, fixed_T: Tensor | None,
              prior: tuple[Tensor, Tensor, Tensor] | None) -> tuple[Tensor, Tensor]:
        """``(loss [B], image terms [B, 3])`` of the parameters ``x = [z, omega, t_c]`` (``fixed_q``/``fixed_T``:
        the parts that are not optimised)."""
        cfg = self.config
        z, omega, t_c = x.split((x.shape[1] - 6, 3, 3), dim=-1)
        if self.graphs is not None and fixed_q is None and fixed_T is None:
            gaussians, T, R, q = self.graphs(x, cam.R0, cam.pivot)
            out = self.model.render_posed(gaussians, T, level.camera, background=self.background, backend=cfg.backend)
            if self.loss_graphs is not None:
                return self.loss_graphs(out.rgb, out.alpha, level, q, R, t_c, prior)
            terms = image_losses(out.rgb, out.alpha, level, cfg.w_rgb, cfg.w_mask, cfg.w_outside)
        else:
            q = joints_from_unconstrained(z, self.lower, self.upper) if fixed_q is None else fixed_q
            T, R = camera_from_pivot(omega, t_c, cam.R0, cam.pivot) if fixed_T is None else \
                (fixed_T, fixed_T[:, :3, :3])
            terms = self.render_terms(q, T, level)
        loss = terms.sum(-1)
        if prior is not None:
            loss = loss + smoothness_penalty(q, R, t_c, prior, cfg.w_smooth_joints, cfg.w_smooth_camera)
        return loss, terms

    def optimise(
        self,
        state: PoseState,
        level: Level,
        iterations: int,
        optimise_q: bool,
        optimise_T: bool,
        prior: tuple[Tensor, Tensor, Tensor] | None = None,
        lr_scale: float = 1.0,
        check_every: int = CHECK_EVERY,
    ) -> Refined:
        """Adam on the free parameters; the best state seen per hypothesis (see :class:`Refined`).

        ``prior = (q_prev [B, J], R_prev [B, 3, 3], pivot_prev [B, 3])`` adds the smoothness penalty towards it.
        Host syncs: one per convergence read, every ``check_every`` steps (see :data:`CHECK_EVERY`), none per step
        otherwise.
        """
        if iterations == 0 or not (optimise_q or optimise_T):
            with torch.no_grad():
                loss, terms = self.render_losses(state, level)
            return Refined(state, loss, terms, 0, True)
        cam = state.cam
        x = torch.cat([state.z, cam.omega, cam.t_c], dim=-1).detach().requires_grad_(True)  # [B, J + 6]
        fixed_q = None if optimise_q else self.joints(state).detach()
        fixed_T = None if optimise_T else cam().detach()
        # Exponential decay to lr_decay x the start over the level: large steps to travel, small ones to settle
        # (Adam's steps are ~lr whatever the gradient, so a constant lr would keep circling the minimum).
        adam = _Adam(x, self.learning_rates(optimise_q, optimise_T, lr_scale),
                     self.config.lr_decay ** (1.0 / iterations))
        best, test = _Best(x), _ConvergenceTest(self.config, iterations, x.device, check_every)
        steps, converged = 0, False
        while steps < iterations and not converged:
            loss, terms = self._loss(x, cam, level, fixed_q, fixed_T, prior)
            best.update(loss.detach(), terms.detach(), x)  # the loss belongs to the parameters before this step
            test.record(steps, best.loss)
            (grad,) = torch.autograd.grad(loss.sum(), x)
            adam.step(x, grad)
            steps += 1
            converged = test.due(steps) and test.met(steps)
        converged = converged or test.met(steps)
        return Refined(self._state_of(best.x, cam), best.loss, best.terms, steps, converged)

    @torch.no_grad()
    def _state_of(self, x: Tensor, cam: CameraPoseParam) -> PoseState:
        """The :class:`PoseState` of parameters ``x = [z, omega, t_c]`` on ``cam``'s base rotation and pivot (its
        rotation increment folded into the base, as :meth:`CameraPoseParam.rebase` does)."""
        z, omega, t_c = x.split((x.shape[1] - 6, 3, 3), dim=-1)
        T, _ = camera_from_pivot(omega, t_c, cam.R0, cam.pivot)
        return PoseState(z=z.clone(), cam=CameraPoseParam(T, cam.pivot))

    @torch.no_grad()
    def result(self, state: PoseState, terms: Tensor, iterations: int, converged: bool, seconds: float,
               hypotheses: int) -> PoseEstimate:
        """The :class:`PoseEstimate` of the first hypothesis of ``state`` with its image loss ``terms [B, 3]``
        (everything copied to the host in one transfer)."""
        q, T = self.joints(state)[0], state.cam()[0]
        J = q.shape[0]
        flat = torch.cat([q, T.flatten(), terms[0], terms[0].sum()[None]]).double().cpu()
        values = flat[J + 16:].tolist()
        return PoseEstimate(
            q=flat[:J].numpy(),
            T_camera_base=flat[J:J + 16].reshape(4, 4).numpy(),
            loss=values[-1],
            iterations=int(iterations),
            converged=bool(converged),
            seconds=float(seconds),
            joint_names=list(self.joint_names),
            loss_terms=dict(zip(TERMS, values[:-1])),
            hypotheses=int(hypotheses),
        )


__all__ = ["CHECK_EVERY", "PoseRefiner", "PoseState", "Refined"]
