"""``gen3d train-robot``, ``estimate-pose`` and ``act``: the Dr. Robot commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from gen3d_ros.commands.common import UsageError, check_device_arg, prepare, set_threads


# ------------------------------------------------------------------------------------------------ train-robot


def register_train_robot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-robot", help="train a Dr. Robot model (differentiable robot renderer) from a URDF",
                       description="Render ground-truth views of a URDF robot, then train skinned 3D Gaussians in "
                                   "three stages (canonical, skinning, joint). Writes model.pt, metrics.json, "
                                   "preview.png, curves.png and the view caches (data/) into the output folder.")
    p.add_argument("-o", "--output", type=Path, required=True, help="run folder")
    p.add_argument("--urdf", default=None, help="test_arm (default), panda (needs example-robot-data) or a .urdf path")
    p.add_argument("--preset", default="tiny", help="tiny (CPU, ~1 min), demo (CPU, minutes), gpu (CUDA, Panda); --stage keypoints: tiny, cpu, gpu")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a RobotTrainConfig field (joint_iters=500, model.n_gaussians=3000, "
                        "background=0.3,0.3,0.3); repeatable")
    p.add_argument("--device", default=None, help="torch device (default: the preset's)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1; 0: torch's choice)")
    p.add_argument("--force", action="store_true", help="write into a run folder that already holds model.pt")
    p.add_argument("--stage", choices=("gaussians", "keypoints"), default="gaussians",
                   help="gaussians: the Dr. Robot model (default); keypoints: the keypoint network (presets tiny, "
                        "cpu, gpu; --set input_size=, width=, steps=, max_seconds=, views= ...) -> keypoints.pt")
    p.add_argument("--data", type=Path, default=None,
                   help="keypoints stage: rendered training views (.npz) to reuse instead of rendering them")
    p.set_defaults(func=cmd_train_robot)


def cmd_train_keypoints(args: argparse.Namespace) -> int:
    """``train-robot --stage keypoints``: render (or read ``--data``) and train the keypoint network."""
    from gen3d_ros.outputs import prepare_run_folder
    from gen3d_ros.robot.training.keypoints import keypoint_train_config, train_keypoints

    overrides = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value.strip()
    if args.device is not None:
        overrides["device"] = check_device_arg(args.device)
    try:
        config = keypoint_train_config(args.preset, overrides)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    check_device_arg(config.device)
    if args.data is not None and not args.data.is_file():
        raise UsageError(f"--data {args.data} does not exist")
    prepare_run_folder(args.output, inputs=[args.data, _urdf_path(args)], force=args.force, product="keypoints.pt")
    set_threads(args.threads)
    data = args.data
    if data is None:
        from gen3d_ros.robot.description import load_robot
        from gen3d_ros.robot.training.keypoint_data import render_keypoint_data, save_keypoint_data

        robot = load_robot(args.urdf or "test_arm")
        data = args.output / "data" / "keypoint_views.npz"
        save_keypoint_data(render_keypoint_data(robot, config.views, config.render_size, config.seed,
                                                show_progress=True), data)
    metrics = train_keypoints(config, data, args.output)
    print(f"trained the keypoint network of {metrics['robot']} ({metrics['keypoints']} keypoints, "
          f"{metrics['parameters'] / 1e6:.2f} M parameters) in {metrics['seconds']:.0f} s, {metrics['steps']} steps; "
          f"held-out median error {metrics['val_px_err_median']:.2f} px ({metrics['px_unit']}), "
          f"mask IoU {metrics['val_mask_iou']:.3f} -> {args.output}/keypoints.pt")
    return 0


def cmd_train_robot(args: argparse.Namespace) -> int:
    if getattr(args, "stage", "gaussians") == "keypoints":
        return cmd_train_keypoints(args)
    from gen3d_ros.robot.description import load_robot
    from gen3d_ros.robot.training import robot_train_config, train_robot

    from gen3d_ros.outputs import prepare_run_folder

    overrides: dict = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value.strip()
    if args.urdf is not None:
        overrides["urdf"] = args.urdf
    if args.device is not None:
        overrides["device"] = check_device_arg(args.device)
    config = robot_train_config(args.preset, overrides)  # a bad preset or value fails before any folder is made
    check_device_arg(config.device)
    robot = load_robot(config.urdf)  # a bad URDF fails before any folder is made
    # train_robot creates, marks and (on failure) removes the folder; here only the rules are checked
    prepare_run_folder(args.output, inputs=[robot.source_path], force=args.force, product="model.pt", create=False)
    set_threads(args.threads)
    metrics = train_robot(config, args.output, robot=robot)
    it, sec = metrics["iterations"], metrics["seconds"]
    print(f"trained {metrics['robot']} ({metrics['n_gaussians']} Gaussians) in {sum(sec.values()):.0f} s "
          f"({it['canonical']}/{it['skinning']}/{it['joint']} canonical/skinning/joint iterations) "
          f"-> {args.output}/model.pt")
    print(f"held-out PSNR {metrics['psnr_heldout']:.2f} dB (untrained {metrics['psnr_init']:.2f} dB), "
          f"SSIM {metrics['ssim_heldout']:.4f}")
    return 0


# ------------------------------------------------------------------------------------------- estimate-pose / act


def _robot_model(args: argparse.Namespace):
    """The Dr. Robot model of ``--checkpoint``, else an untrained one from ``--urdf`` (default: the test arm)."""
    from gen3d_ros.robot.description import load_robot
    from gen3d_ros.robot.gaussians import RobotGaussianModel

    if args.checkpoint is not None:
        if not args.checkpoint.is_file():
            raise UsageError(f"checkpoint {args.checkpoint} does not exist")
        return RobotGaussianModel.load(args.checkpoint, load_robot(args.urdf) if args.urdf else None)
    return RobotGaussianModel.from_robot(load_robot(args.urdf or "test_arm"), n_gaussians=args.gaussians,
                                         skinning=False, appearance=False)


def _camera_info_yaml(path: Path) -> dict:
    """The mapping of a ROS CameraInfo YAML file (``--camera-info``); {} for an empty file."""
    import yaml

    return yaml.safe_load(Path(path).read_text()) or {}


def _camera_info_size(data: dict, width: int, height: int) -> tuple[int, int]:
    """Image (width, height) of a CameraInfo mapping (``image_width``/``width`` …); the arguments where absent."""
    return (int(data.get("image_width", data.get("width", width))),
            int(data.get("image_height", data.get("height", height))))


def _camera(args: argparse.Namespace, width: int, height: int):
    """Intrinsics from ``--camera-info`` (ROS CameraInfo YAML: ``camera_matrix.data`` or ``k``/``K``; scaled when it
    belongs to another resolution) or ``--fov-deg``, for an image of ``width`` x ``height`` pixels."""
    from gen3d_ros.geometry.camera import PinholeCamera

    if args.camera_info is not None:
        data = _camera_info_yaml(args.camera_info)
        K = (data.get("camera_matrix") or {}).get("data") or data.get("k") or data.get("K")
        if not K or len(K) != 9:
            raise UsageError(f"{args.camera_info}: no 3x3 camera_matrix.data / k in the CameraInfo YAML")
        w, h = _camera_info_size(data, width, height)
        try:
            return PinholeCamera.from_camera_info(K, w, h, image_size=(width, height))
        except ValueError as exc:
            raise UsageError(f"{args.camera_info}: {exc}") from None
    if args.fov_deg is None:
        raise UsageError("give the intrinsics: --camera-info FILE.yaml or --fov-deg F (vertical field of view)")
    return PinholeCamera.from_fov(width, height, float(args.fov_deg))


def _pose7(text: str):
    """``x,y,z,qx,qy,qz,qw`` (camera optical frame in the base frame, metres) -> 4x4 ``T_camera_base``."""
    import numpy as np

    from gen3d_ros.geometry.rigid import invert_rigid
    from gen3d_ros.io.transforms import quaternion_xyzw_to_matrix

    try:
        x, y, z, *q = (float(v) for v in text.split(","))
        if len(q) != 4:
            raise ValueError
    except ValueError:
        raise UsageError(f"expected x,y,z,qx,qy,qz,qw, got {text!r}") from None
    T = np.eye(4)
    try:
        T[:3, :3] = quaternion_xyzw_to_matrix(q)
    except ValueError as exc:
        raise UsageError(f"{text!r}: {exc}") from None
    T[:3, 3] = (x, y, z)
    return invert_rigid(T)  # T_base_camera -> T_camera_base


def _read_image(path: Path, what: str = "image"):
    import numpy as np
    from PIL import Image

    if not path.is_file():
        raise UsageError(f"{what} {path} does not exist")
    return np.asarray(Image.open(path).convert("RGB"))


def _write_json(path: Path, data: dict) -> None:
    """``data`` as indented JSON at ``path``, atomically, marked as a gen3d_ros output."""
    from gen3d_ros.outputs import write_json

    write_json(path, data)


def _urdf_path(args: argparse.Namespace) -> Path | None:
    """``--urdf`` when it names a file (an input that outputs must not replace), else None."""
    return Path(args.urdf) if args.urdf and Path(args.urdf).suffix == ".urdf" else None


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, default=None, help="Dr. Robot model (gen3d train-robot model.pt)")
    p.add_argument("--urdf", default=None, help="without --checkpoint: an untrained model of this robot (test_arm "
                                                "(default), panda, a .urdf path)")
    p.add_argument("--gaussians", type=int, default=500, help="Gaussians of the untrained model (default 500)")
    p.add_argument("--camera-info", type=Path, default=None, help="ROS CameraInfo YAML of the image's camera")
    p.add_argument("--fov-deg", type=float, default=None, help="or: vertical field of view (pinhole, centred)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1; 0: torch's)")
    p.add_argument("--device", default="cpu", help="torch device of the renderer (cpu, cuda, cuda:1)")
    p.add_argument("--force", action="store_true", help="replace existing outputs (only files gen3d_ros wrote)")


def register_estimate_pose(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("estimate-pose", help="robot joint angles and camera pose from one image (analysis-by-synthesis)",
                       description="Fit the differentiable robot renderer to IMAGE: joints + T_camera_base from "
                                   "scratch, or joints only with --known-camera. Writes a JSON result.")
    p.add_argument("image", type=Path, help="RGB image of the robot on a plain background (or with --mask)")
    _add_model_args(p)
    p.add_argument("--mask", type=Path, default=None, help="robot mask image (non-zero = robot); default: pixels "
                                                           "differing from the white background")
    p.add_argument("--known-camera", default=None, metavar="x,y,z,qx,qy,qz,qw",
                   help="calibrated camera: its optical frame's pose in the base frame (m, quaternion)")
    p.add_argument("-o", "--output", type=Path, required=True, help="result JSON")
    p.add_argument("--overlay", type=Path, default=None, help="also write the fitted render over the image (PNG)")
    p.set_defaults(func=cmd_estimate_pose)


def cmd_estimate_pose(args: argparse.Namespace) -> int:
    import numpy as np

    from gen3d_ros.robot.pose import PoseEstimator, PoseEstimatorConfig

    inputs = [args.image, args.mask, args.checkpoint, args.camera_info, _urdf_path(args)]
    prepare(args.output, args, inputs=inputs, others=[args.overlay], what="result")
    prepare(args.overlay, args, inputs=inputs, others=[args.output], what="overlay")
    check_device_arg(args.device)
    set_threads(args.threads)
    image = _read_image(args.image)
    camera = _camera(args, image.shape[1], image.shape[0])
    mask = None if args.mask is None else (_read_image(args.mask, "mask").max(axis=-1) > 0).astype(np.float32)
    T_known = None if args.known_camera is None else _pose7(args.known_camera)
    estimator = PoseEstimator(_robot_model(args), PoseEstimatorConfig(device=args.device))
    est = estimator.estimate(image, camera, mask=mask, T_camera_base=T_known)
    result = {"joint_names": est.joint_names, "joint_angles_rad": [float(v) for v in est.q],
              "T_camera_base": np.asarray(est.T_camera_base).tolist(), "loss": est.loss,
              "loss_terms": est.loss_terms, "seconds": est.seconds, "hypotheses": est.hypotheses,
              "known_camera": T_known is not None, "image": str(args.image)}
    _write_json(args.output, result)
    if args.overlay is not None:
        from PIL import Image

        from gen3d_ros.outputs import save_image

        out = estimator.render(est.q, est.T_camera_base, camera)
        alpha = out.alpha.clamp(0, 1).cpu().numpy()[..., None]
        blend = image / 255.0 * (1 - 0.6 * alpha) + 0.6 * alpha * out.rgb.clamp(0, 1).cpu().numpy()
        save_image(Image.fromarray((blend * 255).round().astype(np.uint8)), args.overlay)
    print(f"{', '.join(f'{n}={v:.3f}' for n, v in zip(est.joint_names, est.q))} rad; loss {est.loss:.4f}; "
          f"{est.seconds:.1f} s -> {args.output}")
    return 0


def register_act(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("act", help="plan a joint trajectory towards a goal in pixels (visual MPC)",
                       description="Visual MPC through the differentiable robot renderer: from --current-joints, "
                                   "move link points to --goal-keypoints or the robot to look like --goal-image, "
                                   "seen by a known --camera. Writes the trajectory (with times) as JSON.")
    _add_model_args(p)
    p.add_argument("--goal-keypoints", nargs="+", default=None, metavar="u,v[:link]",
                   help="goal pixels (column,row) of link origins (default link: the last link, e.g. tool_tip)")
    p.add_argument("--goal-image", type=Path, default=None, help="or: a goal image of the robot (same camera)")
    p.add_argument("--current-joints", required=True, help="comma-separated joint values (rad / m), joint order")
    p.add_argument("--camera", required=True, metavar="x,y,z,qx,qy,qz,qw",
                   help="camera optical frame's pose in the base frame (m, quaternion)")
    p.add_argument("--width", type=int, default=None, help="image width for --goal-keypoints (default: CameraInfo's)")
    p.add_argument("--height", type=int, default=None, help="image height for --goal-keypoints")
    p.add_argument("--waypoints", type=int, default=8, help="trajectory points (default 8)")
    p.add_argument("--dt", type=float, default=0.25, help="seconds between waypoints (default 0.25)")
    p.add_argument("--iterations", type=int, default=100, help="optimiser steps (default 100)")
    p.add_argument("-o", "--output", type=Path, required=True, help="trajectory JSON")
    p.set_defaults(func=cmd_act)


def cmd_act(args: argparse.Namespace) -> int:
    import numpy as np

    from gen3d_ros.robot.actions import ActionProcessor, VisualMPCConfig

    if (args.goal_keypoints is None) == (args.goal_image is None):
        raise UsageError("give exactly one goal: --goal-keypoints u,v[:link] ... or --goal-image IMG")
    for name in ("waypoints", "iterations"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if not args.dt > 0:
        raise UsageError(f"--dt must be > 0 s, got {args.dt}")
    prepare(args.output, args, inputs=[args.goal_image, args.checkpoint, args.camera_info, _urdf_path(args)],
             what="trajectory")
    check_device_arg(args.device)
    set_threads(args.threads)
    model = _robot_model(args)
    try:
        q0 = np.array([float(v) for v in args.current_joints.split(",")])
    except ValueError:
        raise UsageError(f"--current-joints: comma-separated numbers, got {args.current_joints!r}") from None
    if args.goal_image is not None:
        goal = _read_image(args.goal_image, "goal image")
        height, width = goal.shape[:2]
    else:
        if args.camera_info is None and (args.width is None or args.height is None):
            raise UsageError("--goal-keypoints needs the image size: --camera-info, or --width and --height")
        width, height = args.width or 0, args.height or 0
        pixels, links = [], []
        for item in args.goal_keypoints:
            uv, _, link = item.partition(":")
            try:
                u, v = (float(x) for x in uv.split(","))
            except ValueError:
                raise UsageError(f"--goal-keypoints: expected u,v[:link], got {item!r}") from None
            pixels.append((u, v))
            links.append(link or model.fk.link_names[-1])
        goal = {"pixels": np.array(pixels), "links": links}
    if args.camera_info is not None and args.goal_keypoints is not None:
        info_width, info_height = _camera_info_size(_camera_info_yaml(args.camera_info), 0, 0)
        width, height = args.width or info_width, args.height or info_height
    camera = _camera(args, width, height)
    processor = ActionProcessor(model, VisualMPCConfig(waypoints=args.waypoints, dt=args.dt, iterations=args.iterations,
                                                       device=args.device))
    result = processor.plan(goal, q0, _pose7(args.camera), camera)
    traj = result.trajectory
    out = {"joint_names": traj.joint_names, "times_from_start_s": [float(t) for t in traj.times_from_start],
           "positions": np.asarray(traj.positions).tolist(), "objective": result.objective,
           "final_cost": result.final_cost, "initial_cost": result.initial_cost,
           "goal_distance_initial": result.goal_distance_initial, "goal_distance_final": result.goal_distance_final,
           "seconds": result.seconds}
    _write_json(args.output, out)
    print(f"{result.objective}: goal distance {result.goal_distance_initial:.3f} -> {result.goal_distance_final:.3f}; "
          f"{len(traj.times_from_start)} waypoints over {traj.times_from_start[-1]:.2f} s -> {args.output}")
    return 0


# ------------------------------------------------------------------------------------------------ calibrate-camera


def _keypoint_estimator(args: argparse.Namespace, model):
    """The :class:`KeypointPoseEstimator` of ``--keypoints`` (else the packaged network of the model's robot) with
    the Dr. Robot ``model`` for the render-and-compare refinement (with ``--refine``)."""
    from gen3d_ros.checkpoints import CheckpointError
    from gen3d_ros.robot.keypoints.detector import KeypointDetector
    from gen3d_ros.robot.keypoints.estimator import KeypointPoseConfig, KeypointPoseEstimator
    from gen3d_ros.robot.pose import PoseEstimator, PoseEstimatorConfig

    path = args.keypoints or Path(__file__).resolve().parents[1] / "models" / f"keypoints_{model.robot.name}.pt"
    try:
        detector = KeypointDetector.load(path, args.device)
    except FileNotFoundError:
        raise UsageError(f"keypoint network {path} does not exist (gen3d train-robot --stage keypoints)") from None
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None
    try:
        return KeypointPoseEstimator(detector, PoseEstimator(model, PoseEstimatorConfig(device=args.device)),
                                     KeypointPoseConfig(refine=args.refine))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _joint_readings(path: Path, n_images: int, n_joints: int):
    """``[n_images, J]`` joint readings from a JSON file: ``{"positions": [[...], ...]}`` (one per image, or one for
    all: a static robot) or a bare list of such lists / one list."""
    import json

    import numpy as np

    if not path.is_file():
        raise UsageError(f"--joints {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"--joints {path} is not JSON: {exc}") from None
    values = data.get("positions") if isinstance(data, dict) else data
    try:
        q = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise UsageError(f"--joints {path}: 'positions' must be numbers, one list per image") from None
    q = q[None].repeat(n_images, 0) if q.ndim == 1 else q
    if q.shape != (n_images, n_joints) or not np.isfinite(q).all():
        raise UsageError(f"--joints {path}: expected {n_images} readings of {n_joints} joints, got shape "
                         f"{list(q.shape)}")
    return q


def register_calibrate_camera(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate-camera", help="camera-to-robot calibration from images + joint readings",
                       description="Markerless hand-eye calibration: in each image the keypoint network finds the "
                                   "robot, PnP + RANSAC with the joint reading's forward kinematics gives the camera "
                                   "(--refine: Dr. Robot render-and-compare refines it); the frames' cameras are averaged "
                                   "(outliers left out). Writes the static transform and its spread as JSON.")
    p.add_argument("images", type=Path, nargs="+", help="RGB images of the robot (any background)")
    p.add_argument("--joints", type=Path, required=True,
                   help='JSON {"positions": [[q1, ...], ...]}: one reading per image (or one for all), radians')
    p.add_argument("--keypoints", type=Path, default=None, help="keypoint network (default: the packaged one)")
    p.add_argument("--refine", action="store_true",
                   help="also refine each frame's camera by Dr. Robot render-and-compare (slow on a CPU; on the test "
                        "arm it did not improve on keypoints + PnP)")
    _add_model_args(p)
    p.add_argument("-o", "--output", type=Path, required=True, help="result JSON")
    p.set_defaults(func=cmd_calibrate_camera)


def cmd_calibrate_camera(args: argparse.Namespace) -> int:
    import numpy as np

    from gen3d_ros.robot.pose import pose_from_matrix

    prepare(args.output, args, inputs=[*args.images, args.joints, args.checkpoint, args.camera_info,
                                       args.keypoints, _urdf_path(args)], what="result")
    check_device_arg(args.device)
    set_threads(args.threads)
    images = [_read_image(p) for p in args.images]
    if len({im.shape for im in images}) != 1:
        raise UsageError("the images must all have one size (one camera)")
    camera = _camera(args, images[0].shape[1], images[0].shape[0])
    model = _robot_model(args)
    kpe = _keypoint_estimator(args, model)
    q = _joint_readings(args.joints, len(images), model.fk.num_joints)
    try:
        cal = kpe.calibrate(images, camera, q)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    position, quaternion = pose_from_matrix(cal.T_base_camera)
    result = {"T_camera_base": cal.T_camera_base.tolist(),
              "camera_in_base": [*map(float, position), *map(float, quaternion)],
              "camera_in_base_format": "x, y, z (m), qx, qy, qz, qw: the camera optical frame in the base frame",
              "translation_std_m": cal.translation_std_m, "rotation_std_deg": cal.rotation_std_deg,
              "frames_used": cal.frames_used, "frames": cal.frames,
              "per_frame_T_camera_base": [None if not np.isfinite(T).all() else T.tolist() for T in cal.per_frame],
              "images": [str(p) for p in args.images], "joint_names": list(model.fk.joint_names)}
    _write_json(args.output, result)
    print(f"camera in base: xyz {np.round(position, 4).tolist()} m, quaternion {np.round(quaternion, 4).tolist()}; "
          f"spread {100 * cal.translation_std_m:.2f} cm / {cal.rotation_std_deg:.2f} deg over {cal.frames_used} of "
          f"{cal.frames} frames -> {args.output}")
    return 0
