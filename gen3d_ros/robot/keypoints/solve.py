"""Poses from detected 2D keypoints: the camera given the joints (PnP), and joints + camera together (FK fitting).

    T, inliers = camera_from_keypoints(p_base, uv, conf, camera)          # known joints: OpenCV PnP + RANSAC + LM
    hyps = joints_from_keypoints(kps, fk, uv, conf, camera, restarts=48)   # unknown joints: [(q, T, rms px)], best first

Frames and units: ``p_base`` [K, 3] metres in the robot's base frame; ``uv`` [K, 2] pixels (continuous, OpenCV
centres at +0.5); ``T_camera_base`` 4x4 maps base-frame points to the OpenCV camera frame; ``q`` radians / metres.
Keypoints with confidence below ``min_confidence`` are left out (out of view, or the network did not find them).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from gen3d_ros.geometry.camera import PinholeCamera
from gen3d_ros.robot.keypoints.definition import KeypointSet, project
from gen3d_ros.robot.kinematics import ForwardKinematics


def _K(camera: PinholeCamera) -> np.ndarray:
    # OpenCV's pixel convention puts pixel centres at integers: our continuous uv minus 0.5
    return np.array([[camera.fx, 0, camera.cx - 0.5], [0, camera.fy, camera.cy - 0.5], [0, 0, 1]], np.float64)


def _matrix(rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = cv2.Rodrigues(np.asarray(rvec, np.float64).reshape(3))[0]
    T[:3, 3] = np.asarray(tvec, np.float64).reshape(3)
    return T


def camera_from_keypoints(points_base: np.ndarray, uv: np.ndarray, confidence: np.ndarray, camera: PinholeCamera,
                          min_confidence: float = 0.2, reprojection_px: float | None = None,
                          T_guess: np.ndarray | None = None) -> tuple[np.ndarray | None, np.ndarray]:
    """``(T_camera_base [4, 4] or None, inlier mask [K])`` from known 3D keypoints and their detections.

    ``cv2.solvePnPRansac`` (EPnP hypotheses, reprojection threshold ``reprojection_px``, default 1.2 % of the
    image diagonal, at least 3 px) on the confident keypoints, then ``cv2.solvePnPRefineLM`` on the inliers.
    ``T_guess``: a previous camera to start from (tracking). None when fewer than 6 keypoints are usable or no
    pose has 6 inliers.
    """
    use = np.flatnonzero(np.asarray(confidence) >= min_confidence)
    inliers = np.zeros(len(uv), bool)
    if len(use) < 6:
        return None, inliers
    obj = np.ascontiguousarray(points_base[use], np.float64)
    img = np.ascontiguousarray(np.asarray(uv, np.float64)[use] - 0.5)
    K = _K(camera)
    thr = reprojection_px or max(3.0, 0.012 * float(np.hypot(camera.width, camera.height)))
    kwargs = {}
    if T_guess is not None:
        kwargs = dict(useExtrinsicGuess=True, rvec=cv2.Rodrigues(T_guess[:3, :3])[0], tvec=T_guess[:3, 3].copy())
    ok, rvec, tvec, idx = cv2.solvePnPRansac(obj, img, K, None, iterationsCount=200, reprojectionError=thr,
                                             confidence=0.999, flags=cv2.SOLVEPNP_EPNP, **kwargs)
    if not ok or idx is None or len(idx) < 6:
        return None, inliers
    idx = idx.reshape(-1)
    rvec, tvec = cv2.solvePnPRefineLM(obj[idx], img[idx], K, None, rvec, tvec)
    T = _matrix(rvec, tvec)
    if T[2, 3] <= 0:
        return None, inliers
    inliers[use[idx]] = True
    return T, inliers


@dataclass
class KeypointFit:
    """A joints + camera hypothesis fitted to keypoints: ``q`` [J], ``T_camera_base`` [4, 4], ``rms_px`` (robust
    RMS reprojection error of the confident keypoints, pixels)."""

    q: np.ndarray
    T_camera_base: np.ndarray
    rms_px: float


def _rodrigues(r: Tensor) -> Tensor:
    """Rotation matrix ``[3, 3]`` of an axis-angle vector ``r [3]`` (differentiable, also at 0; no in-place ops,
    so :func:`torch.func.vmap` / ``jacfwd`` can batch it)."""
    theta2 = (r * r).sum()
    theta = torch.sqrt(theta2 + 1e-18)
    zero = torch.zeros((), dtype=r.dtype, device=r.device)
    K = torch.stack([torch.stack([zero, -r[2], r[1]]), torch.stack([r[2], zero, -r[0]]),
                     torch.stack([-r[1], r[0], zero])])
    # sin(t)/t and (1 - cos t)/t^2 with their Taylor series near 0 (no division by a vanishing angle)
    small = theta < 1e-4
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / torch.where(small, 1.0, theta))
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / torch.where(small, 1.0, theta2))
    return torch.eye(3, dtype=r.dtype, device=r.device) + a * K + b * (K @ K)


_FD_STEP = 1e-6  # forward-difference step of the Jacobians (logits, radians, metres)


def _robust_cost(res: Tensor, conf: Tensor, huber_px: float) -> tuple[Tensor, Tensor]:
    """``(cost [B], IRLS weights [B, M])`` of residuals ``res [B, M]`` whose first ``2 K`` entries are keypoint
    pixel errors (confidence ``conf [K]`` x Huber of each keypoint's distance) and the rest plain (priors)."""
    K2 = 2 * len(conf)
    e = res[:, :K2].reshape(res.shape[0], -1, 2).norm(dim=-1)
    rho = torch.where(e <= huber_px, 0.5 * e ** 2, huber_px * (e - 0.5 * huber_px))
    w = conf * torch.where(e <= huber_px, torch.ones_like(e), huber_px / e.clamp_min(1e-9))
    w = torch.cat([w.repeat_interleave(2, dim=1), torch.ones_like(res[:, K2:])], 1)
    return (rho * conf).sum(-1) + 0.5 * (res[:, K2:] ** 2).sum(-1), w


@torch.no_grad()
def _levenberg_marquardt(residual, x: Tensor, args: tuple, free: Tensor, conf: Tensor, huber_px: float,
                         steps: int) -> tuple[Tensor, Tensor]:
    """Batched, robust (IRLS) Levenberg-Marquardt of ``residual(x_b, *args_b) -> [M]`` from ``x [B, D]``; only the
    parameters where ``free`` [D] is 1 move. Returns the best ``(x [B, D], residuals [B, M])``."""
    from torch.func import vmap

    res_fn = vmap(residual)
    B, D = x.shape
    eye = torch.eye(D, dtype=x.dtype) * _FD_STEP
    args_rep = tuple(a.repeat_interleave(D, dim=0) for a in args)

    def jac(x: Tensor) -> Tensor:
        # forward differences, all B x D perturbed parameter vectors in one batched call: forward-mode autodiff
        # through the kinematics costs ~17 ms a step here, this ~2 (float64: the truncation error is ~1e-6 px)
        r = res_fn((x[:, None, :] + eye).reshape(B * D, D), *args_rep).reshape(B, D, -1)
        return ((r - res[:, None, :]) / _FD_STEP).transpose(1, 2)

    res = res_fn(x, *args)
    cost, w = _robust_cost(res, conf, huber_px)
    lam = torch.full((x.shape[0],), 1e-2, dtype=x.dtype)
    for _ in range(steps):
        Jm = jac(x) * free  # [B, M, D]
        JtW = Jm.transpose(1, 2) * w[:, None, :]
        H = JtW @ Jm
        g = (JtW @ res[..., None])[..., 0]
        A = H + torch.diag_embed(lam[:, None] * torch.diagonal(H, dim1=1, dim2=2) + 1e-9 + (1 - free))
        x_new = x - torch.linalg.solve(A, g[..., None])[..., 0] * free
        res_new = res_fn(x_new, *args)
        cost_new, w_new = _robust_cost(res_new, conf, huber_px)
        better = cost_new < cost
        x = torch.where(better[:, None], x_new, x)
        res = torch.where(better[:, None], res_new, res)
        w = torch.where(better[:, None], w_new, w)
        cost = torch.where(better, cost_new, cost)
        lam = torch.where(better, lam * 0.3, lam * 10).clamp(1e-7, 1e7)
    return x, res


def fit_joints_and_camera(kps: KeypointSet, fk: ForwardKinematics, uv: np.ndarray, confidence: np.ndarray,
                          camera: PinholeCamera, q0: np.ndarray, T0: np.ndarray, steps: int = 30,
                          min_confidence: float = 0.2, fix_joints: bool = False, huber_px: float = 3.0,
                          q_prior: np.ndarray | None = None, prior_weight: float = 0.0,
                          camera_prior_weight: float = 0.0, fix_camera: bool = False) -> list[KeypointFit]:
    """Refine hypotheses ``q0 [B, J]``, ``T0 [B, 4, 4]`` by minimising the confidence-weighted, Huber-robust
    reprojection error of the keypoints: batched Levenberg-Marquardt (``steps`` iterations, Jacobians by batched forward
    differences) over joint logits (limits by construction), a camera rotation increment and the translation.
    ``q_prior`` [J] with ``prior_weight`` (px^2 per rad^2) pulls the joints towards a previous estimate, and
    ``camera_prior_weight`` (px^2 per rad^2 of rotation and per m^2 of translation) the camera towards ``T0``
    (tracking a static or slowly moving camera: the temporal smoothing). ``fix_joints`` / ``fix_camera`` keep
    those parameters at their starting values (known joints / a calibrated camera)."""
    dt = torch.float64
    lo, hi = fk.lower.to(dt), fk.upper.to(dt)
    J = len(lo)
    conf = torch.as_tensor(np.where(confidence >= min_confidence, confidence, 0.0), dtype=dt)
    target = torch.as_tensor(uv, dtype=dt)
    q0 = torch.as_tensor(np.asarray(q0), dtype=dt).clamp(lo + 1e-4 * (hi - lo), hi - 1e-4 * (hi - lo))
    T0 = torch.as_tensor(np.asarray(T0), dtype=dt)
    B = len(T0)
    z0 = torch.logit((q0 - lo) / (hi - lo))
    x = torch.cat([z0, torch.zeros(B, 3, dtype=dt), T0[:, :3, 3]], dim=1)  # [B, J + 6]
    prior = None if q_prior is None or prior_weight <= 0 else torch.as_tensor(q_prior, dtype=dt)
    sqrt_prior = float(np.sqrt(max(prior_weight, 0.0)))
    sqrt_cam = float(np.sqrt(max(camera_prior_weight, 0.0)))

    def residual(xb: Tensor, R0: Tensor, t0: Tensor) -> Tensor:
        q = lo + (hi - lo) * torch.sigmoid(xb[:J])
        R = _rodrigues(xb[J:J + 3]) @ R0
        p = kps.points(fk, q) @ R.T + xb[J + 3:]
        z = p[:, 2].clamp_min(1e-3)
        uvp = torch.stack([camera.fx * p[:, 0] / z + camera.cx, camera.fy * p[:, 1] / z + camera.cy], -1)
        res = (uvp - target).reshape(-1)
        if prior is not None:
            res = torch.cat([res, sqrt_prior * (q - prior)])
        if sqrt_cam > 0:
            res = torch.cat([res, sqrt_cam * xb[J:J + 3], sqrt_cam * (xb[J + 3:] - t0)])
        return res

    R0, t0 = T0[:, :3, :3], T0[:, :3, 3]
    free = torch.ones(J + 6, dtype=dt)
    if fix_joints:
        free[:J] = 0
    if fix_camera:
        free[J:] = 0
    x, res = _levenberg_marquardt(residual, x, (R0, t0), free, conf, huber_px, steps)
    with torch.no_grad():
        e = res[:, :2 * len(conf)].reshape(B, -1, 2).norm(dim=-1)
        rms = torch.sqrt((e.clamp(max=3 * huber_px) ** 2 * conf).sum(-1) / conf.sum().clamp_min(1e-9))
        q = lo + (hi - lo) * torch.sigmoid(x[:, :J])
    out = []
    for b in range(B):
        T = np.eye(4)
        T[:3, :3] = (_rodrigues(x[b, J:J + 3]) @ R0[b]).numpy()
        T[:3, 3] = x[b, J + 3:].numpy()
        out.append(KeypointFit(q[b].numpy().copy(), T, float(rms[b])))
    return out


def joints_from_keypoints(kps: KeypointSet, fk: ForwardKinematics, uv: np.ndarray, confidence: np.ndarray,
                          camera: PinholeCamera, restarts: int = 48, keep: int = 4, seed: int = 0,
                          q_extra: np.ndarray | None = None, min_confidence: float = 0.2,
                          T_camera_base: np.ndarray | None = None) -> list[KeypointFit]:
    """Joints and camera from keypoints alone: ``restarts`` joint configurations (scrambled Sobol within the
    limits, plus ``q_extra [M, J]`` if given), each with its camera from PnP on its own FK keypoints, refined
    together by :func:`fit_joints_and_camera`; returns the ``keep`` lowest-error fits, best first, skipping
    near-duplicates (joints within 3 deg). ``T_camera_base`` [4, 4]: a known camera (no PnP; joints only)."""
    fk64 = fk if fk.lower.dtype == torch.float64 else fk.to(torch.float64)
    lo, hi = fk64.lower.numpy(), fk64.upper.numpy()
    u = torch.quasirandom.SobolEngine(len(lo), scramble=True, seed=seed).draw(restarts).double().numpy()
    qs = lo + u * (hi - lo)
    if q_extra is not None:
        qs = np.concatenate([np.asarray(q_extra, np.float64).reshape(-1, len(lo)), qs])
    if T_camera_base is not None:
        T_all = np.repeat(np.asarray(T_camera_base, np.float64)[None], len(qs), axis=0)
        fits = fit_joints_and_camera(kps, fk64, uv, confidence, camera, qs, T_all, min_confidence=min_confidence,
                                     fix_camera=True)
    else:
        with torch.no_grad():
            pts = kps.points(fk64, torch.as_tensor(qs)).numpy()
        q_ok, T_ok = [], []
        for q, p in zip(qs, pts):
            T, _ = camera_from_keypoints(p, uv, confidence, camera, min_confidence, reprojection_px=1e3)
            if T is not None:
                q_ok.append(q)
                T_ok.append(T)
        if not q_ok:
            return []
        fits = fit_joints_and_camera(kps, fk64, uv, confidence, camera, np.stack(q_ok), np.stack(T_ok),
                                     min_confidence=min_confidence)
    fits.sort(key=lambda f: f.rms_px)
    out: list[KeypointFit] = []
    for f in fits:
        if all(np.abs(f.q - o.q).max() > np.radians(3) for o in out):
            out.append(f)
        if len(out) == keep:
            break
    return out


__all__ = ["KeypointFit", "camera_from_keypoints", "fit_joints_and_camera", "joints_from_keypoints"]
