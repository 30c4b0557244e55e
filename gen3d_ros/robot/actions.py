"""Robot actions from pixels: visual MPC through the differentiable renderer, actions from videos, retargeting.

    planner = VisualMPC(model, VisualMPCConfig(waypoints=8, dt=0.25))
    plan = planner.plan(KeypointGoal(pixels, ["tool_tip"]), q_now, T_camera_base, camera)
    plan = planner.plan(ImageGoal(goal_rgb), q_now, T_camera_base, camera)
    plan = planner.plan(ScoreGoal(clip_score, "clip: victory sign"), q_now, T_camera_base, camera)
    plan.trajectory.positions                       # [N, J] radians, plan.trajectory.times_from_start [N] s

    traj = actions_from_video(frames, camera, PoseEstimator(model), dt=1 / 30)         # video -> joint trajectory
    traj, residual = retarget_point_tracks(tracks, ["hand", "tool_tip"], model.fk, T_camera_base, camera, dt=0.1)

    processor = ActionProcessor(model)                                                  # what the action node calls
    result = processor.plan(goal, q_now, T_camera_base, camera)                         # ActionResult

Frames and units: joints in radians (revolute) / metres (prismatic), order ``fk.joint_names``; ``T_camera_base``
(4x4) base -> OpenCV optical camera frame, metres; pixels ``(u, v)`` = (column, row) with pixel centres at
integer + 0.5 (:class:`~gen3d_ros.geometry.camera.PinholeCamera`); times in seconds; velocities rad/s (m/s).

Trajectories are plain data (:class:`Trajectory`); :meth:`Trajectory.joint_trajectory_fields` gives the fields of a
``trajectory_msgs/JointTrajectory`` as dicts/lists, and the ROS node builds the message (no rclpy here).

Visual MPC optimises waypoints ``q_1..q_N`` (``q_0`` = the current state, fixed) in the sigmoid joint-limit
parametrisation with Adam; the cost is ``w_goal * goal(q_N)`` + ``w_smooth`` x squared accelerations +
``w_velocity`` x squared excess over ``max_velocity`` + ``w_limit`` x squared intrusion into a margin at the limits.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from gen3d_ros.config import param, validate
from gen3d_ros.geometry.camera import PinholeCamera
from gen3d_ros.robot.parametrization import joints_from_unconstrained, unconstrained_from_joints
from gen3d_ros.robot.pose.images import image_to_tensor, mask_from_background
from gen3d_ros.robot.mpc_config import VisualMPCConfig


# ------------------------------------------------------------------------------------------------ trajectories


@dataclass
class Trajectory:
    """A joint trajectory: ``positions [N, J]`` (rad / m, order ``joint_names``) at ``times_from_start [N]`` (s)."""

    joint_names: list[str]
    positions: np.ndarray
    times_from_start: np.ndarray

    def __post_init__(self) -> None:
        self.positions = np.asarray(self.positions, dtype=np.float64)
        self.times_from_start = np.asarray(self.times_from_start, dtype=np.float64)
        if self.positions.ndim != 2 or self.positions.shape[1] != len(self.joint_names):
            raise ValueError(f"positions must be [N, {len(self.joint_names)}], got {self.positions.shape}")
        if self.times_from_start.shape != (self.positions.shape[0],):
            raise ValueError(f"times_from_start must be [{self.positions.shape[0]}], got {self.times_from_start.shape}")
        if np.any(np.diff(self.times_from_start) <= 0):
            raise ValueError("times_from_start must be strictly increasing")

    def __len__(self) -> int:
        return self.positions.shape[0]

    def velocities(self) -> np.ndarray:
        """``[N, J]`` finite-difference velocities (rad/s; central inside, one-sided at the ends; 0 for N = 1)."""
        if len(self) < 2:
            return np.zeros_like(self.positions)
        return np.gradient(self.positions, self.times_from_start, axis=0)

    def joint_trajectory_fields(self, with_velocities: bool = True) -> dict:
        """``trajectory_msgs/JointTrajectory`` content as plain data (header left to the node).

        ``{"joint_names": [...], "points": [{"positions": [...], "velocities": [...], "time_from_start":
        {"sec": int, "nanosec": int}}, ...]}``.
        """
        vel = self.velocities()
        points = []
        for k in range(len(self)):
            t = float(self.times_from_start[k])
            sec = int(math.floor(t))
            point = {"positions": self.positions[k].tolist(),
                     "time_from_start": {"sec": sec, "nanosec": int(round((t - sec) * 1e9)) % 1_000_000_000}}
            if with_velocities:
                point["velocities"] = vel[k].tolist()
            points.append(point)
        return {"joint_names": list(self.joint_names), "points": points}


def smooth_trajectory(q: np.ndarray, weight: float) -> np.ndarray:
    """Smoothness-regularised least squares: ``argmin_x |x - q|^2 + weight |D2 x|^2`` per joint, ``q [T, J]``.

    ``D2`` is the second difference (acceleration x dt^2), so ``weight`` trades fidelity against smoothness
    (0: unchanged; ~10: removes frame-to-frame jitter of a 30 Hz estimate). Exact (one linear solve).
    """
    q = np.asarray(q, dtype=np.float64)
    T = q.shape[0]
    if weight <= 0 or T < 3:
        return q.copy()
    D = np.zeros((T - 2, T))
    idx = np.arange(T - 2)
    D[idx, idx], D[idx, idx + 1], D[idx, idx + 2] = 1.0, -2.0, 1.0
    return np.linalg.solve(np.eye(T) + weight * D.T @ D, q)


def project_points(points_base: Tensor, T_camera_base: Tensor, camera: PinholeCamera) -> Tensor:
    """Pixels ``[..., P, 2]`` (u, v) of base-frame points ``[..., P, 3]`` seen from ``T_camera_base [4, 4]``."""
    p = points_base @ T_camera_base[:3, :3].T + T_camera_base[:3, 3]
    z = p[..., 2:3].clamp_min(1e-4)  # behind-camera points would flip; clamping keeps the gradient finite
    return torch.cat([camera.fx * p[..., 0:1] / z + camera.cx, camera.fy * p[..., 1:2] / z + camera.cy], dim=-1)


def link_points(fk, q: Tensor, links: Sequence[int], offsets: Tensor | None = None) -> Tensor:
    """Base-frame points ``[..., P, 3]``: the origins of ``links`` (indices into ``fk.link_names``), or
    ``offsets [P, 3]`` (metres, each in its link's frame) on them, at joint values ``q [..., J]``."""
    T = fk(q)[..., list(links), :, :]
    if offsets is None:
        return T[..., :3, 3]
    return (T[..., :3, :3] @ offsets[..., None])[..., 0] + T[..., :3, 3]


def _link_indices(fk, links: Sequence[str | int]) -> list[int]:
    return [fk.link_index(l) if isinstance(l, str) else int(l) for l in links]


# ------------------------------------------------------------------------------------------------ objectives


@dataclass
class _Context:
    """What an objective sees of the final waypoint: its render (None if not needed), and the camera."""

    render: object | None
    q: Tensor
    T_camera_base: Tensor
    camera: PinholeCamera
    fk: object


class KeypointGoal:
    """Link origins (or points on links) at goal pixels: cost = mean squared distance / image size^2.

    ``pixels [P, 2]`` (u, v) in the planning camera's image; ``links``: P link names (or indices); ``offsets``
    ``[P, 3]`` optional points in each link's frame (metres). No rendering needed (projects the kinematics).
    :meth:`distance_px` is the mean pixel distance (the number to report).
    """

    name = "keypoints"
    needs_render = False

    def __init__(self, pixels: np.ndarray, links: Sequence[str | int], offsets: np.ndarray | None = None) -> None:
        self.pixels = torch.as_tensor(np.asarray(pixels), dtype=torch.float32).reshape(-1, 2)
        self.links = list(links)
        if len(self.links) != self.pixels.shape[0]:
            raise ValueError(f"got {self.pixels.shape[0]} goal pixels but {len(self.links)} links")
        self.offsets = None if offsets is None else torch.as_tensor(np.asarray(offsets), dtype=torch.float32)

    def _projected(self, ctx: _Context) -> Tensor:
        idx = _link_indices(ctx.fk, self.links)
        offsets = None if self.offsets is None else self.offsets.to(ctx.q.device)
        return project_points(link_points(ctx.fk, ctx.q, idx, offsets), ctx.T_camera_base, ctx.camera)

    def __call__(self, ctx: _Context) -> Tensor:
        d2 = (self._projected(ctx) - self.pixels.to(ctx.q.device)).square().sum(-1)
        return d2.mean() / float(max(ctx.camera.width, ctx.camera.height)) ** 2

    def distance_px(self, ctx: _Context) -> float:
        with torch.no_grad():
            return float((self._projected(ctx) - self.pixels.to(ctx.q.device)).norm(dim=-1).mean())


class ImageGoal:
    """Look like a goal image: L1 on RGB + L2 of rendered alpha vs the goal's robot mask (as pose estimation).

    ``image [H, W, 3]`` (uint8 or float 0..1) in the planning camera's resolution; ``mask [H, W]`` optional (else
    pixels differing from ``background``). :meth:`distance_px` reports the same loss (dimensionless).
    """

    name = "image"
    needs_render = True

    def __init__(self, image: np.ndarray | Tensor, mask: np.ndarray | Tensor | None = None,
                 background: Sequence[float] = (1.0, 1.0, 1.0), w_mask: float = 1.0) -> None:
        self.rgb = image_to_tensor(image)
        self.mask = (mask_from_background(self.rgb, background, 0.1) if mask is None
                     else torch.as_tensor(np.asarray(mask), dtype=torch.float32))
        self.w_mask = float(w_mask)

    def __call__(self, ctx: _Context) -> Tensor:
        rgb, alpha = ctx.render.rgb, ctx.render.alpha
        if rgb.shape[:2] != self.rgb.shape[:2]:
            raise ValueError(f"goal image is {tuple(self.rgb.shape[:2])} but the render is {tuple(rgb.shape[:2])}")
        dev = rgb.device
        return (rgb - self.rgb.to(dev)).abs().mean() + self.w_mask * (alpha - self.mask.to(dev)).square().mean()

    def distance_px(self, ctx: _Context) -> float:
        with torch.no_grad():
            return float(self(ctx))


class ScoreGoal:
    """Any differentiable image score to MAXIMISE, e.g. a CLIP similarity to a text prompt.

    ``score(rgb [H, W, 3] float 0..1 tensor) -> scalar tensor``; cost = ``-score``. ``name`` names the objective in
    results (e.g. ``"clip: victory sign"``).
    """

    needs_render = True

    def __init__(self, score: Callable[[Tensor], Tensor], name: str = "score") -> None:
        self.score = score
        self.name = name

    def __call__(self, ctx: _Context) -> Tensor:
        return -self.score(ctx.render.rgb)

    def distance_px(self, ctx: _Context) -> float:
        with torch.no_grad():
            return float(self(ctx))


# ------------------------------------------------------------------------------------------------ visual MPC


@dataclass
class PlanResult:
    """A visual-MPC plan: ``trajectory`` (the N waypoints after the current state, at ``dt, 2 dt, ...``),
    ``objective`` name, total ``initial_cost``/``final_cost`` (dimensionless), ``goal_distance_initial/final``
    (the objective's own measure: mean pixels for keypoints, image loss for images, -score for scores) at the
    current state and at the last waypoint, and ``seconds`` of planning."""

    trajectory: Trajectory
    objective: str
    initial_cost: float
    final_cost: float
    goal_distance_initial: float
    goal_distance_final: float
    seconds: float
    iterations: int


#: ``on_iteration(iteration, cost, best_cost) -> stop``: see :meth:`VisualMPC.plan`
IterationCallback = Callable[[int, float, float], bool]


class VisualMPC:
    """Plans joint trajectories whose rendered (or projected) robot reaches an image-space goal."""

    def __init__(self, model, config: VisualMPCConfig | None = None) -> None:
        self.config = config or VisualMPCConfig()
        from gen3d_ros.devices import check_device

        self.device = torch.device(check_device(self.config.device))
        self.model = model.to(self.device)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.fk = model.fk
        self.lower, self.upper = self.fk.lower.to(self.device), self.fk.upper.to(self.device)
        self.background = torch.tensor(self.config.background, dtype=torch.float32, device=self.device)

    def _context(self, objective, q: Tensor, T: Tensor, camera: PinholeCamera) -> _Context:
        render = None
        if objective.needs_render:
            render = self.model.render(q, T, camera, background=self.background, backend=self.config.backend)
        return _Context(render=render, q=q, T_camera_base=T, camera=camera, fk=self.fk)

    def costs(self, q_traj: Tensor) -> dict[str, Tensor]:
        """Regularisers of a trajectory ``[N + 1, J]`` (current state first): smooth, velocity, limit."""
        cfg = self.config
        d = torch.diff(q_traj, dim=0)
        acc = torch.diff(d, dim=0)
        excess = torch.relu(d.abs() / cfg.dt - cfg.max_velocity)
        span = (self.upper - self.lower).clamp_min(1e-9)
        u = (q_traj[1:] - self.lower) / span
        intrusion = torch.relu(cfg.limit_margin - u) + torch.relu(u - (1.0 - cfg.limit_margin))
        zero = q_traj.new_zeros(())
        return {
            "smooth": cfg.w_smooth * (acc.square().sum(-1).mean() if acc.shape[0] else zero),
            "velocity": cfg.w_velocity * excess.square().sum(-1).mean(),
            "limit": cfg.w_limit * intrusion.square().sum(-1).mean(),
        }

    def plan(self, objective, q_current: np.ndarray | Tensor, T_camera_base: np.ndarray | Tensor,
             camera: PinholeCamera, *, config: VisualMPCConfig | None = None,
             on_iteration: IterationCallback | None = None) -> PlanResult:
        """Optimise N waypoints from ``q_current [J]`` so the robot seen by ``camera`` at ``T_camera_base`` reaches
        ``objective`` (:class:`KeypointGoal`, :class:`ImageGoal`, :class:`ScoreGoal` or any callable of the same
        shape). ``camera`` is the goal's camera; render objectives are evaluated at ``config.render_scale``.

        ``config``: this plan's settings instead of :attr:`config` (e.g. another horizon or iteration count; its
        ``device`` and ``backend`` are this planner's). ``on_iteration(i, cost, best_cost)`` after each Adam
        iteration (1-based; costs dimensionless): feedback, and a stop: returning True ends the optimisation
        there (a ROS action's cancel), and the result is the best trajectory so far with ``iterations = i``."""
        t0 = time.perf_counter()
        cfg = self.config if config is None else config
        cam = camera if (not objective.needs_render or cfg.render_scale == 1.0) else camera.scaled(cfg.render_scale)
        if objective.needs_render and cam is not camera and isinstance(objective, ImageGoal):
            objective = _scaled_image_goal(objective, cam)
        q0 = torch.as_tensor(np.asarray(q_current) if not torch.is_tensor(q_current) else q_current,
                             dtype=torch.float32).to(self.device).reshape(-1)
        q0 = torch.minimum(torch.maximum(q0, self.lower), self.upper)
        T = torch.as_tensor(np.asarray(T_camera_base) if not torch.is_tensor(T_camera_base) else T_camera_base,
                            dtype=torch.float32).to(self.device).reshape(4, 4)
        z = unconstrained_from_joints(q0.expand(cfg.waypoints, -1), self.lower, self.upper).clone().requires_grad_(True)

        def total(z_: Tensor) -> tuple[Tensor, _Context]:
            q_traj = torch.cat([q0[None], joints_from_unconstrained(z_, self.lower, self.upper)])
            ctx = self._context(objective, q_traj[-1], T, cam)
            return cfg.w_goal * objective(ctx) + sum(self.costs(q_traj).values()), ctx

        with torch.no_grad():
            initial_cost, ctx0 = total(z)
            d0 = objective.distance_px(ctx0)
        opt = torch.optim.Adam([z], lr=cfg.lr)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.lr_decay ** (1.0 / max(cfg.iterations, 1)))
        best = (float(initial_cost), z.detach().clone())
        done = 0
        for done in range(1, cfg.iterations + 1):
            opt.zero_grad(set_to_none=True)
            cost, _ = total(z)
            value = float(cost.detach())
            if value < best[0]:
                best = (value, z.detach().clone())
            cost.backward()
            opt.step()
            sched.step()
            if on_iteration is not None and on_iteration(done, value, best[0]):
                break
        with torch.no_grad():
            final_cost, ctx = total(best[1])
            if float(final_cost) > best[0] + 1e-12:  # the last step's parameters were never evaluated; keep the best
                final_cost, ctx = total(best[1])
            q_plan = joints_from_unconstrained(best[1], self.lower, self.upper)
            d1 = objective.distance_px(ctx)
        traj = Trajectory(list(self.fk.joint_names), q_plan.double().cpu().numpy(),
                          cfg.dt * np.arange(1, cfg.waypoints + 1))
        return PlanResult(traj, objective.name, float(initial_cost), float(final_cost), d0, d1,
                          time.perf_counter() - t0, done)


def _scaled_image_goal(goal: ImageGoal, camera: PinholeCamera) -> ImageGoal:
    """The goal image area-downsampled to ``camera``'s size (for a render_scale < 1)."""
    import torch.nn.functional as F

    scaled = ImageGoal.__new__(ImageGoal)
    rgb = F.adaptive_avg_pool2d(goal.rgb.permute(2, 0, 1)[None], (camera.height, camera.width))[0].permute(1, 2, 0)
    mask = F.adaptive_avg_pool2d(goal.mask[None, None], (camera.height, camera.width))[0, 0]
    scaled.rgb, scaled.mask, scaled.w_mask = rgb, mask, goal.w_mask
    return scaled


# ------------------------------------------------------------------------------------------------ from videos / tracks


def actions_from_video(
    frames: Sequence[np.ndarray],
    camera: PinholeCamera,
    estimator,
    dt: float,
    smoothing: float = 5.0,
    masks: Sequence[np.ndarray | None] | None = None,
    T_camera_base: np.ndarray | None = None,
    initial=None,
) -> tuple[Trajectory, list]:
    """A joint trajectory from a video of the robot (e.g. a generated one): per-frame pose estimates
    (:meth:`~gen3d_ros.robot.pose.PoseEstimator.track`), smoothed by :func:`smooth_trajectory` (``smoothing``
    weight), clamped to the limits, at times ``0, dt, 2 dt, ...`` (s). Returns ``(trajectory, estimates)``.
    ``T_camera_base`` fixes a known camera; ``initial`` (a :class:`~gen3d_ros.robot.pose.PoseEstimate`, e.g. the
    robot's joint state when the video starts) warm-starts the first frame instead of a from-scratch estimate."""
    estimates = estimator.track(frames, camera, masks=masks, initial=initial, T_camera_base=T_camera_base)
    q = np.stack([e.q for e in estimates])
    q = np.clip(smooth_trajectory(q, smoothing), estimator.fk.lower.cpu().numpy(), estimator.fk.upper.cpu().numpy())
    return Trajectory(list(estimator.joint_names), q, dt * np.arange(len(q))), estimates


def retarget_point_tracks(
    tracks: np.ndarray,
    links: Sequence[str | int],
    fk,
    T_camera_base: np.ndarray,
    camera: PinholeCamera,
    dt: float,
    offsets: np.ndarray | None = None,
    visibility: np.ndarray | None = None,
    q_init: np.ndarray | None = None,
    restarts: int = 4,
    iterations: int = 300,
    lr: float = 0.1,
    w_smooth: float = 1.0,
    seed: int = 0,
) -> tuple[Trajectory, np.ndarray]:
    """Joint trajectory whose projected robot points follow 2D point tracks (motion retargeting; known camera).

    Args:
        tracks: ``[T, P, 2]`` pixels (u, v) of P tracked points over T frames (e.g. from a point tracker on a
            human hand or a generated video), in ``camera``'s image.
        links: P robot links (names or indices into ``fk.link_names``) that correspond to the tracks.
        offsets: ``[P, 3]`` optional points in each link's frame (metres); default the link origins.
        visibility: ``[T, P]`` optional weights in [0, 1] (0 = occluded, ignored).
        q_init: ``[J]`` or ``[T, J]`` starting guess; default: the neutral pose plus ``restarts - 1`` random
            constant trajectories, the best kept.
        w_smooth: weight of squared joint accelerations (rad^2) per frame against the mean squared pixel error
            normalised by the image size.
    Returns:
        ``(trajectory at times 0, dt, ..., residual [T] mean pixel error per frame)``.
    """
    tracks_t = torch.as_tensor(np.asarray(tracks), dtype=torch.float32)
    if tracks_t.ndim != 3 or tracks_t.shape[-1] != 2 or tracks_t.shape[1] != len(links):
        raise ValueError(f"tracks must be [T, P={len(links)}, 2], got {tuple(tracks_t.shape)}")
    T_len = tracks_t.shape[0]
    w = torch.ones(tracks_t.shape[:2]) if visibility is None else torch.as_tensor(np.asarray(visibility), dtype=torch.float32)
    idx = _link_indices(fk, links)
    off = None if offsets is None else torch.as_tensor(np.asarray(offsets), dtype=torch.float32)
    T = torch.as_tensor(np.asarray(T_camera_base), dtype=torch.float32)
    lower, upper = fk.lower.float(), fk.upper.float()
    gen = torch.Generator().manual_seed(seed)
    if q_init is not None:
        starts = torch.as_tensor(np.asarray(q_init), dtype=torch.float32).expand(1, T_len, -1)
    else:
        starts = torch.cat([fk.neutral()[None].float(), fk.sample(max(restarts - 1, 0), gen).float()])[:, None]
        starts = starts.expand(-1, T_len, -1)
    z = unconstrained_from_joints(starts, lower, upper).clone().requires_grad_(True)  # [R, T, J]
    scale = float(max(camera.width, camera.height)) ** 2
    opt = torch.optim.Adam([z], lr=lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.05 ** (1.0 / max(iterations, 1)))

    def per_restart(z_: Tensor) -> tuple[Tensor, Tensor]:
        q = joints_from_unconstrained(z_, lower, upper)
        px = project_points(link_points(fk, q, idx, off), T, camera)  # [R, T, P, 2]
        err = (px - tracks_t).square().sum(-1)  # [R, T, P]
        data = (w * err).sum((-1, -2)) / w.sum().clamp_min(1.0) / scale
        acc = torch.diff(q, n=2, dim=1).square().sum((-1, -2)) / T_len if T_len > 2 else data * 0
        return data + w_smooth * acc, err

    for _ in range(iterations):
        opt.zero_grad(set_to_none=True)
        loss, _ = per_restart(z)
        loss.sum().backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        loss, err = per_restart(z)
        best = int(torch.argmin(loss))
        q = joints_from_unconstrained(z[best], lower, upper)
        residual = ((w * err[best].sqrt()).sum(-1) / w.sum(-1).clamp_min(1e-9)).numpy()
    return Trajectory(list(fk.joint_names), q.double().numpy(), dt * np.arange(T_len)), residual


# ------------------------------------------------------------------------------------------------ the processor


@dataclass
class ActionResult:
    """What :meth:`ActionProcessor.plan` returns: ``trajectory`` (-> ``trajectory_msgs/JointTrajectory`` via
    :meth:`Trajectory.joint_trajectory_fields`), ``objective`` name and ``final_cost`` (-> ``RobotAction`` fields),
    plus ``initial_cost``, ``goal_distance_initial/final`` (see :class:`PlanResult`), ``seconds`` and the
    caller's ``stamp`` (passed through)."""

    trajectory: Trajectory
    objective: str
    final_cost: float
    initial_cost: float
    goal_distance_initial: float
    goal_distance_final: float
    seconds: float
    stamp: float | None = None
    iterations: int = 0


class ActionProcessor:
    """Pure (no rclpy) visual MPC for the action node: goal + current joint state -> trajectory.

        processor = ActionProcessor(model, VisualMPCConfig(waypoints=8, dt=0.25))
        result = processor.plan(goal_rgb_uint8, q_now, T_camera_base, camera)                   # image goal
        result = processor.plan({"pixels": [[u, v]], "links": ["tool_tip"]}, q_now, T_camera_base, camera)
        result.trajectory.joint_trajectory_fields()    # JointTrajectory content; result.objective, .final_cost

    ``goal``: an ``[H, W, 3]`` image (uint8 or float; the camera's resolution), a dict ``{"pixels": [P, 2],
    "links": [P names], "offsets": [P, 3] optional}``, or an objective object (:class:`KeypointGoal`,
    :class:`ImageGoal`, :class:`ScoreGoal`). ``q_current [J]`` in :attr:`joint_names` order (e.g. from
    ``/joint_states``), ``T_camera_base`` 4x4 (from the pose estimator or TF). Not thread-safe.
    """

    def __init__(self, model, config: VisualMPCConfig | None = None) -> None:
        self.mpc = VisualMPC(model, config)

    @property
    def joint_names(self) -> list[str]:
        """Joint order of ``q_current`` and of the trajectory."""
        return list(self.mpc.fk.joint_names)

    def make_objective(self, goal):
        """The objective object for any accepted ``goal`` form (see the class docstring)."""
        if hasattr(goal, "needs_render"):
            return goal
        if isinstance(goal, dict):
            if "pixels" not in goal or "links" not in goal:
                raise ValueError(f"a keypoint goal needs 'pixels' and 'links', got keys {sorted(goal)}")
            return KeypointGoal(goal["pixels"], goal["links"], goal.get("offsets"))
        arr = np.asarray(goal)
        if arr.ndim == 3 and arr.shape[-1] == 3:
            return ImageGoal(arr, background=self.mpc.config.background)
        raise ValueError(f"goal must be an [H, W, 3] image, a keypoint dict or an objective, got {type(goal).__name__} "
                         f"of shape {getattr(arr, 'shape', None)}")

    def plan(self, goal, q_current: np.ndarray, T_camera_base: np.ndarray, camera: PinholeCamera,
             stamp: float | None = None, *, config: VisualMPCConfig | None = None,
             on_iteration: IterationCallback | None = None) -> ActionResult:
        """Plan from ``q_current`` towards ``goal`` seen by ``camera`` at ``T_camera_base``; ``config`` and
        ``on_iteration`` (feedback, stop): see :meth:`VisualMPC.plan`."""
        q_current = np.asarray(q_current, dtype=np.float64)
        if q_current.shape != (len(self.joint_names),):
            raise ValueError(f"q_current has shape {q_current.shape}, expected ({len(self.joint_names)},) "
                             f"for joints {self.joint_names}")
        p = self.mpc.plan(self.make_objective(goal), q_current, T_camera_base, camera, config=config,
                          on_iteration=on_iteration)
        return ActionResult(p.trajectory, p.objective, p.final_cost, p.initial_cost, p.goal_distance_initial,
                            p.goal_distance_final, p.seconds, stamp, p.iterations)


__all__ = ["ActionProcessor", "ActionResult", "ImageGoal", "KeypointGoal", "PlanResult", "ScoreGoal", "Trajectory",
           "VisualMPC", "VisualMPCConfig", "actions_from_video", "link_points", "project_points",
           "retarget_point_tracks", "smooth_trajectory"]
