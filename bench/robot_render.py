#!/usr/bin/env python3
"""How well and how fast does a trained Dr. Robot model render a robot?

Three steps, because the ground-truth renderer (open3d) and the robot meshes (example-robot-data, trimesh,
pycollada) live on the CPU machine while the training belongs on the GPU:

    # 1. here (CPU): render Panda's canonical/train/val views (gpu preset) and save the loaded robot (robot.npz)
    python bench/robot_render.py prepare --dir runs/bench_panda
    # 2. on the CUDA machine: train (preset gpu), evaluate on held-out poses, time both backends
    python bench/robot_render.py train --dir runs/bench_panda --out $OUT --set time_budget_s=240
    # 3. here again: time the torch backend on this CPU with the trained checkpoint, merge into the results
    python bench/robot_render.py cpu-timings --checkpoint bench/results/robot_render_model.pt

Metrics (flat keys in ``bench/results/robot_render.json``): ``psnr_heldout`` / ``ssim_heldout`` (mean over the
``val_views`` held-out random poses, whole image, background included), ``backend_agreement_psnr`` (read from
``bench/results/splat_agreement.json`` when the splatting benchmark produced it, else PSNR between gsplat and
torch renders of the trained model), ``ms_per_frame.<backend>.<res>`` (one ``model.render`` per frame: skinning,
appearance MLP and splatting, no autograd; square images of 128/256/512 px with the training FoV, held-out poses;
mean after a warm-up, CUDA synchronised), ``ms_per_frame_fwd_bwd.<backend>.<res>`` (the same plus the backward
pass of an L1 loss to the parameters, q and T), ``device.<backend>`` per timed backend, versions, command.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gen3d_ros.geometry.camera import PinholeCamera  # noqa: E402
from gen3d_ros.robot.description import load_robot  # noqa: E402
from gen3d_ros.robot.gaussians import RobotGaussianModel  # noqa: E402
from gen3d_ros.robot.splatting import available_splat_backends, psnr  # noqa: E402
from gen3d_ros.robot.training import ViewSet, load_or_render_views, robot_train_config, train_robot  # noqa: E402
from gen3d_ros.robot.urdf import RobotModel, load_robot_npz, save_robot_npz  # noqa: E402
from gen3d_ros.outputs import write_text  # noqa: E402

RESULTS = ROOT / "bench" / "results"
RESOLUTIONS = (128, 256, 512)


def _overrides(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


#: The loaded robot, as plain arrays + JSON (save_robot_npz): the training machine has no mesh readers.
ROBOT_FILE = "robot.npz"


def load_saved_robot(folder: Path) -> RobotModel | None:
    """The robot ``prepare`` saved into ``folder`` (no mesh readers needed), or ``None`` if it saved none."""
    path = folder / ROBOT_FILE
    if path.is_file():
        return load_robot_npz(path)
    if (folder / "robot.pkl.gz").is_file():  # written by an older version of this script; never unpickled
        raise SystemExit(f"{folder}/robot.pkl.gz is a pickle from an older version of this benchmark, which is no "
                         f"longer read; run `python bench/robot_render.py prepare --dir {folder}` again")
    return None


def cmd_prepare(args: argparse.Namespace) -> None:
    cfg = robot_train_config("gpu", {"device": "cpu", **_overrides(args.set)})
    robot = load_robot(cfg.urdf)
    args.dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    views = load_or_render_views(robot, cfg, args.dir / "data")
    save_robot_npz(robot, args.dir / ROBOT_FILE)
    sizes = {p.name: round(p.stat().st_size / 1e6, 2) for p in sorted(args.dir.rglob("*")) if p.is_file()}
    print(json.dumps({"seconds": round(time.perf_counter() - t0, 1), "views": {k: len(v) for k, v in views.items()},
                      "MB": sizes}, indent=1))


@torch.no_grad()
def _time_render(model: RobotGaussianModel, views: ViewSet, res: int, fov_deg: float, backend: str,
                 background: torch.Tensor, reps: int, backward: bool) -> float:
    """Mean milliseconds per frame of ``model.render`` at ``res`` x ``res`` over held-out poses (after a warm-up)."""
    device = model.means.device
    cam = PinholeCamera.from_fov(res, res, fov_deg)
    q = torch.as_tensor(views.q, device=device)
    T = torch.as_tensor(views.T_camera_base, device=device)
    n = min(len(q), 4)

    def frame(i: int) -> None:
        if backward:
            with torch.enable_grad():
                qi, Ti = q[i].clone().requires_grad_(True), T[i].clone().requires_grad_(True)
                out = model.render(qi, Ti, cam, background=background, backend=backend)
                out.rgb.mean().backward()
        else:
            model.render(q[i], T[i], cam, background=background, backend=backend)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    frame(0)  # warm-up (kernels, caches)
    sync()
    t0 = time.perf_counter()
    for r in range(reps):
        for i in range(n):
            frame(i)
    sync()
    model.zero_grad(set_to_none=True)
    return 1000.0 * (time.perf_counter() - t0) / (reps * n)


def time_backends(model: RobotGaussianModel, views: ViewSet, fov_deg: float, background: tuple, backends: list[str],
                  reps: int, suffix: str = "") -> dict[str, float]:
    bg = torch.tensor(background, device=model.means.device)
    out = {}
    for backend in backends:
        for res in RESOLUTIONS:
            key = f"{backend}{suffix}.{res}"
            out[f"ms_per_frame.{key}"] = round(_time_render(model, views, res, fov_deg, backend, bg, reps, False), 3)
            out[f"ms_per_frame_fwd_bwd.{key}"] = round(_time_render(model, views, res, fov_deg, backend, bg, reps, True), 3)
            print(key, out[f"ms_per_frame.{key}"], out[f"ms_per_frame_fwd_bwd.{key}"], flush=True)
    return out


@torch.no_grad()
def backend_agreement(model: RobotGaussianModel, views: ViewSet, background: tuple) -> float:
    """Min over held-out views of the PSNR between gsplat and torch renders of the same model (training size)."""
    device = model.means.device
    bg = torch.tensor(background, device=device)
    worst = float("inf")
    for i in range(min(len(views), 8)):
        q = torch.as_tensor(views.q[i], device=device)
        T = torch.as_tensor(views.T_camera_base[i], device=device)
        a = model.render(q, T, views.camera, background=bg, backend="gsplat").rgb
        b = model.render(q, T, views.camera, background=bg, backend="torch").rgb
        worst = min(worst, psnr(a, b))
    return worst


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    try:
        import gsplat

        out["gsplat"] = gsplat.__version__
    except Exception:
        pass
    return out


def cmd_train(args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = robot_train_config(args.preset, _overrides(args.set))
    robot = load_saved_robot(args.dir)
    run_dir = args.run_dir or args.out / "run"
    metrics = train_robot(cfg, run_dir, robot=robot, data_dir=args.dir / "data")
    model = RobotGaussianModel.load(run_dir / "model.pt", robot if robot is not None else load_robot(cfg.urdf),
                                    device=cfg.device)
    model.eval()
    val = ViewSet.load(args.dir / "data" / "val.npz")
    device = model.means.device
    backends = [b for b in available_splat_backends() if device.type == "cuda" or b == "torch"]
    results: dict = {
        "psnr_heldout": round(metrics["psnr_heldout"], 3), "ssim_heldout": round(metrics["ssim_heldout"], 4),
        "psnr_heldout_min": round(metrics["psnr_heldout_min"], 3), "psnr_init": round(metrics["psnr_init"], 3),
        "robot": metrics["robot"], "n_gaussians": metrics["n_gaussians"], "sh_degree": metrics["sh_degree"],
        "image_size": cfg.image_size, "val_views": metrics["val_views"], "train_views": cfg.train_views,
        "iterations": metrics["iterations"], "train_seconds": metrics["seconds"],
        "device": metrics["device"], "versions": _versions(),
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
    }
    agreement_file = RESULTS / "splat_agreement.json"
    trained_agreement = round(backend_agreement(model, val, cfg.background), 3) if "gsplat" in backends else None
    if agreement_file.is_file() and "backend_agreement_psnr" in json.loads(agreement_file.read_text()):
        results["backend_agreement_psnr"] = json.loads(agreement_file.read_text())["backend_agreement_psnr"]
        results["backend_agreement_source"] = "bench/results/splat_agreement.json (random Gaussians)"
    elif trained_agreement is not None:
        results["backend_agreement_psnr"] = trained_agreement
        results["backend_agreement_source"] = "trained model, gsplat vs torch, held-out views (min)"
    if trained_agreement is not None:
        results["backend_agreement_psnr_trained_model"] = trained_agreement
    results.update(time_backends(model, val, cfg.fov_deg, cfg.background, backends, args.reps))
    for b in backends:
        results[f"device.{b}"] = metrics["device"]
    write_text(args.out / "robot_render.json", json.dumps(results, indent=1) + "\n")
    shutil.copy(run_dir / "model.pt", args.out / "robot_render_model.pt")
    for name in ("preview.png", "curves.png", "metrics.json"):
        if (run_dir / name).is_file():
            shutil.copy(run_dir / name, args.out / f"robot_render_{name}")
    write_markdown(results, args.out / "robot_render.md")
    print(json.dumps(results, indent=1))


def cmd_cpu_timings(args: argparse.Namespace) -> None:
    """Torch-backend timings on this CPU for the trained checkpoint, merged into robot_render.json."""
    torch.set_num_threads(args.threads)
    robot = load_saved_robot(args.dir)
    model = RobotGaussianModel.load(args.checkpoint, robot)
    model.eval()
    cfg = robot_train_config("gpu", {"device": "cpu"})
    val = ViewSet.load(args.dir / "data" / "val.npz")
    timings = time_backends(model, val, cfg.fov_deg, cfg.background, ["torch"], args.reps, suffix="_cpu")
    path = args.results / "robot_render.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    results.update(timings)
    results["device.torch_cpu"] = f"cpu: {platform.processor() or platform.machine()}, {args.threads} thread(s), " \
                                  f"torch {torch.__version__} (shared 2-core machine)"
    results["command_cpu_timings"] = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    write_text(path, json.dumps(results, indent=1) + "\n")
    write_markdown(results, args.results / "robot_render.md")
    print(json.dumps(timings, indent=1))


def write_markdown(results: dict, path: Path) -> None:
    """A human-readable table of robot_render.json."""
    lines = [
        "# Dr. Robot rendering benchmark", "",
        f"Robot `{results.get('robot')}`, {results.get('n_gaussians')} Gaussians, SH degree {results.get('sh_degree')}, "
        f"trained at {results.get('image_size')} px on {results.get('train_views')} views "
        f"({results.get('iterations')} iterations) on {results.get('device')}.", "",
        f"- held-out PSNR **{results.get('psnr_heldout')} dB** (worst view {results.get('psnr_heldout_min')}, "
        f"untrained model {results.get('psnr_init')}), SSIM **{results.get('ssim_heldout')}** "
        f"over {results.get('val_views')} random poses",
        f"- backend agreement (gsplat vs torch): {results.get('backend_agreement_psnr')} dB "
        f"({results.get('backend_agreement_source')})", "",
        "| backend (device) | res | ms/frame forward | ms/frame forward+backward |", "|---|---|---|---|",
    ]
    for key in sorted(k for k in results if k.startswith("ms_per_frame.")):
        _, backend, res = key.split(".")
        lines.append(f"| {backend} ({results.get('device.' + backend, '?')}) | {res} | {results[key]} | "
                     f"{results.get(f'ms_per_frame_fwd_bwd.{backend}.{res}', '')} |")
    lines += ["", f"Command: `{results.get('command')}`", ""]
    write_text(path, "\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="step", required=True)
    a = sub.add_parser("prepare", help="render views + serialise the robot (CPU, needs open3d)")
    a.add_argument("--dir", type=Path, default=ROOT / "runs" / "bench_panda")
    a.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    a.set_defaults(func=cmd_prepare)
    b = sub.add_parser("train", help="train + evaluate + time (CUDA machine)")
    b.add_argument("--dir", type=Path, default=ROOT / "runs" / "bench_panda")
    b.add_argument("--out", type=Path, default=RESULTS)
    b.add_argument("--preset", default="gpu")
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    b.add_argument("--reps", type=int, default=5)
    b.add_argument("--run-dir", type=Path, default=None, help="training run folder (default: OUT/run)")
    b.set_defaults(func=cmd_train)
    c = sub.add_parser("cpu-timings", help="torch-backend timings on this CPU, merged into the results")
    c.add_argument("--dir", type=Path, default=ROOT / "runs" / "bench_panda")
    c.add_argument("--checkpoint", type=Path, default=RESULTS / "robot_render_model.pt")
    c.add_argument("--results", type=Path, default=RESULTS)
    c.add_argument("--reps", type=int, default=1)
    c.add_argument("--threads", type=int, default=1)
    c.set_defaults(func=cmd_cpu_timings)
    args = p.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
