#!/usr/bin/env python3
"""Real-time performance: hGCA completion at full sensor range, its CPU fallback and baselines, robot pose
tracking, training throughput (issue 12). One entry point, three steps (the GPU machine has no open3d or ROS):

    # 1. here: sweeps of one 120 m procedural street by an OS1-128, an HDL-64E and a VLP-32C from the same pose,
    #    the scene's ground-truth surface cells, and a 256 px video of the test arm (open3d renders)
    .venv/bin/python bench/performance.py inputs --out .devdata/perf_inputs.npz
    # 2. on the GPU machine: the fast path (gather-GEMM sparse convs, torch meshing on the GPU) per sensor, region
    #    and step count, today's reference path (offset-loop convs, numpy/scikit-image meshing) on the same sweep,
    #    the 120 m box, pose tracking and single-image estimation, training iterations/s
    python bench/performance.py gpu --inputs .devdata/perf_inputs.npz --device cuda --out $OUT
    # 3. here: the CPU fallback on the same sweep, open3d Poisson of it, real serialized message sizes; merges
    #    step 2 into bench/results/performance.json and performance.md
    .venv/bin/python bench/performance.py cpu --inputs .devdata/perf_inputs.npz --gpu $OUT/performance_gpu.json \\
        --out bench/results

Quality is measured next to every speed: fine-cell IoU / precision / recall against the scene's ground-truth
surface cells (0.2 m) inside the region, and the mesh's F-score at 0.4 m against those cells' centres, for the
fast path and the reference path of the same sweep. The ground truth is the whole scene surface in the box,
also where no sensor could see it, so absolute recall is low for every method; the comparison is the point.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from gen3d_ros.outputs import atomic_path, write_text  # noqa: E402

SENSORS = ("os128", "hdl64", "vlp32")
GT_VOXEL = 0.2
GT_HALF_EXTENT = 60.0
FSCORE_M = 0.4
ROI_M = 51.2
ROIS = (12.0, 25.6, 51.2)
BIG_ROI_M = 60.0  # the 120 m box of hGCA's large scenes
VIDEO_FRAMES = 48
VIDEO_SIZE = 256


# --------------------------------------------------------------------------------------------------
# step 1: inputs (open3d)


def _scene_and_pose():
    from gen3d_ros.demo import clear_drive_start
    from gen3d_ros.sim import SceneConfig, generate_scene

    scene = generate_scene(SceneConfig(size_m=130.0, n_buildings=26, n_cars=32, n_poles=16, n_signs=10, n_trees=40,
                                       n_fences=8), seed=3)
    return scene, clear_drive_start(scene, 1, seed=0)


def _ground_truth_cells(scene, T_world_lidar: np.ndarray, z_origin: float, z_cells: int) -> np.ndarray:
    """(M, 3) int16 fine cells of the scene surface, sensor frame, grid corner (-60, -60, z_origin) m."""
    from bench.completion_quality import cells_on_grid, sample_mesh

    T = np.linalg.inv(T_world_lidar)
    verts = scene.vertices @ T[:3, :3].T + T[:3, 3]
    pts = sample_mesh(verts, scene.triangles, GT_VOXEL / 3.0)
    n = int(round(2 * GT_HALF_EXTENT / GT_VOXEL))
    origin = np.array([-GT_HALF_EXTENT, -GT_HALF_EXTENT, z_origin])
    return cells_on_grid(pts, GT_VOXEL, origin, (n, n, z_cells)).astype(np.int16)


def _robot_video() -> dict[str, np.ndarray]:
    """A static camera watching the test arm move smoothly: ``video_rgb`` (F, S, S, 3) uint8 mesh renders on the
    model's background, ``video_q`` (F, J), ``video_T_camera_base`` (4, 4), ``video_fov_deg``."""
    from gen3d_ros.geometry.camera import PinholeCamera
    from gen3d_ros.robot.description import load_robot
    from gen3d_ros.sim.robot_dataset import _bounding_sphere, _camera_keeping_robot_in_view, _hull_points
    from gen3d_ros.sim.robot_dataset import fitting_distance
    from gen3d_ros.sim.robot_render import RobotMeshRenderer

    from bench.pose_estimation import ROBOTS

    spec = ROBOTS["test_arm"]
    robot = load_robot("test_arm")
    fov = float(spec["fov"])
    camera = PinholeCamera.from_fov(VIDEO_SIZE, VIDEO_SIZE, fov)
    renderer = RobotMeshRenderer(robot)
    lo, hi = np.asarray(robot.lower, np.float64), np.asarray(robot.upper, np.float64)
    t = np.linspace(0.0, 1.0, VIDEO_FRAMES)[:, None]
    phase = np.arange(len(lo))[None, :]
    qs = lo + (0.5 + 0.2 * np.sin(2 * math.pi * (0.6 * t + 0.15 * phase))) * (hi - lo)  # ~1 rad/s at 30 fps
    hull_points, hull_link = _hull_points(renderer.mesh)
    centre, radius = _bounding_sphere(renderer.link_transforms(qs[0]), hull_points, hull_link)
    T = _camera_keeping_robot_in_view(renderer, qs[0], camera, 0.7, math.radians(30.0),
                                      fitting_distance(radius, camera) * 1.8, centre)
    background = tuple(float(v) for v in spec["background"])
    frames = [np.clip(renderer.render(q, T, camera, background=background).rgb * 255.0 + 0.5, 0, 255)
              .astype(np.uint8) for q in qs]
    return {"video_rgb": np.stack(frames), "video_q": qs.astype(np.float32),
            "video_T_camera_base": np.asarray(T, np.float32), "video_fov_deg": np.float32(fov),
            "video_background": np.asarray(background, np.float32)}


def write_inputs(out: Path) -> None:
    from gen3d_ros.completion.checkpoint import default_hgca_checkpoint, load_bundle
    from gen3d_ros.completion.checkpoint import checkpoint_grid
    from gen3d_ros.sim import LidarConfig, simulate_drive

    fine = checkpoint_grid(load_bundle(default_hgca_checkpoint())["fine"], "hgca")
    scene, start = _scene_and_pose()
    data: dict[str, Any] = {}
    for name in SENSORS:
        sweep = simulate_drive(scene, LidarConfig.preset(name), n_sweeps=1, seed=0, start_s_m=start)[0]
        data[f"points_{name}"] = sweep.scan.points.astype(np.float32)
        T = sweep.T_world_lidar
    data["gt_cells"] = _ground_truth_cells(scene, T, float(fine.origin[2]), int(fine.shape[2]))
    data["gt_origin"] = np.array([-GT_HALF_EXTENT, -GT_HALF_EXTENT, fine.origin[2]])
    data["gt_voxel"] = np.float64(GT_VOXEL)
    data.update(_robot_video())
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:  # atomic: atomic_path renames it into place
            np.savez_compressed(f, **data)
    sizes = {k: v.shape for k, v in data.items() if hasattr(v, "shape")}
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB): {sizes}")


def load_inputs(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# --------------------------------------------------------------------------------------------------
# measurement helpers


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _peak_reset(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_mb(device: str) -> float:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _sample_mesh_points(mesh, n: int, seed: int = 0) -> np.ndarray:
    from gen3d_ros.completion.udf_mesh import sample_mesh

    if len(mesh.faces) == 0:
        return np.zeros((0, 3), np.float32)
    return sample_mesh(mesh, n, seed=seed)


def gt_in_region(inputs: dict, origin: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Ground-truth cells re-indexed on a completion grid (corner ``origin``, ``shape`` cells of 0.2 m)."""
    shift = np.round((inputs["gt_origin"] - origin) / GT_VOXEL).astype(np.int64)
    cells = inputs["gt_cells"].astype(np.int64) + shift
    keep = ((cells >= 0) & (cells < shape)).all(1)
    return cells[keep].astype(np.int32)


def quality(out, completer, inputs: dict) -> dict[str, float]:
    """Fine-cell IoU / precision / recall and mesh F-score (0.4 m) of one completion against the ground truth."""
    from gen3d_ros.completion.metrics import fscore, voxel_iou, voxel_precision_recall
    from gen3d_ros.completion.voxelize import voxel_centers

    gt = gt_in_region(inputs, out.origin, completer.fine_shape)
    p, r = voxel_precision_recall(out.fine_cells, gt)
    res = {"iou": voxel_iou(out.fine_cells, gt), "precision": p, "recall": r}
    if len(out.mesh.faces):
        pts = _sample_mesh_points(out.mesh, 300_000)
        gt_pts = voxel_centers(gt, out.fine_voxel, out.origin)
        res["mesh_fscore"] = fscore(pts, gt_pts, FSCORE_M)[2]
    return res


# --------------------------------------------------------------------------------------------------
# completion


def make_completer(device: str, half_extent: float, *, mesher: str, algorithm: str, coarse_steps: int = 0,
                   fine_steps: int = 0, mesh: bool = True, mesh_resolution: int = 2, half: bool = False):
    from gen3d_ros.completion.inference import SceneCompleter, SceneCompleterConfig
    from gen3d_ros.sparse.backends.torch_backend import set_conv_algorithm

    set_conv_algorithm(algorithm)
    return SceneCompleter(None, SceneCompleterConfig(half_extent_m=half_extent, device=device, mesher=mesher,
                                                     coarse_steps=coarse_steps, fine_steps=fine_steps, mesh=mesh,
                                                     max_points=0, mesh_resolution=mesh_resolution,
                                                     half_precision_decoder=half))


def time_completion(completer, points: np.ndarray, device: str, reps: int, *,
                    warmup: int = 1) -> tuple[dict[str, float], Any]:
    """Median per-stage milliseconds of ``reps`` completions of ``points`` after ``warmup`` ones, peak memory of the
    last, and that last completion."""
    stages: dict[str, list[float]] = {}
    totals = []
    for _ in range(warmup):  # allocator, cuBLAS heuristics, lazy imports, GPU clocks
        completer.complete(points)
    for _ in range(reps):
        _peak_reset(device)
        t0 = time.perf_counter()
        out = completer.complete(points)
        _sync(device)
        totals.append((time.perf_counter() - t0) * 1e3)
        for k, v in out.timings_ms.items():
            stages.setdefault(k, []).append(v)
    med = {f"{k}_ms": float(np.median(v)) for k, v in stages.items()}
    med["coarse_total_ms"] = med.get("voxelize_ms", 0.0) + med.get("coarse_ms", 0.0)
    med["fine_total_ms"] = med.get("encode_ms", 0.0) + med.get("fine_ms", 0.0)
    med["total_ms"] = float(np.median(totals))
    med["peak_mb"] = _peak_mb(device)
    med["triangles"] = float(len(out.mesh.faces))
    med["vertices"] = float(len(out.mesh.vertices))
    med["points"] = float(len(points))
    med["coarse_cells"] = float(len(out.coarse_cells))
    med["fine_cells"] = float(len(out.fine_cells))
    return med, out


def _flat(prefix: str, values: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}.{k}": float(v) for k, v in values.items()}


STEP_VARIANTS = ((10, 4), (5, 4), (5, 2))
"""(coarse, fine) steps measured next to the node's GPU default (processor.HGCA_DEFAULTS; (10, 4): the models')."""


def _measure(res: dict, label: str, completer, inputs: dict, device: str, reps: int, log, *, sensor: str = "os128",
             with_quality: bool = True, warmup: int = 3) -> None:
    points = inputs[f"points_{sensor}"]
    med, out = time_completion(completer, points, device, reps, warmup=warmup)
    res.update(_flat(label, med))
    if with_quality:
        res.update(_flat(f"{label}.quality", quality(out, completer, inputs)))
    log(f"{label}: {med}")


def completion_gpu(inputs: dict, device: str, reps: int, log: Callable[[str], None], *,
                   headline_only: bool = False) -> dict[str, float]:
    """The fast path (the node's GPU defaults: +-51.2 m, HGCA_DEFAULTS steps, one lattice step per voxel) per sensor,
    region, step count and lattice resolution; the 120 m box; today's reference path on the same sweep."""
    from gen3d_ros.completion.processor import hgca_defaults

    res: dict[str, float] = {}
    d = hgca_defaults(device)
    steps = dict(coarse_steps=int(d["coarse_steps"]), fine_steps=int(d["fine_steps"]))
    res.update({"fast.coarse_steps": float(steps["coarse_steps"]), "fast.fine_steps": float(steps["fine_steps"])})
    fast = make_completer(device, ROI_M, mesher="torch", algorithm="auto", mesh_resolution=1, **steps)
    for name in SENSORS:
        _measure(res, f"fast.{name}", fast, inputs, device, reps, log, sensor=name, with_quality=name == "os128")
    for roi in ROIS[:-1] if not headline_only else ():
        c = make_completer(device, roi, mesher="torch", algorithm="auto", mesh_resolution=1, **steps)
        _measure(res, f"fast.roi{roi:g}", c, inputs, device, reps, log, with_quality=False)
    for cs, fs in STEP_VARIANTS:
        c = make_completer(device, ROI_M, mesher="torch", algorithm="auto", coarse_steps=cs, fine_steps=fs,
                           mesh_resolution=1)
        _measure(res, f"fast.steps{cs}_{fs}", c, inputs, device, reps, log)
    big = make_completer(device, BIG_ROI_M, mesher="torch", algorithm="auto", mesh_resolution=1, **steps)
    _measure(res, "fast.roi60", big, inputs, device, reps, log, with_quality=False)
    if headline_only:  # a re-run of the fast path only; lattice and reference from an earlier run (merged later)
        return res
    c = make_completer(device, ROI_M, mesher="torch", algorithm="auto", mesh_resolution=2, **steps)
    _measure(res, "fast.res2", c, inputs, device, reps, log)
    # today's path: offset-loop convs, numpy/scikit-image meshing at two lattice steps per voxel (one ~45 s run)
    ref = make_completer(device, ROI_M, mesher="numpy", algorithm="offsets", mesh_resolution=2)
    _measure(res, "reference.os128", ref, inputs, device, 1, log, warmup=0)
    from gen3d_ros.sparse.backends.torch_backend import set_conv_algorithm

    set_conv_algorithm("auto")
    return res


def _cell_keys(cells: np.ndarray) -> np.ndarray:
    """(N,) int64 keys of (N, 3) non-negative int cells (< 2^20 per axis)."""
    c = cells.astype(np.int64)
    return (c[:, 0] << 40) | (c[:, 1] << 20) | c[:, 2]


def coarse_fast_paths(inputs: dict, device: str, reps: int, log: Callable[[str], None]) -> dict[str, float]:
    """Issue 12's coarse target before and after the inference fast paths (``gen3d_ros/sparse/fused.py``: folded
    norms and kernel-2 resampling in the UNet, GCA's boxed chain), in one run: the fast path (node defaults,
    +-51.2 m) on the 128-beam sweep with them ``off`` (the previous fast path) and ``auto`` (on for CUDA), the
    other sensors with them on; ``fused.{coarse,fine}_cells_differ_fraction``: cells in one result and not the
    other, over the reference's count (same seed)."""
    from gen3d_ros.completion.processor import hgca_defaults
    from gen3d_ros.sparse.fused import set_fused_inference

    d = hgca_defaults(device)
    steps = dict(coarse_steps=int(d["coarse_steps"]), fine_steps=int(d["fine_steps"]))
    res: dict[str, float] = {}
    outs = {}
    try:
        for mode in ("off", "auto", "off", "auto"):  # twice, interleaved: a busy host drifts
            set_fused_inference(mode)
            c = make_completer(device, ROI_M, mesher="torch", algorithm="auto", mesh_resolution=1, **steps)
            label = f"fused.{mode}.os128" + (".again" if mode in outs else "")
            med, outs[mode] = time_completion(c, inputs["points_os128"], device, reps, warmup=3)
            res.update(_flat(label, med))
            log(f"{label}: {med}")
        res.update(_flat("fused.auto.os128.quality", quality(outs["auto"], c, inputs)))
        for stage in ("coarse", "fine"):  # atomics in both paths' probability sums: a draw may flip at the last bit
            a, b = (_cell_keys(getattr(outs[m], f"{stage}_cells")) for m in ("off", "auto"))
            res[f"fused.{stage}_cells_differ_fraction"] = float(len(np.setxor1d(a, b)) / max(1, len(a)))
        for name in [n for n in SENSORS[1:] if f"points_{n}" in inputs]:  # a trimmed inputs file may lack some
            _measure(res, f"fused.auto.{name}", c, inputs, device, reps, log, sensor=name, with_quality=False)
        for cs, fs in ((5, 4), (4, 4)):
            c = make_completer(device, ROI_M, mesher="torch", algorithm="auto", coarse_steps=cs, fine_steps=fs,
                               mesh_resolution=1)
            _measure(res, f"fused.auto.steps{cs}_{fs}", c, inputs, device, reps, log)
    finally:
        set_fused_inference("auto")
    for mode in ("off", "auto"):  # the better of the two interleaved medians
        res[f"fused.{mode}.coarse_total_ms_best"] = min(res[f"fused.{mode}.os128.coarse_total_ms"],
                                                        res.get(f"fused.{mode}.os128.again.coarse_total_ms", 1e9))
    log(f"coarse fast paths: {res}")
    return res


# --------------------------------------------------------------------------------------------------
# robot pose


def pose_tracking(inputs: dict, device: str, backend: str, log: Callable[[str], None], *,
                  cuda_graphs: bool | None = None, overrides: dict | None = None) -> dict[str, float]:
    """Frames/s of warm-started tracking (``PoseEstimator.refine`` per frame, camera unknown) of the video, and
    the seconds of one single-image estimate (multi-hypothesis search + refinement) of its first frame, both after
    warm-ups (``robot/pose/timing.py``). ``cuda_graphs``: the estimator's CUDA graphs (None: its default, on
    CUDA on); ``overrides``: PoseEstimatorConfig fields (e.g. ``track_iterations``, ``track_lr_scale``) and
    ``loss_graphs`` (1: graph each step's losses too, ``robot/pose/graphs.py``)."""
    import torch

    from gen3d_ros.geometry.camera import PinholeCamera
    from gen3d_ros.robot.description import load_robot
    from gen3d_ros.robot.gaussians import RobotGaussianModel
    from gen3d_ros.robot.pose import PoseEstimator, PoseEstimatorConfig
    robot = load_robot("test_arm")
    model = RobotGaussianModel.load(REPO / "gen3d_ros/models/drrobot_gen3d_test_arm.pt", robot).to(device).eval()
    size = int(inputs["video_rgb"].shape[1])
    camera = PinholeCamera.from_fov(size, size, float(inputs["video_fov_deg"]))
    background = tuple(float(v) for v in inputs["video_background"])
    from gen3d_ros.robot.pose.graphs import set_loss_graphs

    overrides = dict(overrides or {})
    previous = set_loss_graphs(bool(overrides.pop("loss_graphs", False)))  # the step's losses graphed too
    try:
        est = PoseEstimator(model, PoseEstimatorConfig(backend=backend, device=device, background=background,
                                                       **overrides), cuda_graphs=cuda_graphs)
    finally:
        set_loss_graphs(previous)
    frames = [torch.as_tensor(f).float().div(255.0) for f in inputs["video_rgb"]]
    q_true = inputs["video_q"]
    T_true = inputs["video_T_camera_base"]
    from gen3d_ros.robot.pose.timing import measure_estimate, measure_tracking

    single = measure_estimate(est, frames[0], camera)  # after one untimed estimate: CUDA context, gsplat's kernels
    initial = est.refine(frames[0], camera, q_true[0], T_true, iterations=30)  # the tracker's known start
    timing = measure_tracking(est, frames, camera, initial, warmup=4, count=False)
    outs = timing.estimates
    err = np.degrees(np.abs(np.array([o.q for o in outs]) - q_true[:len(outs)])).mean()
    res = {"pose_tracking_fps": float(timing.frames_per_s), "pose_tracking_joint_err_deg": float(err),
           "pose_single_image_s": float(single.seconds),
           "pose_single_image_joint_err_deg": float(np.degrees(np.abs(single.estimate.q - q_true[0])).mean()),
           "pose_image_px": float(size), "pose_track_iterations": float(est.config.track_iterations),
           "pose_track_lr_scale": float(est.config.track_lr_scale),
           "pose_loss_graphs": float(est.refiner.loss_graphs is not None),
           "pose_tracking_steps_per_frame": float(timing.steps_per_frame)}
    log(f"pose ({backend}{', no CUDA graphs' if cuda_graphs is False else ''}): {res}")
    return res


# --------------------------------------------------------------------------------------------------
# training


def training_throughput(device: str, log: Callable[[str], None]) -> dict[str, float]:
    try:
        from gen3d_ros.completion.training.throughput import measure_train_throughput
    except ImportError as exc:  # not built yet
        log(f"training throughput: {exc}")
        return {}
    res: dict[str, float] = {}
    from gen3d_ros.sparse.backends.torch_backend import set_conv_algorithm

    for stage, amp, algorithm in (("transition", "off", "auto"), ("transition", "bf16", "auto"),
                                  ("transition", "off", "gather_gemm"), ("autoencoder", "off", "auto"),
                                  ("fine", "off", "auto"), ("fine", "off", "gather_gemm")):
        set_conv_algorithm(algorithm)
        try:
            r = measure_train_throughput(stage, preset="demo", device=device, amp=amp, steps=10)
        except Exception as exc:  # one stage failing must not lose the others' numbers
            log(f"train {stage} amp={amp} failed: {type(exc).__name__}: {exc}")
            continue
        key = f"train.{stage}{'' if amp == 'off' else '.amp'}{'' if algorithm == 'auto' else '.' + algorithm}"
        res.update({f"{key}.iters_per_s": float(r["iters_per_s"]),
                    f"{key}.data_fraction": float(r.get("data_fraction", float("nan"))),
                    f"{key}.batch_size": float(r.get("batch_size", float("nan")))})
        log(f"train {stage} amp={amp} convs={algorithm}: {r}")
    set_conv_algorithm("auto")
    return res


# --------------------------------------------------------------------------------------------------
# provenance, report


def versions() -> dict[str, str]:
    import torch

    import gen3d_ros

    out = {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
           "gen3d_ros": gen3d_ros.__version__}
    for mod in ("gsplat", "open3d", "skimage"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:
            pass
    return out


def device_name(device: str) -> str:
    """``cuda:N: <GPU>`` or ``cpu: <model>, <n> cores`` (the completion benchmark's description)."""
    from bench.completion_quality import device_description

    return device_description(device)


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=1, sort_keys=False) + "\n")


def run_gpu(args: argparse.Namespace) -> dict:
    inputs = load_inputs(args.inputs)
    lines: list[str] = []

    def log(msg: str) -> None:
        print(msg, flush=True)
        lines.append(msg)

    res: dict[str, Any] = {"device": device_name(args.device), **{f"gpu.{k}": v for k, v in versions().items()},
                           "gpu.command": "bench/performance.py " + shlex.join(sys.argv[1:])}
    args.out.mkdir(parents=True, exist_ok=True)
    parts: dict[str, Callable[[], dict]] = {
        "completion": lambda: completion_gpu(inputs, args.device, args.reps, log,
                                             headline_only=args.headline_only),
        "coarse": lambda: coarse_fast_paths(inputs, args.device, args.reps, log),
        "train": lambda: training_throughput(args.device, log)}
    for backend in args.pose_backends:  # "gsplat+eager": gsplat without CUDA graphs, keys suffixed ".eager"
        name, eager = backend.removesuffix("+eager"), backend.endswith("+eager")
        first = args.pose_backends[0].removesuffix("+eager")  # the headline backend: its default has no suffix
        suffix = ("" if name == first else f".{name}") + (".eager" if eager else "")
        parts[f"pose.{backend}"] = lambda b=name, s=suffix, e=eager: {
            k + s: v for k, v in pose_tracking(inputs, args.device, b, log, cuda_graphs=False if e else None).items()}
    for variant in args.pose_variants:  # NAME:field=value,...: e.g. fewer steps per frame; keys suffixed .NAME
        name, _, fields = variant.partition(":")
        overrides = {k: (float(v) if "." in v or "e" in v else int(v))
                     for k, v in (f.split("=") for f in fields.split(",") if f)}
        parts[f"pose.{name}"] = lambda name=name, o=overrides: {
            f"{k}.{name}": v for k, v in pose_tracking(inputs, args.device, args.pose_backends[0].removesuffix(
                "+eager"), log, overrides=o).items()}
    for name, part in parts.items():
        if name.split(".")[0] not in args.parts:
            continue
        try:
            res.update(part())
        except Exception:  # a part that cannot run here (e.g. gsplat not built) is reported; the others go on
            import traceback

            log(f"{name} failed:\n{traceback.format_exc()}")
        write_json(args.out / "performance_gpu.json", res)  # after every part: a timeout keeps what was measured
    write_text(args.out / "performance_gpu.log", "\n".join(lines) + "\n")
    return res


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="step", required=True)
    a = sub.add_parser("inputs", help="write the sweeps, ground truth and robot video (needs open3d)")
    a.add_argument("--out", type=Path, required=True)
    g = sub.add_parser("gpu", help="the GPU measurements")
    g.add_argument("--inputs", type=Path, required=True)
    g.add_argument("--device", default="cuda")
    g.add_argument("--reps", type=int, default=5)
    g.add_argument("--parts", nargs="+", default=["completion", "pose", "train"],
                   help="completion, coarse (issue 12's fast paths off / on), pose, train")
    g.add_argument("--pose-backends", nargs="+", default=["gsplat", "torch"],
                   help="splatting backends of the pose part; NAME+eager: without the estimator's CUDA graphs")
    g.add_argument("--pose-variants", nargs="*", default=[],
                   help="pose part: also track with NAME:field=value,... config overrides (first backend; keys "
                        ".NAME), e.g. steps8:track_iterations=8,track_lr_scale=0.4")
    g.add_argument("--headline-only", action="store_true",
                   help="completion: the fast path per sensor, step count and the 120 m box only")
    g.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("cpu", help="the CPU fallback, Poisson, message bytes; merge")
    c.add_argument("--inputs", type=Path, required=True)
    c.add_argument("--gpu", type=Path, nargs="+", default=[],
                   help="performance_gpu.json of step 2 (several: merged in order, later runs override)")
    c.add_argument("--reps", type=int, default=3)
    c.add_argument("--out", type=Path, default=REPO / "bench/results")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.step == "inputs":
        write_inputs(args.out)
    elif args.step == "gpu":
        run_gpu(args)
    else:
        from bench.performance_cpu import run_cpu

        run_cpu(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
