"""Keypoint tracking through a video from one static camera: a joint filter and the camera's bundle adjustment.

    filt = JointFilter(lower, upper, accel_std=0.05)      # constant-velocity model, radians / metres per frame
    filt.start(q0)
    q_pred = filt.predict()                                # before each frame
    fit = filt.update(KeypointResiduals(kps, fk, T_camera_base, camera, uv, conf))   # MAP joints of this frame
    T, qs = adjust_static_camera(kps, fk, camera, uvs, confs, qs, T)                   # one camera, N frames

Why: a per-frame fit re-anchored on the keypoints does not drift, but each frame's joints carry that frame's keypoint
noise (a wrist roll seen edge-on moves 10 deg for 1 px), and a camera re-estimated every frame trades its azimuth
against the base yaw. Here the joints are the maximum a posteriori state of a constant-velocity model given this
frame's keypoints (an iterated extended Kalman filter: badly constrained joints lean on the motion, well
constrained ones on the image), and the camera, static relative to the base, is one pose fitted to the keypoints of
many frames at once (the base's keypoints of every frame, not one frame's, set its azimuth).

Frames and units: ``q`` radians / metres (order ``fk.joint_names``), velocities per frame; ``T_camera_base`` [4, 4]
base -> OpenCV camera, metres; ``uv`` [K, 2] pixels; ``confidence`` [K] in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch

from gen3d_ros.geometry.camera import PinholeCamera
from gen3d_ros.robot.keypoints.definition import KeypointSet, project
from gen3d_ros.robot.keypoints.solve import joints_from_keypoints
from gen3d_ros.robot.kinematics import ForwardKinematics

_FD_STEP = 1e-6  # forward-difference step of the Jacobians (radians, metres; float64)


class KeypointResiduals:
    """Whitened keypoint errors of joint configurations under one camera: ``(uv(q) - uv_detected) / sigma_px``,
    each keypoint weighted by its confidence (below ``min_confidence``: left out) and Huber-robust beyond
    ``huber_px`` (iteratively reweighted)."""

    def __init__(self, kps: KeypointSet, fk: ForwardKinematics, T_camera_base: np.ndarray, camera: PinholeCamera,
                 uv: np.ndarray, confidence: np.ndarray, min_confidence: float = 0.2, sigma_px: float = 1.0,
                 huber_px: float = 3.0) -> None:
        self.kps, self.fk, self.camera = kps, fk, camera
        self.T = torch.as_tensor(np.asarray(T_camera_base), dtype=torch.float64)
        self.uv = np.asarray(uv, np.float64)
        self.conf = np.where(np.asarray(confidence) >= min_confidence, np.asarray(confidence, np.float64), 0.0)
        self.sigma_px, self.huber_px = float(sigma_px), float(huber_px)

    @property
    def usable(self) -> int:
        """Keypoints above the confidence threshold."""
        return int((self.conf > 0).sum())

    def errors(self, q: np.ndarray) -> np.ndarray:
        """``[B, K, 2]`` pixel errors of joint configurations ``q [B, J]``."""
        with torch.no_grad():
            uv, _ = project(self.kps.points(self.fk, torch.as_tensor(q, dtype=torch.float64)), self.T, self.camera)
        return uv.numpy() - self.uv

    def linearise(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(r [2K], Jq [2K, J], w [2K])`` at ``q [J]``: errors, their Jacobian (forward differences, one batched
        kinematics call) and the IRLS weights (confidence / sigma^2 x Huber)."""
        J = len(q)
        qs = np.concatenate([q[None], q[None] + _FD_STEP * np.eye(J)])
        e = self.errors(qs).reshape(J + 1, -1)
        r, jac = e[0], ((e[1:] - e[0]) / _FD_STEP).T
        return r, jac, self.weights(r)

    def weights(self, r: np.ndarray) -> np.ndarray:
        """``[2K]`` IRLS weights of errors ``r [2K]``."""
        dist = np.linalg.norm(r.reshape(-1, 2), axis=1)
        huber = np.where(dist <= self.huber_px, 1.0, self.huber_px / np.maximum(dist, 1e-9))
        return np.repeat(self.conf * huber / self.sigma_px ** 2, 2)

    def rms_px(self, q: np.ndarray) -> float:
        """Confidence-weighted RMS error (px; each keypoint's capped at 9 px, as :class:`~.solve.KeypointFit`)."""
        e = np.minimum(np.linalg.norm(self.errors(np.asarray(q)[None])[0], axis=-1), 9.0)
        return float(np.sqrt((e ** 2 * self.conf).sum() / max(self.conf.sum(), 1e-9)))


@dataclass
class FilterUpdate:
    """One frame's filtered joints ``q`` [J], their standard deviations ``q_std`` [J], the keypoint error ``rms_px``
    and the Mahalanobis distance of the update from the prediction (``innovation``; ~sqrt(2J) when consistent)."""

    q: np.ndarray
    q_std: np.ndarray
    rms_px: float
    innovation: float


class JointFilter:
    """Constant-velocity joint filter: state ``[q, q_dot]`` (radians or metres, and per frame), white acceleration
    noise ``accel_std`` (per frame^2, in units of each joint's range / 2 pi: a joint with a wider range moves
    faster), measured through the keypoints by an iterated (Gauss-Newton) extended Kalman update."""

    def __init__(self, lower: np.ndarray, upper: np.ndarray, accel_std: float = 0.05, q_std: float = 0.05,
                 velocity_std: float = 0.3) -> None:
        self.lower, self.upper = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
        self.J = len(self.lower)
        # acceleration noise per joint: accel_std for a 2 pi range, proportionally more or less
        self.accel = accel_std * np.maximum(self.upper - self.lower, 1e-3) / (2 * np.pi)
        self.q0_std, self.v0_std = q_std, velocity_std
        self.x = np.zeros(2 * self.J)
        self.P = np.eye(2 * self.J)

    @property
    def q(self) -> np.ndarray:
        return self.x[:self.J].copy()

    def start(self, q: np.ndarray) -> None:
        """(Re)start at joints ``q [J]`` at rest, with the starting uncertainties (``q_std``, ``velocity_std``)."""
        self.x = np.concatenate([np.clip(np.asarray(q, np.float64), self.lower, self.upper), np.zeros(self.J)])
        self.P = np.diag(np.concatenate([np.full(self.J, self.q0_std ** 2), np.full(self.J, self.v0_std ** 2)]))

    def predict(self) -> np.ndarray:
        """Advance one frame (constant velocity, clamped to the limits); returns the predicted joints ``[J]``."""
        J = self.J
        F = np.eye(2 * J)
        F[:J, J:] = np.eye(J)
        a2 = self.accel ** 2  # discrete white-noise acceleration: [[dt^4/4, dt^3/2], [dt^3/2, dt^2]] x a^2
        Q = np.block([[np.diag(a2 / 4), np.diag(a2 / 2)], [np.diag(a2 / 2), np.diag(a2)]])
        self.x = F @ self.x
        self.x[:J] = np.clip(self.x[:J], self.lower, self.upper)
        self.P = F @ self.P @ F.T + Q
        return self.q

    def update(self, residuals: KeypointResiduals, steps: int = 5) -> FilterUpdate:
        """The maximum a posteriori state given this frame's keypoints (Gauss-Newton from the prediction, joints
        kept within the limits); the covariance becomes the inverse Hessian at the answer."""
        J = self.J
        x_pred, P_inv = self.x.copy(), np.linalg.inv(self.P)
        x = x_pred.copy()
        for _ in range(steps):
            r, jq, w = residuals.linearise(x[:J])
            jx = np.concatenate([jq, np.zeros_like(jq)], axis=1)
            H = jx.T @ (w[:, None] * jx) + P_inv
            g = jx.T @ (w * r) + P_inv @ (x - x_pred)
            dx = -np.linalg.solve(H, g)
            x = x + dx
            x[:J] = np.clip(x[:J], self.lower, self.upper)
            if np.abs(dx).max() < 1e-6:
                break
        r, jq, w = residuals.linearise(x[:J])
        jx = np.concatenate([jq, np.zeros_like(jq)], axis=1)
        self.P = np.linalg.inv(jx.T @ (w[:, None] * jx) + P_inv)
        self.P = 0.5 * (self.P + self.P.T)
        d = x - x_pred
        self.x = x
        return FilterUpdate(self.q, np.sqrt(np.diag(self.P)[:J]), residuals.rms_px(x[:J]),
                            float(np.sqrt(max(d @ P_inv @ d, 0.0))))


def adjust_static_camera(kps: KeypointSet, fk: ForwardKinematics, camera: PinholeCamera, uvs: np.ndarray,
                         confidences: np.ndarray, qs: np.ndarray, T_camera_base: np.ndarray, steps: int = 8,
                         min_confidence: float = 0.2, huber_px: float = 3.0, sigma_px: float = 1.0
                         ) -> tuple[np.ndarray, np.ndarray]:
    """One camera for ``N`` frames: Levenberg-Marquardt over the shared ``T_camera_base`` [4, 4] (rotation
    increment + translation) and every frame's joints ``qs [N, J]`` against the keypoints ``uvs [N, K, 2]``,
    ``confidences [N, K]`` (robust and weighted as :class:`KeypointResiduals`). Returns ``(T_camera_base, qs)``.

    A bundle adjustment, not per-frame PnP: the camera's azimuth about the base and the base yaw trade off in any one
    frame, and only the keypoints of all frames together (above all the static base's) pin the shared camera down."""
    qs = np.asarray(qs, np.float64).copy()
    N, J = qs.shape
    lo, hi = fk.lower.double().numpy(), fk.upper.double().numpy()
    T = np.asarray(T_camera_base, np.float64).copy()
    uvs = np.asarray(uvs, np.float64)
    conf = np.where(np.asarray(confidences) >= min_confidence, np.asarray(confidences, np.float64), 0.0)

    def points(q: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return kps.points(fk, torch.as_tensor(q)).numpy()  # [..., K, 3]

    def errors(T: np.ndarray, p: np.ndarray) -> np.ndarray:
        pc = p @ T[:3, :3].T + T[:3, 3]
        z = np.maximum(pc[..., 2], 1e-3)
        uv = np.stack([camera.fx * pc[..., 0] / z + camera.cx, camera.fy * pc[..., 1] / z + camera.cy], -1)
        return (uv - uvs).reshape(N, -1)  # [N, 2K]

    def cost_and_weights(r: np.ndarray) -> tuple[float, np.ndarray]:
        dist = np.linalg.norm(r.reshape(N, -1, 2), axis=-1)
        rho = np.where(dist <= huber_px, 0.5 * dist ** 2, huber_px * (dist - 0.5 * huber_px))
        w = conf * np.where(dist <= huber_px, 1.0, huber_px / np.maximum(dist, 1e-9)) / sigma_px ** 2
        return float((rho * conf).sum() / sigma_px ** 2), np.repeat(w, 2, axis=1)

    def apply(T: np.ndarray, d: np.ndarray) -> np.ndarray:
        out = T.copy()
        out[:3, :3] = cv2.Rodrigues(d[:3])[0] @ T[:3, :3]
        out[:3, 3] = T[:3, 3] + d[3:6]
        return out

    p = points(qs)
    r = errors(T, p)
    cost, w = cost_and_weights(r)
    lam = 1e-3
    for _ in range(steps):
        # Jacobian, block-sparse: 6 camera columns (all frames) and J joint columns per frame; a joint of every
        # frame is perturbed in the same call (frames do not interact), so J + 6 evaluations in all
        jac_cam = np.stack([(errors(apply(T, _FD_STEP * e), p) - r) / _FD_STEP for e in np.eye(6)], -1)  # [N, M, 6]
        jac_q = np.stack([(errors(T, points(qs + _FD_STEP * e)) - r) / _FD_STEP for e in np.eye(J)], -1)  # [N, M, J]
        # normal equations by blocks: A (camera), B_n (camera x frame n's joints), D_n (frame n's joints); the
        # joints are eliminated frame by frame (Schur complement), so a step costs O(N J^3), not O((N J)^3)
        A = np.einsum("nmi,nm,nmj->ij", jac_cam, w, jac_cam)
        B = np.einsum("nmi,nm,nmj->nij", jac_cam, w, jac_q)  # [N, 6, J]
        Dn = np.einsum("nmi,nm,nmj->nij", jac_q, w, jac_q)  # [N, J, J]
        g_c = np.einsum("nmi,nm,nm->i", jac_cam, w, r)
        g_q = np.einsum("nmi,nm,nm->ni", jac_q, w, r)  # [N, J]
        A = A + lam * np.diag(np.diag(A)) + 1e-9 * np.eye(6)
        Dn = Dn + lam * Dn * np.eye(J) + 1e-9 * np.eye(J)
        D_inv = np.linalg.inv(Dn)
        BD = B @ D_inv  # [N, 6, J]
        S = A - np.einsum("nij,nkj->ik", BD, B)
        d_c = np.linalg.solve(S, -g_c + np.einsum("nij,nj->i", BD, g_q))
        d_q = -np.einsum("nij,nj->ni", D_inv, g_q + np.einsum("nji,j->ni", B, d_c))
        d = np.concatenate([d_c, d_q.reshape(-1)])
        T_new = apply(T, d[:6])
        qs_new = np.clip(qs + d[6:].reshape(N, J), lo, hi)
        p_new = points(qs_new)
        r_new = errors(T_new, p_new)
        cost_new, w_new = cost_and_weights(r_new)
        if cost_new < cost:
            T, qs, p, r, cost, w = T_new, qs_new, p_new, r_new, cost_new, w_new
            lam = max(lam * 0.3, 1e-7)
        else:
            lam = min(lam * 10, 1e7)
    return T, qs


@dataclass
class TrackedFrame:
    """One tracked frame: joints ``q`` [J] and their std ``q_std`` [J], the camera ``T_camera_base`` [4, 4], the
    keypoint error ``rms_px``, the update's ``innovation`` (see :class:`FilterUpdate`), what happened (``event``:
    "update", "coast" when the keypoints disagreed with the motion and were not used, "reinit" when the joints were
    found again from restarts) and ``lost`` (even restarts under this camera do not fit: start over)."""

    q: np.ndarray
    q_std: np.ndarray
    T_camera_base: np.ndarray
    rms_px: float
    innovation: float
    event: str
    lost: bool = False


@dataclass
class StaticCameraTracker:
    """Tracking from a camera static relative to the base (a tripod, a wall mount; not a hand-held or head camera).

    Per frame: the :class:`JointFilter` predicts, the camera is bundle-adjusted (:func:`adjust_static_camera`) over
    the recent frames (every frame for the first ``config.track_camera_frames``, then every
    ``config.track_camera_every``-th over the last ``config.track_camera_window``; never when the camera was given),
    and the filter is updated from this frame's keypoints. Gate: an update further than ``config.track_gate``
    (Mahalanobis) from the prediction is not taken (the frame coasts on the prediction: a mirrored wrist or a swapped
    finger pair in one frame's keypoints); re-initialisation: when the keypoint error exceeds
    ``config.reinit_rms_px`` or ``config.reinit_loss_factor`` x the median of the last 10 frames (at least 2 px), the
    joints are searched again from ``config.restarts`` restarts under the current camera (the prediction among them)
    and taken if they fit clearly better (< 0.75 x the error).
    ``config``: a :class:`~gen3d_ros.robot.keypoints.estimator.KeypointPoseConfig`."""

    kps: KeypointSet
    fk: ForwardKinematics
    config: Any
    T_camera_base: np.ndarray
    fixed_camera: bool
    filter: JointFilter = field(init=False)
    frames: list = field(default_factory=list)  # (uv, confidence, q) of the recent frames
    errors: list = field(default_factory=list)  # keypoint rms (px) of the recent frames
    count: int = 0  # frames since the start

    def __post_init__(self) -> None:
        self.filter = JointFilter(self.fk.lower.double().numpy(), self.fk.upper.double().numpy(),
                                  self.config.track_accel_std)
        self.T_camera_base = np.asarray(self.T_camera_base, np.float64).copy()

    def start(self, q: np.ndarray) -> None:
        """(Re)start at joints ``q`` [J] (a single-image estimate); the camera's recent frames are kept."""
        self.filter.start(q)
        self.errors = []
        self.count = 1

    def step(self, uv: np.ndarray, confidence: np.ndarray, camera: PinholeCamera) -> TrackedFrame:
        """The next frame from its keypoints ``uv`` [K, 2], ``confidence`` [K]."""
        cfg = self.config
        q_pred = self.filter.predict()
        self.frames = (self.frames + [(np.asarray(uv, np.float64), np.asarray(confidence, np.float64), q_pred)]
                       )[-max(cfg.track_camera_window, 1):]
        self.count += 1
        n = self.count
        if not self.fixed_camera and (n <= cfg.track_camera_frames or n % max(cfg.track_camera_every, 1) == 0):
            # once the camera has settled, a few warm-started steps a time (~25 ms for 100 frames on one CPU core)
            self.T_camera_base, qs = adjust_static_camera(
                self.kps, self.fk, camera, np.stack([f[0] for f in self.frames]),
                np.stack([f[1] for f in self.frames]), np.stack([f[2] for f in self.frames]), self.T_camera_base,
                steps=8 if n <= cfg.track_camera_frames else 3, min_confidence=cfg.min_confidence,
                sigma_px=cfg.track_keypoint_std_px)
            self.frames = [(u, c, q) for (u, c, _), q in zip(self.frames, qs)]
        res = KeypointResiduals(self.kps, self.fk, self.T_camera_base, camera, uv, confidence, cfg.min_confidence,
                                cfg.track_keypoint_std_px)
        event = "update"
        if res.usable < 6:  # the robot left the view or is hidden: ride on the motion model
            up, event = FilterUpdate(q_pred, np.sqrt(np.diag(self.filter.P)[:self.filter.J]), float("nan"), 0.0), \
                "coast"
        else:
            x, P = self.filter.x.copy(), self.filter.P.copy()
            up = self.filter.update(res)
            if up.innovation > cfg.track_gate:
                self.filter.x, self.filter.P = x, P
                up, event = FilterUpdate(q_pred, np.sqrt(np.diag(P)[:self.filter.J]), res.rms_px(q_pred),
                                         up.innovation), "coast"
            recent = float(np.median(self.errors[-10:])) if self.errors else up.rms_px
            # the floor of 2 px: a jump from a sub-pixel fit to 2 px is keypoint noise, not a lost track
            if up.rms_px > min(cfg.reinit_rms_px, cfg.reinit_loss_factor * max(recent, 2.0)):
                up, event = self._reinit(res, uv, confidence, camera, q_pred, up)
        lost = bool(np.isfinite(up.rms_px) and up.rms_px > cfg.reinit_rms_px)
        if np.isfinite(up.rms_px):
            self.errors = (self.errors + [up.rms_px])[-10:]
        self.frames[-1] = (self.frames[-1][0], self.frames[-1][1], up.q)
        return TrackedFrame(up.q, up.q_std, self.T_camera_base.copy(), up.rms_px, up.innovation, event, lost)

    def _reinit(self, res: KeypointResiduals, uv: np.ndarray, confidence: np.ndarray, camera: PinholeCamera,
                q_pred: np.ndarray, current: FilterUpdate) -> tuple[FilterUpdate, str]:
        """Joints from restarts under the current camera (the prediction ``q_pred`` [J] and the current estimate
        among them), taken (the filter restarted there) if they fit the keypoints clearly better."""
        cfg = self.config
        fits = joints_from_keypoints(self.kps, self.fk, uv, confidence, camera, cfg.restarts, 1,
                                     q_extra=np.stack([q_pred, current.q]), min_confidence=cfg.min_confidence,
                                     T_camera_base=self.T_camera_base)
        # clearly better only: a restart that fits one frame's keypoints a little better is as often a mirrored
        # wrist that this frame's detections happen to favour
        if not fits or fits[0].rms_px >= 0.75 * current.rms_px:
            return current, "coast" if current.innovation > cfg.track_gate else "update"
        self.filter.start(fits[0].q)
        return self.filter.update(res), "reinit"


__all__ = ["FilterUpdate", "JointFilter", "KeypointResiduals", "StaticCameraTracker", "TrackedFrame",
           "adjust_static_camera"]
