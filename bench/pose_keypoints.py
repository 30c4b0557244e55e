"""The keypoint benchmark of ``bench/pose_estimation.py --urdf PATH``: known joints, unknown joints and tracking.

For any URDF: the keypoint network (``--keypoints``; else the packaged ``gen3d_ros/models/keypoints_<robot>.pt``;
else trained here with ``--kp-preset``) and the Dr. Robot model (``--checkpoint``; else the packaged one for the test
arm; else trained here with ``--drrobot-preset``). Held-out views: joints uniform in the middle 80 % of each range,
cameras at 5-60 deg elevation framing the posed robot from 1.0-1.5x the distance at which it just fits, rendered by
the mesh renderer (open3d) at ``--size`` px (default 256) and composited on randomised backgrounds: procedural
textures and two photos the network never saw in training (``HELD_OUT_PHOTOS``). Tracking: a ``--frames``-long
video of smooth joint motion (a sum of sinusoids per joint) from one static camera, on one background.

Methods in every mode: ``full`` (keypoints -> PnP / FK fit -> render-and-compare refinement), ``keypoint_only`` (no
refinement), ``refinement_only`` (the Dr. Robot estimator alone from its silhouette search, given the network's
mask: the method before this benchmark). Metrics (DREAM-style): ADD = mean distance of the link origins in the
camera frame (each by its own q and T_camera_base), its AUC over 0-10 cm, success = ADD < 5 cm, joint error =
mean absolute error over revolute joints (degrees), camera rotation / translation error, fps = 1 / median seconds.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from gen3d_ros.config import flatten_params

MODES = ("known_joints", "unknown_joints", "tracking")
KP_METHODS = ("full", "keypoint_only", "refinement_only")


def add_auc(add_m: np.ndarray, max_m: float = 0.1) -> float:
    """Area under the ADD accuracy curve over [0, max_m], normalised to [0, 1]."""
    thresholds = np.linspace(0.0, max_m, 101)
    return float(np.trapezoid([(add_m < t).mean() for t in thresholds], thresholds) / max_m)


def held_out_scenes(robot, n: int, size: int, fov: float, seed: int, frames: int = 0) -> dict:
    """``n`` held-out views (or, with ``frames``, one video of that many frames) composited on random backgrounds:
    ``q [n, J]``, ``T_camera_base [n, 4, 4]``, ``rgb [n, S, S, 3]`` uint8, ``mask [n, S, S]``, ``camera``."""
    from gen3d_ros.geometry.camera import PinholeCamera
    from gen3d_ros.robot.training.keypoint_data import HELD_OUT_PHOTOS, load_photos, random_backgrounds
    from gen3d_ros.sim.robot_dataset import (_bounding_sphere, _camera_keeping_robot_in_view, _hull_points,
                                             fitting_distance)
    from gen3d_ros.sim.robot_render import RobotMeshRenderer

    camera = PinholeCamera.from_fov(size, size, fov)
    renderer = RobotMeshRenderer(robot)
    hull_points, hull_link = _hull_points(renderer.mesh)
    rng = np.random.default_rng(seed)
    lo, hi = np.asarray(robot.lower, np.float64), np.asarray(robot.upper, np.float64)
    count = frames or n
    if frames:  # smooth motion: per joint two sinusoids around a random centre, within the middle 70 %
        t = np.arange(frames)[:, None]
        f1, f2 = rng.uniform(0.01, 0.03, len(lo)), rng.uniform(0.03, 0.06, len(lo))
        ph1, ph2 = rng.uniform(0, 2 * np.pi, (2, len(lo)))
        u = 0.5 + 0.22 * np.sin(2 * np.pi * f1 * t + ph1) + 0.13 * np.sin(2 * np.pi * f2 * t + ph2)
        qs = lo + u * (hi - lo)
        # the sphere around every pose of the video (tighter than the workspace's): the robot fills the view
        posed = np.concatenate([_posed_hull(renderer, q, hull_points, hull_link) for q in qs])
        centre = 0.5 * (posed.min(axis=0) + posed.max(axis=0))
        radius = float(np.linalg.norm(posed - centre, axis=1).max())
        distance = fitting_distance(radius, camera) * 1.05
        T_video = _camera_keeping_robot_in_view(renderer, qs[0], camera, rng.uniform(0, 2 * np.pi),
                                                math.radians(rng.uniform(15, 40)), distance, centre)
    else:
        qs = lo + (0.1 + 0.8 * rng.random((n, len(lo)))) * (hi - lo)
    out = {"q": qs, "T_camera_base": np.empty((count, 4, 4)), "rgb": np.empty((count, size, size, 3), np.float32),
           "mask": np.empty((count, size, size), bool), "camera": camera}
    for i, q in enumerate(qs):
        if frames:
            T = T_video
        else:
            centre, radius = _bounding_sphere(renderer.link_transforms(q), hull_points, hull_link)
            T = _camera_keeping_robot_in_view(renderer, q, camera, rng.uniform(0, 2 * np.pi),
                                              math.radians(rng.uniform(5, 60)),
                                              fitting_distance(radius, camera) * rng.uniform(1.0, 1.5), centre)
        r = renderer.render(q, T, camera)
        out["T_camera_base"][i], out["rgb"][i], out["mask"][i] = T, r.rgb, r.mask
    g = torch.Generator().manual_seed(seed)
    photos = torch.as_tensor(load_photos(size, HELD_OUT_PHOTOS))
    bg = random_backgrounds(1 if frames else count, size, photos, g, "cpu").permute(0, 2, 3, 1).numpy()
    m = out["mask"][..., None]
    # 8-bit, as a camera delivers them (and 4x smaller when stored)
    out["rgb"] = np.round(np.where(m, out["rgb"], bg) * 255).astype(np.uint8)
    return out


def _posed_hull(renderer, q: np.ndarray, points: np.ndarray, link: np.ndarray) -> np.ndarray:
    """The links' hull points ``[P, 3]`` posed at ``q`` (base frame, metres)."""
    T = renderer.link_transforms(q)[link]
    return np.einsum("pij,pj->pi", T[:, :3, :3], points) + T[:, :3, 3]


def joint_error(q_est, q_true) -> np.ndarray:
    """|q_est - q_true| per joint, wrapped to [0, pi] (rad): a revolute joint's angles 2 pi apart give the same
    link pose (UR arms range over +-2 pi). Prismatic joints (m) are far below pi and pass unchanged."""
    d = np.asarray(q_est, np.float64) - np.asarray(q_true, np.float64)
    return np.abs((d + np.pi) % (2 * np.pi) - np.pi)


def view_errors(fk64, q_true, T_true, q_est, T_est, angular: np.ndarray) -> dict:
    """Errors of one estimate: joint (deg, mean over revolute joints), camera rotation (deg) / translation (cm),
    ADD (m; link origins in the camera frame)."""
    with torch.no_grad():
        p_t = fk64(torch.as_tensor(np.asarray(q_true, np.float64)))[:, :3, 3].numpy()
        p_e = fk64(torch.as_tensor(np.asarray(q_est, np.float64)))[:, :3, 3].numpy()
    c_t = p_t @ T_true[:3, :3].T + T_true[:3, 3]
    c_e = p_e @ T_est[:3, :3].T + T_est[:3, 3]
    dq = joint_error(q_est, q_true)
    cos = (np.trace(T_est[:3, :3].T @ T_true[:3, :3]) - 1) / 2
    return {"joint": float(np.degrees(dq[angular]).mean()) if angular.any() else 0.0,
            "rot": math.degrees(math.acos(float(np.clip(cos, -1, 1)))),
            "trans": 100 * float(np.linalg.norm(T_est[:3, 3] - T_true[:3, 3])),
            "add": float(np.linalg.norm(c_e - c_t, axis=1).mean())}


def summarise(errors: list[dict], seconds: list[float]) -> dict:
    """The flat metrics of a list of :func:`view_errors` results."""
    add = np.array([e["add"] for e in errors])
    ok = [e for e in errors if np.isfinite(e["add"])]

    def stat(fn, key: str) -> float | None:  # over the views with an estimate; None when none had one
        return float(fn([e[key] for e in ok])) if ok else None

    add_median = float(np.median(add))
    return {"add_auc": add_auc(add), "success_rate": float((add < 0.05).mean()),
            "add_cm_median": 100 * add_median if np.isfinite(add_median) else None,
            "joint_err_deg_median": stat(np.median, "joint"), "joint_err_deg_mean": stat(np.mean, "joint"),
            "cam_rot_err_deg_median": stat(np.median, "rot"), "cam_trans_err_cm_median": stat(np.median, "trans"),
            "fps": 1.0 / max(float(np.median(seconds)), 1e-9) if seconds else None, "views": len(errors),
            "failed_views": len(errors) - len(ok)}


def _joint_errors(results: dict, p: str) -> str:
    """``mean joint error ..., first / last 20 frames ...; per joint [...] deg`` of the tracking keys under ``p``."""
    by = ", ".join(f"{v:.1f}" for v in results[p + "joint_err_deg_mean_by_joint"])
    return (f"mean joint error {results[p + 'joint_err_deg_mean']:.2f} deg, first / last 20 frames "
            f"{results[p + 'joint_err_deg_first20']:.2f} / {results[p + 'joint_err_deg_last20']:.2f} deg; "
            f"per joint [{by}] deg")


def _number(value) -> float:
    """A result for the tables: None (no view had an estimate) or a missing key prints as nan."""
    return float("nan") if value is None else float(value)


FAILED_VIEW = {"joint": float("nan"), "rot": float("nan"), "trans": float("nan"), "add": float("inf")}
"""A view whose estimate raised (too few keypoints and an empty mask): counted in ADD-AUC and the success rate as a
miss (ADD = inf), left out of the error medians, counted in ``failed_views``."""


def run_single(kpe, pose, scenes: dict, mode: str, method: str, fk64, angular, limit: int, deadline: float) -> dict:
    """One single-image mode (``known_joints`` / ``unknown_joints``) with one method over the first ``limit``
    views (fewer if ``deadline``, a perf_counter time, passes)."""
    camera = scenes["camera"]
    errors, secs = [], []
    for i in range(min(limit, len(scenes["q"]))):
        if time.perf_counter() > deadline:
            break
        img, q, T = scenes["rgb"][i], scenes["q"][i], scenes["T_camera_base"][i]
        known = q if mode == "known_joints" else None
        t0 = time.perf_counter()
        try:
            if method == "refinement_only":
                det = kpe.detector.detect(img)
                est = pose.estimate(kpe._target(img, det), camera, mask=det.mask > 0.5, q=known)
            else:
                est = kpe.estimate(img, camera, q=known, refine=method == "full")
        except ValueError:  # one view without enough evidence must not end the benchmark
            errors.append(FAILED_VIEW)
            continue
        secs.append(time.perf_counter() - t0)
        errors.append(view_errors(fk64, q, T, est.q, est.T_camera_base, angular))
    return summarise(errors, secs) if errors else {}


def run_tracking(kpe, pose, video: dict, method: str, fk64, angular, deadline: float) -> dict:
    """Tracking a video from an unknown start: per-frame errors, the first / last 20 frames' mean joint error."""
    camera = video["camera"]
    errors, secs, prev, per_joint, events = [], [], None, [], {"coast": 0, "reinit": 0}
    saved = (kpe.config.refine, kpe.config.track_refine_iterations)
    for i in range(len(video["q"])):
        if time.perf_counter() > deadline:
            break
        img = video["rgb"][i]
        t0 = time.perf_counter()
        if method == "refinement_only":
            det = kpe.detector.detect(img)
            target, mask = kpe._target(img, det), det.mask > 0.5
            est = pose.estimate(target, camera, mask=mask) if prev is None else \
                pose.track_step(target, camera, [prev], mask=mask)
        else:
            kpe.config.track_refine_iterations = 8 if method == "full" else 0
            kpe.config.refine = method == "full"
            est = kpe.track_step(img, camera, prev)
        secs.append(time.perf_counter() - t0)
        prev = est
        errors.append(view_errors(fk64, video["q"][i], video["T_camera_base"][i], est.q, est.T_camera_base,
                                  angular))
        per_joint.append(np.degrees(joint_error(est.q, video["q"][i])))
        for k in events:
            events[k] += int(est.loss_terms.get(k, 0.0) > 0)
    kpe.config.refine, kpe.config.track_refine_iterations = saved
    if not errors:
        return {}
    out = summarise(errors, secs[1:] or secs)
    joint = np.array([e["joint"] for e in errors])
    out.update(frames=len(errors), joint_err_deg_first20=float(joint[:20].mean()),
               joint_err_deg_last20=float(joint[-20:].mean()), add_cm_mean=100 * float(np.mean(
                   [e["add"] for e in errors])), first_frame_seconds=secs[0],
               # where the error is: per joint (fk order; the base yaw trades off against the camera's azimuth
               # about the base, which only the base's own asymmetric features pin down), the camera's mean rotation
               # error, and how often the tracker coasted on its motion model or re-initialised
               joint_err_deg_mean_by_joint=[round(float(v), 3) for v in np.mean(per_joint, axis=0)],
               cam_rot_err_deg_mean=float(np.mean([e["rot"] for e in errors])),
               coast_frames=events["coast"], reinit_frames=events["reinit"])
    out["_per_frame"] = np.array(per_joint)  # [F, J] deg: for the plot, not the results
    if method == "keypoint_only" and time.perf_counter() < deadline:
        out.update(calibrated_tracking(kpe, video, angular))
    return out


def calibrated_tracking(kpe, video: dict, angular: np.ndarray, calibrate_frames: int = 10) -> dict:
    """The keypoint tracker again under a given static camera (joints only), from an unknown joint start:

    - ``calibrated_*``: the true camera (a perfect ``calibrate`` result): the camera's share of the error;
    - ``selfcal_*``: the camera that ``calibrate`` (the node's calibrate mode) finds from the video's first
      ``calibrate_frames`` frames and their joint readings, then the whole video tracked without readings -- a
      static camera calibrated once while the encoders are read, as deployed. The base's yaw and the camera's
      azimuth about the base trade off in a single image of a round base; the calibration pins the camera.

    Keys ``<tag>_joint_err_deg_{mean,first20,last20,mean_by_joint}``; ``selfcal_cam_{trans_err_cm,rot_err_deg}``."""
    T_true = video["T_camera_base"][0]
    out: dict = {}
    try:
        cal = kpe.calibrate(video["rgb"][:calibrate_frames], video["camera"], video["q"][:calibrate_frames])
        cameras = [("calibrated", T_true), ("selfcal", cal.T_camera_base)]
        cos = (np.trace(cal.T_camera_base[:3, :3].T @ T_true[:3, :3]) - 1) / 2
        out.update(selfcal_frames=calibrate_frames, selfcal_frames_used=int(cal.frames_used),
                   selfcal_cam_trans_err_cm=100 * float(np.linalg.norm(cal.T_camera_base[:3, 3] - T_true[:3, 3])),
                   selfcal_cam_rot_err_deg=math.degrees(math.acos(float(np.clip(cos, -1, 1)))))
    except ValueError:  # no frame gave a camera: only the true-camera run
        cameras = [("calibrated", T_true)]
    for tag, T in cameras:
        kpe.reset()
        prev, per_joint = None, []
        for i in range(len(video["q"])):
            prev = kpe.track_step(video["rgb"][i], video["camera"], prev, T_camera_base=T)
            per_joint.append(np.degrees(joint_error(prev.q, video["q"][i])))
        e = np.array(per_joint)[:, angular]
        out.update({f"_{tag}_per_frame": np.array(per_joint), f"{tag}_joint_err_deg_mean": float(e.mean()),
                    f"{tag}_joint_err_deg_first20": float(e[:20].mean()),
                    f"{tag}_joint_err_deg_last20": float(e[-20:].mean()),
                    f"{tag}_joint_err_deg_mean_by_joint": [round(float(v), 3) for v in np.array(per_joint).mean(0)]})
    kpe.reset()
    return out


# ------------------------------------------------------------------------------------------------ entry point


def add_arguments(parser) -> None:
    """The ``--urdf`` benchmark's options of ``bench/pose_estimation.py``."""
    g = parser.add_argument_group("keypoint benchmark (--urdf)")
    g.add_argument("--urdf", default=None, help="run the keypoint benchmark on this robot (URDF path, test_arm, panda)")
    g.add_argument("--keypoints", type=Path, default=None, help="keypoint network (default: packaged, else trained)")
    g.add_argument("--kp-preset", default=None, help="keypoint training preset when none exists (cpu / gpu)")
    g.add_argument("--drrobot-preset", default="tiny", help="Dr. Robot training preset when no model exists")
    g.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of " + ", ".join(MODES))
    g.add_argument("--kp-methods", default=",".join(KP_METHODS), help="subset of " + ", ".join(KP_METHODS))
    g.add_argument("--kp-views", type=int, default=24, help="held-out views per single-image mode")
    g.add_argument("--ablation-views", type=int, default=8, help="views of the refinement_only ablation")
    g.add_argument("--frames", type=int, default=100, help="tracking video length")
    g.add_argument("--ablation-frames", type=int, default=30, help="tracking frames of the refinement_only ablation")
    g.add_argument("--write-kp-scenes", type=Path, default=None, help="render the held-out views and video here, exit")
    g.add_argument("--kp-scenes", type=Path, default=None, help="use the views of --write-kp-scenes (no open3d)")
    g.add_argument("--refine-iterations", type=int, default=None, help="KeypointPoseConfig.refine_iterations")
    g.add_argument("--tracking-plot", type=Path, default=None,
                   help="per-frame joint errors of the tracking runs: PATH with _<method> before .png")


def _models(args, robot, root: Path):
    """``(keypoint checkpoint, Dr. Robot checkpoint)`` of ``robot``: given, packaged, or trained into runs/."""
    name = robot.name
    kp = args.keypoints or root / f"gen3d_ros/models/keypoints_{name}.pt"
    run = root / "runs" / f"bench_{name}"
    if not Path(kp).is_file():
        from gen3d_ros.robot.training.keypoint_data import render_keypoint_data, save_keypoint_data
        from gen3d_ros.robot.training.keypoints import keypoint_train_config, train_keypoints

        preset = args.kp_preset or ("gpu" if args.device.startswith("cuda") else "cpu")
        cfg = keypoint_train_config(preset, {"device": args.device})
        data = run / "keypoint_views.npz"
        if not data.is_file():
            save_keypoint_data(render_keypoint_data(robot, cfg.views, cfg.render_size, 0, show_progress=True), data)
        train_keypoints(cfg, data, run / "keypoints")
        kp = run / "keypoints" / "keypoints.pt"
    dr = args.checkpoint or (root / f"gen3d_ros/models/drrobot_{name}.pt")
    if not Path(dr).is_file():
        dr = run / "drrobot" / "model.pt"
        if not dr.is_file():
            from gen3d_ros.robot.training import robot_train_config, train_robot

            cfg = robot_train_config(args.drrobot_preset, {"urdf": str(args.urdf), "device": args.device})
            train_robot(cfg, run / "drrobot", robot=robot)
    return Path(kp), Path(dr)


def _save_scenes(path: Path, scenes: dict) -> None:
    from gen3d_ros.outputs import atomic_path

    c = scenes["camera"]
    arrays = {k: v for k, v in scenes.items() if k != "camera"}
    arrays["camera"] = np.array([c.fx, c.fy, c.cx, c.cy, c.width, c.height])
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as stream:
        np.savez_compressed(stream, **arrays)


def _load_scenes(path: Path) -> dict:
    from gen3d_ros.geometry.camera import PinholeCamera

    with np.load(path, allow_pickle=False) as d:
        out = {k: d[k] for k in d.files}
    fx, fy, cx, cy, w, h = out.pop("camera").tolist()
    out["camera"] = PinholeCamera(fx, fy, cx, cy, int(w), int(h))
    return out


def run_benchmark(args, root: Path, robot, versions: dict, device_name: str) -> dict:
    """Every requested mode and method; flat keys ``<robot>.<mode>.<metric>`` (full method) and
    ``<robot>.<mode>.<method>.<metric>`` (ablations), plus the set-up under :func:`setup_prefix` (flat keys)."""
    from gen3d_ros.robot.gaussians import RobotGaussianModel
    from gen3d_ros.robot.keypoints.detector import KeypointDetector
    from gen3d_ros.robot.keypoints.estimator import KeypointPoseConfig, KeypointPoseEstimator
    from gen3d_ros.robot.pose import PoseEstimator, PoseEstimatorConfig

    modes = [m for m in args.modes.split(",") if m]
    if args.kp_scenes is not None:
        scenes, video = _load_scenes(args.kp_scenes / "views.npz"), _load_scenes(args.kp_scenes / "video.npz")
        scenes = {k: v if k == "camera" else v[: args.kp_views] for k, v in scenes.items()}
        video = {k: v if k == "camera" else v[: args.frames] for k, v in video.items()}
    else:
        scenes = held_out_scenes(robot, args.kp_views, args.size, 40.0, args.seed)
        video = held_out_scenes(robot, 0, args.size, 40.0, args.seed + 1, frames=args.frames) \
            if "tracking" in modes else None
    if args.write_kp_scenes is not None:
        _save_scenes(args.write_kp_scenes / "views.npz", scenes)
        _save_scenes(args.write_kp_scenes / "video.npz", video)
        return {}
    kp_path, dr_path = _models(args, robot, root)
    model = RobotGaussianModel.load(dr_path, robot)
    model.eval()
    pose = PoseEstimator(model, PoseEstimatorConfig(device=args.device, backend=args.backend))
    cfg = KeypointPoseConfig()
    if args.refine_iterations is not None:
        cfg.refine_iterations = args.refine_iterations
    kpe = KeypointPoseEstimator(KeypointDetector.load(kp_path, args.device), pose, cfg)
    types = {j.name: j.type for j in robot.joints}
    angular = np.array([types.get(j, "revolute") in ("revolute", "continuous") for j in kpe.joint_names])
    name = robot.name
    rel = lambda p: str(p.resolve().relative_to(root)) if p.resolve().is_relative_to(root) else str(p)  # noqa: E731
    methods = [m for m in args.kp_methods.split(",") if m]
    results: dict = flatten_params({
        "keypoints": rel(kp_path), "drrobot": rel(dr_path), "views": len(scenes["q"]),
        "frames": 0 if video is None else len(video["q"]), "image_size": args.size, "device": device_name,
        "versions": versions, "config": vars(cfg), "urdf": str(args.urdf)}, setup_prefix(name, methods))
    deadline = time.perf_counter() + args.deadline_s
    for mode in modes:
        for method in methods:
            t0 = time.perf_counter()
            if mode == "tracking":
                sub = video if method != "refinement_only" else {k: (v[: args.ablation_frames] if k != "camera"
                                                                     else v) for k, v in video.items()}
                res = run_tracking(kpe, pose, sub, method, kpe.fk64, angular, deadline)
            else:
                limit = args.ablation_views if method == "refinement_only" else len(scenes["q"])
                res = run_single(kpe, pose, scenes, mode, method, kpe.fk64, angular, limit, deadline)
            per_frame = {k: res.pop(k) for k in ("_per_frame", "_calibrated_per_frame", "_selfcal_per_frame")
                         if k in res}
            if args.tracking_plot is not None and per_frame and method != "refinement_only":
                plot_tracking(args.tracking_plot.with_name(f"{args.tracking_plot.stem}_{method}.png"), per_frame,
                              kpe.joint_names, f"{name}, {method}")
            prefix = f"{name}.{mode}." if method == "full" else f"{name}.{mode}.{method}."
            results.update({prefix + k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()})
            print(mode, method, f"{time.perf_counter() - t0:.0f} s", {k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()},
                  flush=True)
    return results


def plot_tracking(path: Path, per_frame: dict, joint_names: list[str], title: str) -> None:
    """Per-frame joint errors of a tracking run (``_per_frame`` [F, J] deg, and ``_calibrated_per_frame`` with the
    true camera given when present), one panel each, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gen3d_ros.outputs import save_figure

    panels = [(k, t) for k, t in (("_per_frame", "unknown start"), ("_selfcal_per_frame", "camera from calibrate"),
                                  ("_calibrated_per_frame", "true camera given")) if k in per_frame]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 3.2), sharey=True, squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        err = per_frame[key]
        for j, joint in enumerate(joint_names):
            ax.plot(err[:, j], lw=0.9, label=joint)
        ax.plot(err.mean(axis=1), "k-", lw=2, label="mean")
        ax.set(title=f"{label} (mean {err.mean():.2f} deg)", xlabel="frame", ylabel="joint error [deg]",
               ylim=(0, 30))
        ax.legend(fontsize=7, ncol=3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=90)
    plt.close(fig)


def setup_prefix(robot: str, methods: list[str]) -> str:
    """Key prefix of a run's set-up: ``<robot>.keypoint_bench.<tag>.`` (tag ``full`` for a run of the full
    method, else its methods joined by ``+``)."""
    return f"{robot}.keypoint_bench.{'full' if 'full' in methods else '+'.join(methods)}."


def setups(results: dict, robot: str) -> dict[str, dict]:
    """Every run set-up of ``robot`` in flat ``results``: tag -> {field: value} (fields as flattened)."""
    found: dict[str, dict] = {}
    head = f"{robot}.keypoint_bench."
    for key, value in results.items():
        if key.startswith(head):
            tag, _, field = key[len(head):].partition(".")
            found.setdefault(tag, {})[field] = value
    return found


def keypoint_tables(results: dict) -> list[str]:
    """Markdown tables of the keypoint benchmark's keys in ``results``."""
    out = []
    for robot in results.get("robots", []):
        runs = setups(results, robot)
        meta = runs.pop("full", None)
        if not meta:
            continue
        out += [f"## {robot}: keypoints + Dr. Robot (`--urdf`), {meta['views']} views / {meta['frames']} video "
                f"frames, {meta['image_size']} px, randomised backgrounds", "",
                f"Keypoint network `{meta['keypoints']}`, Dr. Robot `{meta['drrobot']}`; device {meta['device']}", "",
                f"`{meta.get('command', '')}`", "",
                "| mode | method | ADD-AUC 0-10 cm | success (ADD<5 cm) | ADD median (cm) | joint err median (deg) | "
                "cam trans median (cm) | cam rot median (deg) | fps | views |", "|---|---|---|---|---|---|---|---|---|---|"]
        for mode in MODES:
            for method in KP_METHODS:
                p = f"{robot}.{mode}." if method == "full" else f"{robot}.{mode}.{method}."
                if p + "add_auc" not in results:
                    continue
                r = lambda k: _number(results.get(p + k))  # noqa: E731
                failed = f" ({results[p + 'failed_views']} failed)" if results.get(p + "failed_views") else ""
                out.append(f"| {mode} | {method} | {r('add_auc'):.3f} | {r('success_rate'):.2f} | "
                           f"{r('add_cm_median'):.2f} | {r('joint_err_deg_median'):.2f} | "
                           f"{r('cam_trans_err_cm_median'):.2f} | {r('cam_rot_err_deg_median'):.2f} | {r('fps'):.2f} | "
                           f"{r('views'):.0f}{failed} |")
        for tag, extra in sorted(runs.items()):
            note = f" {extra['note']}" if extra.get("note") else ""
            out += ["", f"Rows of {tag} measured separately: device {extra['device']}, "
                    f"{extra['views']} views, `{extra.get('command', '')}`.{note}"]
        track = f"{robot}.tracking."
        if track + "joint_err_deg_first20" in results:
            out += ["", f"Tracking (full method): mean joint error {results[track + 'joint_err_deg_mean']:.2f} deg; "
                    f"first 20 frames {results[track + 'joint_err_deg_first20']:.2f} deg, last 20 "
                    f"{results[track + 'joint_err_deg_last20']:.2f} deg; mean ADD {results[track + 'add_cm_mean']:.2f} cm."]
        for method in KP_METHODS:  # where the tracking error is, per joint
            p = f"{robot}.tracking." if method == "full" else f"{robot}.tracking.{method}."
            if p + "joint_err_deg_mean_by_joint" in results:
                out += ["", f"Tracking ({method}): {_joint_errors(results, p)}; camera rotation "
                        f"{results[p + 'cam_rot_err_deg_mean']:.1f} deg mean; coasted {results[p + 'coast_frames']}, "
                        f"re-initialised {results[p + 'reinit_frames']} of {results[p + 'frames']} frames."]
            if p + "calibrated_joint_err_deg_mean" in results:
                out += ["", f"Tracking ({method}) with the true camera given (a perfect calibration, joints only): "
                        f"{_joint_errors(results, p + 'calibrated_')}."]
            if p + "selfcal_joint_err_deg_mean" in results:
                out += ["", f"Tracking ({method}) under the camera that calibrate found from the first "
                        f"{results[p + 'selfcal_frames']} frames with their joint readings (camera off by "
                        f"{results[p + 'selfcal_cam_trans_err_cm']:.2f} cm, {results[p + 'selfcal_cam_rot_err_deg']:.2f} "
                        f"deg), then every frame from an unknown joint start: {_joint_errors(results, p + 'selfcal_')}."]
        out.append("")
    return out


__all__ = ["KP_METHODS", "MODES", "add_arguments", "add_auc", "calibrated_tracking", "plot_tracking", "setup_prefix",
           "setups", "held_out_scenes", "keypoint_tables", "run_benchmark", "run_single", "run_tracking", "summarise", "view_errors"]
