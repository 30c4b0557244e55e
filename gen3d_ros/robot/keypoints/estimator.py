"""``KeypointPoseEstimator``: robot pose from one image by learned keypoints, then Dr. Robot render-and-compare.

    kpe = KeypointPoseEstimator(KeypointDetector.load(kp_path), PoseEstimator(drrobot_model, PoseEstimatorConfig()))
    est = kpe.estimate(rgb, camera, q=joint_state)   # known joints: camera by PnP + RANSAC, then refinement
    est = kpe.estimate(rgb, camera)                   # unknown joints: FK fitting from restarts, then refinement
    cal = kpe.calibrate(frames, camera, joint_states) # the static T_camera_base over N frames, with its spread
    est = kpe.track_step(rgb, camera, previous)       # video: joint filter + static camera (keypoints/tracking.py)

Frames and units: ``q`` radians / metres (order ``fk.joint_names``); ``T_camera_base`` base -> OpenCV camera,
metres; images ``[H, W, 3]`` RGB (uint8 or float in [0, 1]) on any background: the network's robot mask replaces
the background by the Dr. Robot model's before the photometric comparison.

Without a Dr. Robot model (``pose=None``) or with ``config.refine = False`` the keypoint solution is the answer
(the bench's "keypoint-only" ablation); without a usable detection (< 6 confident keypoints) the estimate falls
back to the model's silhouette search (:meth:`PoseEstimator.estimate`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from gen3d_ros.geometry.camera import PinholeCamera
from gen3d_ros.robot.keypoints.detector import Detection, KeypointDetector
from gen3d_ros.robot.keypoints.solve import (KeypointFit, camera_from_keypoints, fit_joints_and_camera,
                                             joints_from_keypoints)
from gen3d_ros.robot.keypoints.tracking import StaticCameraTracker
from gen3d_ros.robot.kinematics import ForwardKinematics
from gen3d_ros.robot.pose.config import PoseEstimate
from gen3d_ros.robot.pose.images import image_to_tensor, make_level


@dataclass
class KeypointPoseConfig:
    """Settings of :class:`KeypointPoseEstimator` (pixels of the input image, Adam steps)."""

    min_confidence: float = 0.2     # keypoints below this heatmap mass are left out
    restarts: int = 48              # unknown joints: joint restarts of the FK fit
    keep: int = 3                   # unknown joints: fitted hypotheses refined by render-and-compare
    # render-and-compare refinement after the keypoint solution: off by default because on the test arm it made
    # every mode worse (bench/results/pose_estimation.md: its Dr. Robot model is biased by a few mm); track_step
    # refines when track_refine_iterations > 0 and this is on
    refine: bool = False
    refine_iterations: int = 40     # Adam steps of that refinement (single image)
    refine_scale: float = 0.5       # its image scale
    refine_lr_scale: float = 0.3    # its learning-rate factor (the keypoint solution is already close)
    # tracking with a camera static relative to the base (keypoints/tracking.py): a constant-velocity joint filter
    # and one bundle-adjusted camera; off: every frame fits joints and camera (a moving camera)
    track_static_camera: bool = True
    track_accel_std: float = 0.1    # its joint acceleration noise, rad / frame^2 for a joint with a 2 pi range
    track_keypoint_std_px: float = 1.0  # its keypoint noise (px, at confidence 1)
    track_gate: float = 6.0         # an update further than this (Mahalanobis) from the prediction is not taken
    track_camera_frames: int = 20   # the camera is bundle-adjusted every frame for this many frames, ...
    track_camera_every: int = 5     # ... then every this many frames ...
    track_camera_window: int = 100  # ... over the last this many frames
    track_ik_steps: int = 10        # moving camera: Levenberg-Marquardt steps from the previous frame
    track_prior_weight: float = 20.0  # moving camera: px^2 per rad^2 pulling the joints towards the previous frame
    track_camera_prior_weight: float = 1e5  # moving camera: px^2 per rad^2 / m^2 pulling the camera to the last one
    track_refine_iterations: int = 8  # tracking: render-and-compare steps per frame (0: keypoints only)
    reinit_rms_px: float = 6.0      # tracking: re-initialise when the keypoint error exceeds this ...
    reinit_loss_factor: float = 2.0  # ... or it (or the render loss) jumps above this x the recent median
    accept_rms_factor: float = 1.25  # a refined pose is kept if its keypoint error is within this x its fit's


@dataclass
class Calibration:
    """A static camera from N frames: ``T_camera_base`` [4, 4] (rotation: chordal mean; translation: median of the
    inlier frames), the spread of the inlier frames about it (``translation_std_m``, ``rotation_std_deg``),
    ``frames_used`` of ``frames``, every frame's estimate (``per_frame`` [N, 4, 4], NaN where none) and which of
    them were averaged (``inliers`` [N] bool)."""

    T_camera_base: np.ndarray
    translation_std_m: float
    rotation_std_deg: float
    frames_used: int
    frames: int
    per_frame: np.ndarray
    inliers: np.ndarray | None = None

    @property
    def T_base_camera(self) -> np.ndarray:
        from gen3d_ros.geometry.rigid import invert_rigid

        return invert_rigid(self.T_camera_base)


class KeypointPoseEstimator:
    """Keypoints (:class:`KeypointDetector`) + geometry (:mod:`~.solve`) + optional refinement through a
    :class:`~gen3d_ros.robot.pose.estimator.PoseEstimator`'s differentiable renderer."""

    def __init__(self, detector: KeypointDetector, pose=None, config: KeypointPoseConfig | None = None,
                 fk: ForwardKinematics | None = None) -> None:
        self.detector = detector
        self.pose = pose
        self.config = config or KeypointPoseConfig()
        if fk is None:
            if pose is None:
                raise ValueError("give a PoseEstimator (pose=) or a ForwardKinematics (fk=)")
            fk = pose.fk
        self.fk64 = _float64_copy(fk)
        self.joint_names = list(fk.joint_names)
        missing = set(detector.keypoints.links) - set(fk.link_names)
        if missing:
            raise ValueError(f"the keypoint network's links {sorted(missing)} are not links of robot "
                             f"{getattr(fk, 'robot_name', '?')!r}: a network of another robot?")
        self._losses: list[float] = []
        self._tracker: StaticCameraTracker | None = None
        self._last: PoseEstimate | None = None  # what track_step returned last (the tracker continues from it)

    # ------------------------------------------------------------------------------------------ single image

    def estimate(self, image: np.ndarray, camera: PinholeCamera, q: np.ndarray | None = None,
                 refine: bool | None = None, q_guess: np.ndarray | None = None,
                 T_camera_base: np.ndarray | None = None) -> PoseEstimate:
        """One image: known joints ``q`` [J] -> camera; a known camera ``T_camera_base`` [4, 4] -> joints; neither
        -> joints and camera (``q_guess`` [J]: an extra restart). ``refine`` overrides ``config.refine``."""
        t0 = time.perf_counter()
        det = self.detector.detect(image)
        t_det = time.perf_counter() - t0
        do_refine = (self.config.refine if refine is None else refine) and self.pose is not None
        fits = self._fits(det, camera, q, q_guess, T_camera_base)
        if not fits:
            if self.pose is None:
                raise RuntimeError("fewer than 6 keypoints were found and there is no Dr. Robot model to fall "
                                   "back to")
            est = self.pose.estimate(self._target(image, det), camera, mask=det.mask > 0.5, q=q,
                                     T_camera_base=T_camera_base)
            return replace(est, seconds=time.perf_counter() - t0, phase_seconds={"detect": t_det, "fallback": 1.0})
        t_fit = time.perf_counter() - t0 - t_det
        if do_refine:
            est = self._refine(image, det, camera, fits, optimise_q=q is None,
                               iterations=self.config.refine_iterations, scale=self.config.refine_scale,
                               optimise_T=T_camera_base is None)
        else:
            est = self._plain(fits[0], len(fits))
        return replace(est, seconds=time.perf_counter() - t0,
                       phase_seconds={"detect": t_det, "keypoint_fit": t_fit,
                                      "refine": time.perf_counter() - t0 - t_det - t_fit})

    def _fits(self, det: Detection, camera: PinholeCamera, q: np.ndarray | None, q_guess: np.ndarray | None,
              T_camera_base: np.ndarray | None = None) -> list[KeypointFit]:
        """Keypoint solutions, best first: PnP for known joints, FK fitting from restarts otherwise."""
        cfg, kps = self.config, self.detector.keypoints
        if q is not None:
            q = np.asarray(q, np.float64)
            with torch.no_grad():
                p = kps.points(self.fk64, torch.as_tensor(q)).numpy()
            T, inl = camera_from_keypoints(p, det.uv, det.confidence, camera, cfg.min_confidence)
            if T is None:
                return []
            conf = np.where(inl, det.confidence, 0.0)
            return fit_joints_and_camera(kps, self.fk64, det.uv, conf, camera, q[None], T[None], steps=10,
                                         min_confidence=cfg.min_confidence, fix_joints=True)
        extra = None if q_guess is None else np.asarray(q_guess, np.float64)[None]
        return joints_from_keypoints(kps, self.fk64, det.uv, det.confidence, camera, cfg.restarts, cfg.keep,
                                     q_extra=extra, min_confidence=cfg.min_confidence, T_camera_base=T_camera_base)

    def _plain(self, fit: KeypointFit, hypotheses: int) -> PoseEstimate:
        return PoseEstimate(q=fit.q.copy(), T_camera_base=fit.T_camera_base.copy(), loss=fit.rms_px, iterations=0,
                            converged=True, seconds=0.0, joint_names=list(self.joint_names),
                            loss_terms={"keypoint_rms_px": fit.rms_px}, hypotheses=hypotheses)

    def _target(self, image: np.ndarray, det: Detection) -> torch.Tensor:
        """The image with everything but the robot (the network's soft mask) replaced by the model's background."""
        rgb = image_to_tensor(image, self.pose.device)
        m = torch.as_tensor(det.mask, device=rgb.device)[..., None]
        return m * rgb + (1 - m) * self.pose.background

    def _refine(self, image: np.ndarray, det: Detection, camera: PinholeCamera, fits: list[KeypointFit],
                optimise_q: bool, iterations: int, scale: float, prior: PoseEstimate | None = None,
                optimise_T: bool = True) -> PoseEstimate:
        """Render-and-compare refinement of every fit in one batch; the lowest render loss wins (hypotheses ranked
        by the render loss), among refined poses the keypoints still agree with and the fits they replaced."""
        pose, cfg = self.pose, self.config
        dev = pose.device
        level = make_level(self._target(image, det), torch.as_tensor(det.mask > 0.5, dtype=torch.float32,
                                                                      device=dev), camera, scale)
        q = torch.as_tensor(np.stack([f.q for f in fits]), dtype=torch.float32, device=dev)
        T = torch.as_tensor(np.stack([f.T_camera_base for f in fits]), dtype=torch.float32, device=dev)
        state = pose.refiner.make_state(q, T)
        prior_t = None
        if prior is not None:
            q_prev = torch.as_tensor(prior.q, dtype=torch.float32, device=dev).expand(len(fits), -1)
            T_prev = torch.as_tensor(prior.T_camera_base, dtype=torch.float32, device=dev).expand(len(fits), 4, 4)
            t_prev = (T_prev[:, :3, :3] @ state.cam.pivot[:, :, None])[..., 0] + T_prev[:, :3, 3]
            prior_t = (q_prev, T_prev[:, :3, :3], t_prev)
        initial_loss = pose.refiner.score(state, level)
        refined = pose.refiner.optimise(state, level, iterations, optimise_q, optimise_T, prior=prior_t,
                                        lr_scale=cfg.refine_lr_scale)
        # The refinement may move a pose only as far as the keypoints allow: where the refined pose reprojects the
        # keypoints worse than accept_rms_factor x (and 0.5 px more than) its starting fit, the model's own bias
        # (27.7 dB PSNR for the test arm) is pulling it, and the fit is kept
        r_q, r_T = pose.refiner.joints(refined.state), refined.state.cam()
        rms = self._keypoint_rms(det, camera, r_q.detach().double().cpu().numpy(), r_T.detach().double().cpu().numpy())
        fit_rms = np.array([f.rms_px for f in fits])
        keep = rms <= np.maximum(cfg.accept_rms_factor * fit_rms, fit_rms + 0.5)
        # ranked by the refined render loss (what tells mirror-image hypotheses apart); the winner's refinement is
        # then kept or, where the keypoints disagree with it, undone
        best = int(torch.argmin(refined.loss))
        idx = torch.tensor([best])
        if bool(keep[best]):
            return pose.refiner.result(pose.refiner.select(refined.state, idx), refined.terms[idx],
                                       refined.steps * len(fits), refined.converged, 0.0, len(fits))
        est = self._plain(fits[best], len(fits))
        return replace(est, loss=float(initial_loss[best]), iterations=refined.steps * len(fits),
                       loss_terms={"keypoint_rms_px": fits[best].rms_px, "refinement_rejected": 1.0})

    def _keypoint_rms(self, det: Detection, camera: PinholeCamera, q: np.ndarray, T: np.ndarray) -> np.ndarray:
        """``[B]`` confidence-weighted RMS reprojection error (px, each keypoint's error capped at 9 px) of poses
        ``q [B, J]``, ``T [B, 4, 4]`` against the detected keypoints (the measure of :class:`KeypointFit`)."""
        from gen3d_ros.robot.keypoints.definition import project

        conf = np.where(det.confidence >= self.config.min_confidence, det.confidence, 0.0)
        with torch.no_grad():
            uv, _ = project(self.detector.keypoints.points(self.fk64, torch.as_tensor(q)), torch.as_tensor(T),
                            camera)
        e = np.minimum(np.linalg.norm(uv.numpy() - det.uv[None], axis=-1), 9.0)
        return np.sqrt((e ** 2 * conf).sum(-1) / max(conf.sum(), 1e-9))

    # ------------------------------------------------------------------------------------------ calibration

    def calibrate(self, frames, camera: PinholeCamera, joints, refine: bool | None = None) -> Calibration:
        """The static camera from ``frames`` (each ``[H, W, 3]``) and their joint readings ``joints`` ([N, J]):
        one known-joints estimate per frame, then :func:`average_cameras`. Raises ValueError when no frame gives a
        camera."""
        per = np.full((len(frames), 4, 4), np.nan)
        for i, (image, q) in enumerate(zip(frames, joints)):
            try:
                per[i] = self.estimate(image, camera, q=q, refine=refine).T_camera_base
            except RuntimeError:
                continue
        return average_cameras(per)

    # ------------------------------------------------------------------------------------------ tracking

    def reset(self) -> None:
        """Forget the tracking state (the static-camera tracker, the render losses of recent frames)."""
        self._losses.clear()
        self._tracker, self._last = None, None

    def track_step(self, image: np.ndarray, camera: PinholeCamera, previous: PoseEstimate | None,
                   T_camera_base: np.ndarray | None = None) -> PoseEstimate:
        """One video frame; ``previous`` None: the first (a single-image estimate from restarts). With
        ``config.track_static_camera`` (default) the camera is static relative to the base: a constant-velocity
        joint filter updated from each frame's keypoints, one camera bundle-adjusted over the recent frames, an
        innovation gate and re-initialisation from restarts when the keypoint error jumps
        (:class:`~gen3d_ros.robot.keypoints.tracking.StaticCameraTracker`). Otherwise every frame re-anchors joints
        and camera on its keypoints with a pull towards the previous frame. With ``config.refine`` and
        ``track_refine_iterations`` > 0 a few render-and-compare steps follow; the frame is re-initialised when the
        render loss jumps above ``reinit_loss_factor`` x the median of recent frames.
        ``T_camera_base``: a calibrated camera, held fixed (static) or the starting camera (moving)."""
        t0 = time.perf_counter()
        cfg = self.config
        if previous is None:
            self.reset()
            est = self.estimate(image, camera, T_camera_base=T_camera_base)
        else:
            det = self.detector.detect(image)
            if cfg.track_static_camera:
                est = self._track_static(image, det, camera, previous, T_camera_base)
            else:
                est = self._track_moving(image, det, camera, previous, T_camera_base)
        self._losses.append(est.loss)
        self._last = replace(est, seconds=time.perf_counter() - t0)
        return self._last

    def _track_static(self, image: np.ndarray, det: Detection, camera: PinholeCamera, previous: PoseEstimate,
                      T_camera_base: np.ndarray | None) -> PoseEstimate:
        """A frame of the static-camera tracker, started at ``previous`` unless it is what it returned last."""
        cfg = self.config
        if self._tracker is None or previous is not self._last:
            T = previous.T_camera_base if T_camera_base is None else T_camera_base
            self._tracker = StaticCameraTracker(self.detector.keypoints, self.fk64, cfg, T, T_camera_base is not None)
            self._tracker.start(previous.q)
        fr = self._tracker.step(det.uv, det.confidence, camera)
        if fr.lost:  # not even restarts under this camera fit: joints (and camera) from scratch
            est = self.estimate(image, camera, q_guess=fr.q, T_camera_base=T_camera_base)
            self._tracker = StaticCameraTracker(self.detector.keypoints, self.fk64, cfg, est.T_camera_base,
                                                T_camera_base is not None)
            self._tracker.start(est.q)
            return est
        fit = KeypointFit(fr.q, fr.T_camera_base, fr.rms_px)
        est = replace(self._plain(fit, cfg.restarts if fr.event == "reinit" else 1),
                      loss_terms={"keypoint_rms_px": fr.rms_px, "innovation": fr.innovation,
                                  "coast": float(fr.event == "coast"), "reinit": float(fr.event == "reinit")})
        if self.pose is not None and cfg.refine and cfg.track_refine_iterations > 0 and np.isfinite(fr.rms_px):
            est = self._refine(image, det, camera, [fit], True, cfg.track_refine_iterations, 0.5, prior=previous,
                               optimise_T=False)
            recent = self._losses[-10:]
            if recent and est.loss > cfg.reinit_loss_factor * float(np.median(recent)):
                est = self.estimate(image, camera, q_guess=fr.q, T_camera_base=fr.T_camera_base)
                self._tracker.start(est.q)
        return est

    def _track_moving(self, image: np.ndarray, det: Detection, camera: PinholeCamera, previous: PoseEstimate,
                      T_camera_base: np.ndarray | None) -> PoseEstimate:
        """A frame from a moving camera: the FK fit re-anchored on this frame's keypoints from the previous
        estimate (joint and camera priors towards it), re-initialised from restarts when its error exceeds
        ``reinit_rms_px``."""
        cfg = self.config
        T_start = previous.T_camera_base if T_camera_base is None else np.asarray(T_camera_base, np.float64)
        fixed = T_camera_base is not None
        fits = fit_joints_and_camera(self.detector.keypoints, self.fk64, det.uv, det.confidence, camera,
                                     np.asarray(previous.q, np.float64)[None], T_start[None], steps=cfg.track_ik_steps,
                                     min_confidence=cfg.min_confidence, q_prior=previous.q,
                                     prior_weight=cfg.track_prior_weight, fix_camera=fixed,
                                     camera_prior_weight=cfg.track_camera_prior_weight)
        reinit = not fits or fits[0].rms_px > cfg.reinit_rms_px
        if not reinit and self.pose is not None and cfg.refine and cfg.track_refine_iterations > 0:
            est = self._refine(image, det, camera, fits, True, cfg.track_refine_iterations, 0.5, prior=previous,
                               optimise_T=not fixed)
            recent = self._losses[-10:]
            reinit = bool(recent) and est.loss > cfg.reinit_loss_factor * float(np.median(recent))
        elif not reinit:
            est = self._plain(fits[0], 1)
        if reinit:
            est = self.estimate(image, camera, q_guess=previous.q, T_camera_base=T_camera_base)
        return est


def average_cameras(per_frame: np.ndarray) -> Calibration:
    """The static camera of per-frame estimates ``per_frame [N, 4, 4]`` (NaN rows: frames without one): frames
    further than 3 median absolute deviations (and 1 cm) from the median translation, or (and 1 deg) from the
    chordal mean rotation of those, are left out; the rest averaged (chordal L2 mean of the rotations, per-axis median
    translation); their RMS deviations from it are the uncertainty. Raises ValueError when no frame has an
    estimate."""
    per = np.asarray(per_frame, np.float64)
    ok = np.isfinite(per.reshape(len(per), -1)).all(axis=1)
    if not ok.any():
        raise ValueError(f"no camera pose from any of the {len(per)} frames (the robot not in view?)")
    t = per[ok, :3, 3]
    dev = np.linalg.norm(t - np.median(t, axis=0), axis=1)
    inl = dev <= max(3 * np.median(dev) * 1.4826, 0.01)
    # a mirrored PnP solution can land near the right translation: its rotation gives it away
    ang = _angles_deg(per[ok][inl, :3, :3], _chordal_mean(per[ok][inl, :3, :3]))
    keep = ang <= max(3 * np.median(ang) * 1.4826, 1.0)
    inl[np.flatnonzero(inl)[~keep]] = False
    Rs, ts = per[ok][inl, :3, :3], t[inl]
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = _chordal_mean(Rs), np.median(ts, axis=0)
    inliers = np.zeros(len(per), bool)
    inliers[np.flatnonzero(ok)[inl]] = True
    return Calibration(T, float(np.sqrt(((ts - T[:3, 3]) ** 2).sum(1).mean())),
                       float(np.sqrt(np.mean(np.square(_angles_deg(Rs, T[:3, :3]))))), int(inl.sum()), len(per), per,
                       inliers)


def _chordal_mean(Rs: np.ndarray) -> np.ndarray:
    """The rotation nearest (Frobenius) to the sum of ``Rs`` [n, 3, 3]: the chordal L2 mean."""
    U, _, Vt = np.linalg.svd(Rs.sum(axis=0))
    return U @ np.diag([1, 1, np.linalg.det(U @ Vt)]) @ Vt


def _angles_deg(Rs: np.ndarray, R: np.ndarray) -> np.ndarray:
    """[n] angles (degrees) between each of ``Rs`` [n, 3, 3] and ``R``."""
    cos = (np.einsum("ij,nij->n", R, Rs) - 1) / 2  # trace(R^T R_i)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _float64_copy(fk: ForwardKinematics) -> ForwardKinematics:
    """A float64 CPU copy of ``fk`` (the keypoint geometry runs in double precision on the host)."""
    import copy

    return copy.deepcopy(fk).to(device="cpu", dtype=torch.float64)


__all__ = ["Calibration", "KeypointPoseConfig", "KeypointPoseEstimator", "average_cameras"]
