"""Robot pose estimation from single images: multi-hypothesis vs single-hypothesis vs silhouette-only vs known camera.

    .venv/bin/python bench/pose_estimation.py                      # test arm, 8 held-out 96 px views, CPU
    .venv/bin/python bench/pose_estimation.py --views 4 --out /tmp/bench
    .venv/bin/python bench/pose_estimation.py --methods multi_hypothesis --config '{"iterations": [15, 20]}'
    # Panda (the GPU-trained Dr. Robot model): render held-out views here (open3d), estimate on the CUDA machine,
    # merge its panda.* keys back into bench/results/pose_estimation.json
    .venv/bin/python bench/pose_estimation.py --robot panda --write-scenes .pose_bench_panda
    python bench/pose_estimation.py --robot panda --scenes .pose_bench_panda --device cuda --backend gsplat --out $OUT
    .venv/bin/python bench/pose_estimation.py --merge $OUT/pose_estimation.json

Images: held-out (q, camera) pairs, q in the middle 60 % of each joint range, cameras at azimuth uniform in
[0, 360), elevation 15-45 deg, looking at the posed robot's bounding sphere from 1.0-1.2x the distance at which it
just fits (backed off if a vertex would leave the image), square images (``--size``) with the model's training
FOV. With a trained Dr. Robot checkpoint (test arm: gen3d_ros/models/drrobot_gen3d_test_arm.pt, or --checkpoint;
Panda: runs/panda_drrobot_model.pt) the images are real mesh renders (RobotMeshRenderer, on the model's training
background; "image_source": "mesh_renderer"); without one (test arm only) the model is the untrained
(mesh-initialised, rigid) Gaussian model and the images are its own renders ("image_source": "init_model"), so the
errors are the search's and optimiser's alone. No masks are given: the estimator segments by the background.
Methods: multi_hypothesis (the default PoseEstimatorConfig), single_hypothesis (one neutral, upright hypothesis),
silhouette_only (default search, no photometric term), known_camera (the true T_camera_base is given: joints only;
its camera errors are 0 by construction). Metrics per method: medians of mean joint error (deg, revolute joints), camera rotation
(deg) and translation (cm); ADD = mean distance of link origins in the camera frame (m); AUC of the ADD accuracy
curve over 0-10 cm (DREAM-style); success = ADD < 5 cm; seconds per image (median) and per phase of the estimate
(``<method>.phase_seconds``: target, search, score, level0, ...). ``--config`` (JSON) changes PoseEstimatorConfig
fields for every method, e.g. to measure what a faster budget costs in accuracy.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gen3d_ros.geometry.rotations import rotation_angle_between  # noqa: E402
from gen3d_ros.geometry.camera import PinholeCamera  # noqa: E402
from gen3d_ros.robot.gaussians import RobotGaussianModel  # noqa: E402
from gen3d_ros.robot.pose import PoseEstimator, PoseEstimatorConfig  # noqa: E402
from gen3d_ros.robot.urdf import load_robot_npz, save_robot_npz  # noqa: E402
from gen3d_ros.outputs import atomic_path, write_text  # noqa: E402
from gen3d_ros.config import flatten_params  # noqa: E402
sys.path.insert(0, str(ROOT / "bench"))
import pose_keypoints  # noqa: E402

METHODS = {
    # the default: silhouette search over 16 azimuths x 4 elevations x 128 joint samples + hill climbing, base-yaw
    # twins, render scoring, coarse-to-fine Adam on the best 3
    "multi_hypothesis": dict(),
    # one hypothesis: neutral joints, one upright camera at 30 deg elevation, translation fitted to the mask
    "single_hypothesis": dict(azimuths=1, elevations_deg=(30.0,), joint_restarts=1, keep=(1, 1), search_rounds=0,
                              yaw_offsets=1),
    # the default search, but no photometric term (masks only)
    "silhouette_only": dict(w_rgb=0.0),
    # the true camera is given: joint search (same sample budget) + refinement of the joints only
    "known_camera": dict(),
}
# per robot: checkpoint, training FOV (deg) and background of that checkpoint, the saved robot (plain arrays + JSON,
# for machines without the mesh loaders; see bench/robot_render.py prepare)
ROBOTS = {
    "test_arm": dict(checkpoint=ROOT / "gen3d_ros/models/drrobot_gen3d_test_arm.pt", fov=40.0,
                     background=(1.0, 1.0, 1.0), robot_file=None),
    "panda": dict(checkpoint=ROOT / "runs/panda_drrobot_model.pt", fov=40.0, background=(0.35, 0.4, 0.45),
                  robot_file=ROOT / "runs/bench_panda/robot.npz"),
}
METRICS = ("joint_err_deg_median", "cam_rot_err_deg_median", "cam_trans_err_cm_median", "add_m_median", "add_auc",
           "success_rate", "seconds_to_converge")


def add_auc(add_m: np.ndarray, max_m: float = 0.1) -> float:
    """Area under the accuracy-vs-threshold curve of ADD over [0, max_m], normalised to [0, 1]."""
    thresholds = np.linspace(0.0, max_m, 101)
    acc = [(add_m < t).mean() for t in thresholds]
    return float(np.trapezoid(acc, thresholds) / max_m)


def load_bench_robot(name: str, robot_file: Path | None):
    """The robot saved by ``bench/robot_render.py prepare`` (``robot.npz``: no mesh readers needed) when there is
    one, else loaded from its URDF."""
    if robot_file is not None and Path(robot_file).is_file():
        return load_robot_npz(Path(robot_file))
    from gen3d_ros.robot.description import load_robot

    return load_robot(name)


def sample_scenes(robot, n: int, camera: PinholeCamera, seed: int, background) -> dict[str, np.ndarray]:
    """``n`` held-out (q, T_camera_base) pairs with their mesh renders (open3d) on ``background``."""
    from gen3d_ros.sim.robot_dataset import (_bounding_sphere, _camera_keeping_robot_in_view, _hull_points,
                                             fitting_distance)
    from gen3d_ros.sim.robot_render import RobotMeshRenderer

    renderer = RobotMeshRenderer(robot)
    hull_points, hull_link = _hull_points(renderer.mesh)
    rng = np.random.default_rng(seed)
    lo, hi = np.asarray(robot.lower, dtype=np.float64), np.asarray(robot.upper, dtype=np.float64)
    qs, Ts, rgbs, masks = [], [], [], []
    for _ in range(n):
        q = lo + (0.2 + 0.6 * rng.random(len(lo))) * (hi - lo)
        centre, radius = _bounding_sphere(renderer.link_transforms(q), hull_points, hull_link)
        distance = fitting_distance(radius, camera) * rng.uniform(1.0, 1.2)
        T = _camera_keeping_robot_in_view(renderer, q, camera, rng.uniform(0, 2 * math.pi),
                                          math.radians(rng.uniform(15, 45)), distance, centre)
        out = renderer.render(q, T, camera, background=tuple(background))
        qs.append(q)
        Ts.append(T)
        rgbs.append(out.rgb)
        masks.append(out.mask)
    return dict(q=np.array(qs, np.float32), T_camera_base=np.array(Ts, np.float32), rgb=np.array(rgbs, np.float32),
                mask=np.array(masks))


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    try:
        import gsplat

        out["gsplat"] = gsplat.__version__
    except Exception:
        pass
    return out


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} thread)"


def write_markdown(results: dict, path: Path) -> None:
    """One table per robot of pose_estimation.json."""
    out = ["# Pose estimation benchmark", "",
           "Held-out views: q in the middle 60 % of each joint range, cameras at 15-45 deg elevation framing the "
           "posed robot, images from the mesh renderer (open3d) unless said otherwise; no masks given. "
           "`known_camera` gets the true camera (joints only), so its camera errors are 0 by construction. "
           "Medians over the views; ADD = mean distance of link origins in the camera frame; success = ADD < 5 cm; "
           "s / image = median wall time of one `estimate`.", ""]
    for robot in results.get("robots", []):
        meta = setup_of(results, robot)
        if not meta:  # a robot of the keypoint benchmark only (its tables follow)
            continue
        out += [f"## {robot}: {meta.get('views')} views, {meta.get('image_size')} px, {meta.get('fov_deg')} deg FOV, "
                f"images: {meta.get('image_source')}, model `{meta.get('checkpoint')}`", "",
                f"Device: {meta.get('device')}, backend {meta.get('backend')}; versions {meta.get('versions')}", "",
                f"`{meta.get('command')}`", "",
                "| method | joint err (deg) | cam rot (deg) | cam trans (cm) | ADD median (cm) | ADD AUC 0-10 cm | "
                "success (ADD<5 cm) | s / image |", "|---|---|---|---|---|---|---|---|"]
        for name in METHODS:
            if f"{robot}.{name}.add_auc" not in results:
                continue
            m = {k: results[f"{robot}.{name}.{k}"] for k in METRICS}
            views = results.get(f"{robot}.{name}.views", meta.get("views"))
            note = "" if views == meta.get("views") else f" ({views} views)"
            out.append(f"| {name}{note} | {m['joint_err_deg_median']:.1f} | {m['cam_rot_err_deg_median']:.1f} | "
                       f"{m['cam_trans_err_cm_median']:.1f} | {100 * m['add_m_median']:.1f} | {m['add_auc']:.3f} | "
                       f"{m['success_rate']:.2f} | {m['seconds_to_converge']:.1f} |")
        out.append("")
    out += pose_keypoints.keypoint_tables(results)
    out += ["ADD uses link origins only: it does not see the last joint's roll or mirror-image joint configurations "
            "with the same origins, so a large joint error can come with a small ADD. Earlier versions of this file "
            "(64 px, the untrained model's own renders as images) are not comparable.", "",
            "CPU seconds are wall time on a 2-core machine shared with other jobs (a test suite ran alongside): treat "
            "them as upper bounds.", ""]
    write_text(path, "\n".join(out))


def setup_of(results: dict, robot: str) -> dict:
    """The set-up of ``robot``'s run (flat keys ``<robot>.setup.<field>``, ``versions`` / ``config`` one level
    deeper) as a dict: ``versions`` and ``config`` as dicts again."""
    head, meta = f"{robot}.setup.", {}
    for key, value in results.items():
        if key.startswith(head):
            field, _, sub = key[len(head):].partition(".")
            if sub:
                meta.setdefault(field, {})[sub] = value
            else:
                meta[field] = value
    return meta


def merge_results(path: Path, new: dict) -> dict:
    """``path``'s results with every robot in ``new`` replaced by ``new``'s keys for it."""
    old = json.loads(path.read_text()) if path.is_file() else {}
    if "robots" not in old:  # the old single-robot layout: start over
        old = {}
    robots = list(new.get("robots", []))
    merged = {k: v for k, v in old.items() if k != "robots" and not any(k == r or k.startswith(r + ".") for r in robots)}
    merged.update({k: v for k, v in new.items() if k != "robots"})
    merged["robots"] = list(dict.fromkeys([*old.get("robots", []), *robots]))
    return {"robots": merged.pop("robots"), **merged}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--robot", choices=sorted(ROBOTS), default="test_arm")
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--size", type=int, default=96, help="square image size (px)")
    parser.add_argument("--gaussians", type=int, default=500, help="untrained model size (no checkpoint)")
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="Dr. Robot checkpoint (default: the robot's, see ROBOTS; the untrained model when absent)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ", ".join(METHODS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write-scenes", type=Path, default=None,
                        help="render the held-out views (+ robot.npz and checkpoint) into this folder and exit")
    parser.add_argument("--scenes", type=Path, default=None, help="use the views written by --write-scenes")
    parser.add_argument("--deadline-s", type=float, default=float("inf"),
                        help="start no new view after this many seconds (results so far are kept)")
    parser.add_argument("--merge", type=Path, default=None,
                        help="merge this pose_estimation.json's robots into OUT's results and exit")
    parser.add_argument("--config", type=json.loads, default={},
                        help="PoseEstimatorConfig fields (JSON) applied to every method on top of its own, e.g. a "
                             "faster budget: '{\"iterations\": [15, 20]}'")
    parser.add_argument("--no-progress", action="store_true")
    pose_keypoints.add_arguments(parser)
    return parser


def _bench_robot(args: argparse.Namespace, robot_file: Path | None):
    """The robot of ``--robot``: the packaged test arm, else :func:`load_bench_robot`."""
    if args.robot == "test_arm" and robot_file is None:
        from gen3d_ros.robot.urdf import load_urdf, test_arm_urdf

        return load_urdf(test_arm_urdf())
    return load_bench_robot(args.robot, robot_file)


def _write_scenes(args: argparse.Namespace, robot, camera: PinholeCamera, spec: dict, checkpoint: Path) -> None:
    """``--write-scenes``: the held-out views, the checkpoint and the loaded robot into one folder."""
    args.write_scenes.mkdir(parents=True, exist_ok=True)
    scenes = sample_scenes(robot, args.views, camera, args.seed, spec["background"])
    scenes.update(size=np.array(args.size), fov_deg=np.array(spec["fov"]), background=np.array(spec["background"]))
    with atomic_path(args.write_scenes / "scenes.npz") as tmp, open(tmp, "wb") as stream:
        np.savez_compressed(stream, **scenes)
    shutil.copy(checkpoint, args.write_scenes / "model.pt")
    save_robot_npz(robot, args.write_scenes / "robot.npz")  # the robot as loaded, whatever it came from
    print({p.name: round(p.stat().st_size / 1e6, 2) for p in sorted(args.write_scenes.iterdir())})


def _bench_model(args: argparse.Namespace, robot, checkpoint: Path | None) -> tuple[RobotGaussianModel, str]:
    """``(model, image source)``: the checkpoint's model (images from the mesh renderer), or for the test arm
    without one the untrained model (images are its own renders)."""
    if checkpoint is not None and Path(checkpoint).is_file():
        model, image_source = RobotGaussianModel.load(checkpoint, robot), "mesh_renderer"
    elif args.robot == "test_arm":
        model = RobotGaussianModel.from_robot(robot, n_gaussians=args.gaussians, skinning=False, appearance=False)
        image_source = "init_model"
    else:
        raise SystemExit(f"no checkpoint for {args.robot} at {checkpoint}")
    model.eval()
    return model, image_source


def _scenes(args: argparse.Namespace, robot, model, camera: PinholeCamera, background, image_source: str
            ) -> tuple[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], PinholeCamera]:
    """``([(q, T_camera_base, rgb)], camera)`` of the held-out views: stored (``--scenes``), mesh renders, or the
    untrained model's own renders (same (q, T) protocol; open3d only for the framing)."""
    if args.scenes is not None:
        with np.load(args.scenes / "scenes.npz", allow_pickle=False) as stored:
            data = {k: stored[k] for k in stored.files}
        camera = PinholeCamera.from_fov(int(data["size"]), int(data["size"]), float(data["fov_deg"]))
        return [(torch.as_tensor(q), torch.as_tensor(T), torch.as_tensor(rgb))
                for q, T, rgb in zip(data["q"], data["T_camera_base"], data["rgb"])][: args.views], camera
    data = sample_scenes(robot, args.views, camera, args.seed, background)
    if image_source == "mesh_renderer":
        return [(torch.as_tensor(q), torch.as_tensor(T), torch.as_tensor(rgb))
                for q, T, rgb in zip(data["q"], data["T_camera_base"], data["rgb"])], camera
    ref = PoseEstimator(model, PoseEstimatorConfig(background=background))
    return [(torch.as_tensor(q), torch.as_tensor(T), ref.render(q, T, camera).rgb.clamp(0, 1).cpu())
            for q, T in zip(data["q"], data["T_camera_base"])], camera


def _results_header(args: argparse.Namespace, robot, model, spec: dict, checkpoint: Path | None, image_source: str,
                    n_views: int, camera: PinholeCamera) -> dict:
    """The results' robot set-up (images, model, device, versions, command) as flat keys ``<robot>.setup.*``."""
    name_r = robot.name
    label = None
    if image_source == "mesh_renderer":
        path = Path(spec["checkpoint"] if args.scenes is not None and args.checkpoint is None else checkpoint).resolve()
        label = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
        if args.scenes is not None:
            label += f" (copied to {args.scenes}/model.pt)"
    setup = {"image_source": image_source, "checkpoint": label, "views": n_views,
             "image_size": [camera.width, camera.height], "fov_deg": spec["fov"],
             "background": list(spec["background"]), "seed": args.seed, "device": _device_name(args.device),
             "backend": args.backend, "versions": _versions(), "config": dict(args.config),
             "command": "python " + " ".join(shlex.quote(a) for a in sys.argv)}
    return {"robots": [name_r], **flatten_params(setup, f"{name_r}.setup.")}


def _view_errors(estimator: PoseEstimator, model, est, q: torch.Tensor, T: torch.Tensor,
                 angular: np.ndarray) -> tuple[float, float, float, float]:
    """``(mean joint error deg over revolute joints, camera rotation error deg, translation error cm, ADD m)``."""
    Te = torch.as_tensor(est.T_camera_base, dtype=torch.float32).cpu()
    joint = float(np.degrees(np.abs(np.asarray(est.q) - q.numpy()))[angular].mean())
    rot = math.degrees(float(rotation_angle_between(Te[:3, :3].double(), T[:3, :3].double())))
    trans = 100 * float((Te[:3, 3] - T[:3, 3]).norm())
    # ADD (DREAM): link origins in the CAMERA frame, each by its own (q, T_camera_base): invariant to the
    # base-yaw / camera-azimuth trade-off, which leaves the camera-frame robot unchanged
    with torch.no_grad():
        kp_e = model.keypoints(torch.as_tensor(est.q, dtype=torch.float32, device=estimator.device)).cpu()
        kp_t = model.keypoints(q.to(estimator.device)).cpu()
    kp_e = kp_e @ Te[:3, :3].T + Te[:3, 3]
    kp_t = kp_t @ T[:3, :3].T + T[:3, 3]
    return joint, rot, trans, float((kp_e - kp_t).norm(dim=-1).mean())


def _run_method(args: argparse.Namespace, name: str, model, scenes: list, camera: PinholeCamera, background,
                angular: np.ndarray, t_start: float) -> dict[str, float] | None:
    """The medians/rates of METRICS for method ``name`` over ``scenes`` (None if the deadline left no view)."""
    from tqdm import tqdm

    cfg = PoseEstimatorConfig(**{**METHODS[name], **args.config}, background=background, device=args.device,
                              backend=args.backend)
    estimator = PoseEstimator(model, cfg)
    if args.device.startswith("cuda"):  # warm-up: kernel compilation/loading outside the timings
        estimator.render(scenes[0][0], scenes[0][1], camera)
        torch.cuda.synchronize()
    errors, secs, phases = [], [], []
    for q, T, image in tqdm(scenes, desc=name, disable=args.no_progress):
        if time.perf_counter() - t_start > args.deadline_s:
            print(f"deadline: {name} stopped after {len(errors)} views", flush=True)
            break
        kwargs = {"T_camera_base": T} if name == "known_camera" else {}
        est = estimator.estimate(image, camera, **kwargs)
        errors.append(_view_errors(estimator, model, est, q, T, angular))
        secs.append(est.seconds)
        phases.append(est.phase_seconds)
    if not errors:
        return None
    joint, rot, trans, add = (np.array(v) for v in zip(*errors))
    return {
        "joint_err_deg_median": float(np.median(joint)), "cam_rot_err_deg_median": float(np.median(rot)),
        "cam_trans_err_cm_median": float(np.median(trans)), "add_m_median": float(np.median(add)),
        "add_auc": add_auc(add), "success_rate": float((add < 0.05).mean()),
        "seconds_to_converge": float(np.median(secs)), "views": len(errors),
        # where an estimate's time goes (target, search, score, level0, ...): medians over the views
        "phase_seconds": {k: round(float(np.median([p[k] for p in phases if k in p])), 4)
                          for k in dict.fromkeys(k for p in phases for k in p)},
    }


def _keypoint_main(args: argparse.Namespace, json_path: Path, md_path: Path) -> int:
    """``--urdf``: the keypoint benchmark (bench/pose_keypoints.py) of any robot, merged into the results by mode:
    keys of the modes it ran are replaced, the robot's other keys (the older methods) are kept."""
    from gen3d_ros.robot.description import load_robot

    try:
        robot = load_robot(args.urdf)
    except FileNotFoundError as exc:
        raise SystemExit(str(exc)) from None
    if args.size == 96:  # the old benchmark's default; the keypoint benchmark's protocol is 256 px
        args.size = 256
    results = pose_keypoints.run_benchmark(args, ROOT, robot, _versions(), _device_name(args.device))
    if not results:
        return 0
    methods = [m for m in args.kp_methods.split(",") if m]
    header = pose_keypoints.setup_prefix(robot.name, methods)
    results[header + "command"] = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    old = json.loads(json_path.read_text()) if json_path.is_file() else {"robots": []}
    modes = [m for m in args.modes.split(",") if m]

    def replaced(key: str) -> bool:  # a key of a (mode, method) this run measured again
        for mode in modes:
            rest = key[len(f"{robot.name}.{mode}."):] if key.startswith(f"{robot.name}.{mode}.") else None
            if rest is None:
                continue
            method = rest.split(".")[0] if rest.split(".")[0] in pose_keypoints.KP_METHODS else "full"
            if method in methods:
                return True
        return key.startswith(header)

    merged = {k: v for k, v in old.items() if not replaced(k)}
    merged.update(results)
    merged["robots"] = list(dict.fromkeys([*old.get("robots", []), robot.name]))
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(json_path, json.dumps(merged, indent=2) + "\n")
    write_markdown(merged, md_path)
    print("\n".join(pose_keypoints.keypoint_tables(merged)))
    return 0


def main() -> int:
    args = _parser().parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    json_path, md_path = args.out / "pose_estimation.json", args.out / "pose_estimation.md"
    if args.merge is not None:
        merged = merge_results(json_path, json.loads(args.merge.read_text()))
        write_text(json_path, json.dumps(merged, indent=2) + "\n")
        write_markdown(merged, md_path)
        print(md_path.read_text())
        return 0
    if args.urdf is not None:
        return _keypoint_main(args, json_path, md_path)
    spec = ROBOTS[args.robot]
    checkpoint = args.checkpoint or spec["checkpoint"]
    robot_file = spec["robot_file"]
    if args.scenes is not None:  # a folder written by --write-scenes: everything the estimate needs
        checkpoint, robot_file = args.scenes / "model.pt", args.scenes / "robot.npz"
    robot = _bench_robot(args, robot_file)
    camera = PinholeCamera.from_fov(args.size, args.size, spec["fov"])
    background = spec["background"]
    if args.write_scenes is not None:
        _write_scenes(args, robot, camera, spec, checkpoint)
        return 0
    model, image_source = _bench_model(args, robot, checkpoint)
    scenes, camera = _scenes(args, robot, model, camera, background, image_source)
    results = _results_header(args, robot, model, spec, checkpoint, image_source, len(scenes), camera)
    name_r = robot.name
    # joint error over the revolute joints (degrees); prismatic ones (the Panda's fingers) are left out
    types = {j.name: j.type for j in robot.joints}
    angular = np.array([types.get(j, "revolute") in ("revolute", "continuous") for j in model.fk.joint_names])
    results[f"{name_r}.setup.joint_err_joints"] = [j for j, a in zip(model.fk.joint_names, angular) if a]
    args.out.mkdir(parents=True, exist_ok=True)
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        metrics = _run_method(args, name, model, scenes, camera, background, angular, t_start)
        if metrics is None:
            continue
        views = metrics.pop("views")
        results.update(flatten_params(metrics.pop("phase_seconds"), f"{name_r}.{name}.phase_seconds."))
        for k, v in metrics.items():
            results[f"{name_r}.{name}.{k}"] = round(v, 4)
        results[f"{name_r}.{name}.views"] = views
        print(name, {k: round(v, 3) for k, v in metrics.items()}, flush=True)
        # written after every method (a run cut short keeps what it finished), merged with the other robots
        merged = merge_results(json_path, results)
        write_text(json_path, json.dumps(merged, indent=2) + "\n")
        write_markdown(merged, md_path)
    print(md_path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
