"""The settings of visual MPC (:class:`~gen3d_ros.robot.actions.VisualMPC`), importable without torch: the action
node declares them as ``mpc.<field>`` parameters before it loads a model."""

from __future__ import annotations

from dataclasses import dataclass

from gen3d_ros.config import param, validate
from gen3d_ros.robot.splat_backends import BACKEND_CHOICES


@dataclass
class VisualMPCConfig:
    """Settings of :class:`VisualMPC` (validated on construction; every field carries its parameter metadata).

    The cost of waypoints ``q_1..q_N``: ``w_goal`` x the objective at the last waypoint + ``w_smooth`` x squared
    second differences (rad^2) + ``w_velocity`` x squared excess of |dq/dt| over ``max_velocity`` + ``w_limit`` x
    squared intrusion into the outer ``limit_margin`` fraction of each joint range. Adam in sigmoid-logit units
    (:mod:`~gen3d_ros.robot.parametrization`), the rate decayed exponentially to ``lr_decay`` x ``lr`` by the last
    step.
    """

    waypoints: int = param(8, "planned states after the current one", lo=1)
    dt: float = param(0.25, "time between waypoints; > 0", unit="s", lo=0.0)
    iterations: int = param(60, "Adam steps", lo=0)
    lr: float = param(0.15, "Adam step (sigmoid-logit units); > 0", lo=0.0)
    lr_decay: float = param(0.1, "the rate decays exponentially to this fraction by the last step, in (0, 1]",
                            lo=0.0, hi=1.0)
    w_goal: float = param(1.0, "weight of the objective at the last waypoint", lo=0.0)
    w_smooth: float = param(0.1, "weight of the squared second differences (rad^2)", lo=0.0)
    w_velocity: float = param(0.1, "weight of the squared excess of |dq/dt| over max_velocity", lo=0.0)
    max_velocity: float = param(1.5, "joint speed limit; > 0", unit="rad/s", lo=0.0)
    w_limit: float = param(0.1, "weight of the squared intrusion into the margin at the joint limits", lo=0.0)
    limit_margin: float = param(0.02, "fraction of each joint range at either end penalised by w_limit, in [0, 0.5)",
                                lo=0.0, hi=0.5)
    render_scale: float = param(1.0, "planning-image scale (PinholeCamera.scaled) of render objectives, in (0, 1]",
                                lo=0.0, hi=1.0)
    background: tuple[float, float, float] = param((1.0, 1.0, 1.0), "RGB in [0, 1] behind the rendered robot")
    device: str = param("cpu", "torch device of the renderer (cpu, cuda, cuda:1)")
    backend: str = param("auto", "splatting backend: auto (gsplat on CUDA, else torch), torch, gsplat",
                         choices=BACKEND_CHOICES)

    def __post_init__(self) -> None:
        self.background = tuple(float(c) for c in self.background)  # type: ignore[assignment]
        validate(self)
        if self.waypoints < 1 or self.iterations < 0 or self.dt <= 0:
            raise ValueError(f"need waypoints >= 1, iterations >= 0, dt > 0; got {self.waypoints}, "
                             f"{self.iterations}, {self.dt}")
        if self.lr <= 0 or not 0.0 < self.lr_decay <= 1.0 or self.max_velocity <= 0:
            raise ValueError(f"need lr > 0, lr_decay in (0, 1], max_velocity > 0; got {self.lr}, {self.lr_decay}, "
                             f"{self.max_velocity}")
        if min(self.w_goal, self.w_smooth, self.w_velocity, self.w_limit) < 0 or not 0 <= self.limit_margin < 0.5:
            raise ValueError("weights must be >= 0 and limit_margin in [0, 0.5)")
        if not 0.0 < self.render_scale <= 1.0:
            raise ValueError(f"render_scale must be in (0, 1], got {self.render_scale}")
        if len(self.background) != 3 or not all(0.0 <= c <= 1.0 for c in self.background):
            raise ValueError(f"background must be 3 values in [0, 1], got {self.background}")
