"""Pose tracking through a video: each frame warm-starts from the previous estimates, with a constant-velocity
prediction and temporal smoothness; a frame whose loss exceeds ``config.relocalize_loss`` starts over.

Frames and units as in :mod:`gen3d_ros.robot.pose.estimator`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor

from gen3d_ros.geometry.camera import PinholeCamera
from gen3d_ros.robot.pose.config import PoseEstimate, PoseEstimatorConfig


class FrameEstimator(Protocol):
    """What tracking needs of :class:`~gen3d_ros.robot.pose.estimator.PoseEstimator`."""

    config: PoseEstimatorConfig
    lower: Tensor  # [J] joint limits
    upper: Tensor

    def estimate(self, image: Any, camera: PinholeCamera, mask: Any = None, q: Any = None, T_camera_base: Any = None,
                 q_init: Any = None) -> PoseEstimate: ...

    def refine(self, image: Any, camera: PinholeCamera, q_init: Any, T_init: Any, mask: Any = None, **options: Any
               ) -> PoseEstimate: ...


def track(
    estimator: FrameEstimator,
    frames: Sequence[np.ndarray | Tensor],
    camera: PinholeCamera,
    masks: Sequence[np.ndarray | Tensor | None] | None = None,
    initial: PoseEstimate | None = None,
    T_camera_base: np.ndarray | Tensor | None = None,
) -> list[PoseEstimate]:
    """Per-frame estimates of a video ``frames`` (each ``[H, W, 3]``): the first by ``estimator.estimate`` (unless
    ``initial`` is given), the rest by ``estimator.refine`` warm-started from the previous estimate with the
    smoothness prior. ``T_camera_base`` fixes a known, static camera. Each estimate's ``seconds`` is that
    frame's latency.
    """
    masks = list(masks) if masks is not None else [None] * len(frames)
    if len(masks) != len(frames):
        raise ValueError(f"got {len(frames)} frames but {len(masks)} masks")
    out: list[PoseEstimate] = []
    for frame, mask in zip(frames, masks):
        out.append(track_step(estimator, frame, camera, out[-2:] if out else ([initial] if initial else []),
                              mask=mask, T_camera_base=T_camera_base))
    return out


def predict_joints(estimator: FrameEstimator, history: Sequence[PoseEstimate]) -> np.ndarray:
    """The next frame's starting joints ``[J]``: the last estimate's, or with ``config.constant_velocity`` and two
    estimates, extrapolated at constant velocity and clamped to the limits (the logit parametrisation can't start
    outside them)."""
    prev = history[-1]
    if not (estimator.config.constant_velocity and len(history) >= 2):
        return prev.q
    q_pred = torch.as_tensor(prev.q + (prev.q - history[-2].q), dtype=torch.float32)
    return torch.minimum(torch.maximum(q_pred, estimator.lower.cpu()), estimator.upper.cpu()).numpy()


def track_step(
    estimator: FrameEstimator,
    image: np.ndarray | Tensor,
    camera: PinholeCamera,
    history: Sequence[PoseEstimate],
    mask: np.ndarray | Tensor | None = None,
    T_camera_base: np.ndarray | Tensor | None = None,
) -> PoseEstimate:
    """One video frame given the previous estimates ``history`` (oldest first; empty: estimate from scratch)."""
    if not history:
        return estimator.estimate(image, camera, mask=mask, T_camera_base=T_camera_base)
    t0 = time.perf_counter()
    prev = history[-1]
    T_init = prev.T_camera_base if T_camera_base is None else T_camera_base
    est = estimator.refine(image, camera, predict_joints(estimator, history), T_init, mask=mask,
                           prior=(prev.q, T_init), optimise_T=T_camera_base is None)
    if est.loss > estimator.config.relocalize_loss:  # lost: start over from the hypotheses
        est = estimator.estimate(image, camera, mask=mask, T_camera_base=T_camera_base, q_init=prev.q)
    return replace(est, seconds=time.perf_counter() - t0)


__all__ = ["FrameEstimator", "predict_joints", "track", "track_step"]
