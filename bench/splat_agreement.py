#!/usr/bin/env python3
"""Do the two Gaussian-splatting backends (gsplat, pure torch) render the same images, and how fast are they?

    python bench/splat_agreement.py                                   # CUDA: agreement + timings, both backends
    python bench/splat_agreement.py --device cpu --resolutions 128 --views 2 --out /tmp/splat  # torch timings only

Scene: ``--gaussians`` random Gaussians (:func:`gen3d_ros.robot.splatting.random_gaussians`: a 0.8 m cube around
the base origin, scales 5-30 mm, opacities 0.05-0.9), SH degree 0 and 3, seen by ``--views`` cameras on a
sphere 1.2-1.8 m away (``sample_sphere_cameras``, seed ``--seed``), 50 degree vertical FoV, grey background.

Agreement (needs CUDA and gsplat), at ``--agreement-resolution`` for each SH degree and view: PSNR of RGB and
of alpha between the backends (peak 1), the mean |expected depth| difference where both alphas > 0.5, and the
cosine similarity of the gradients of one fixed random linear loss of (rgb, alpha, depth) w.r.t. means, quats,
scales, opacities, colours and T_camera_base (all views rendered in one batched call).
``backend_agreement_psnr`` is the RGB PSNR minimised over SH degrees and views.

Speed, per backend and resolution (``--resolutions``): milliseconds per frame (one camera per call, averaged over
the views and ``--reps`` repetitions after ``--warmup``) for the forward pass (no autograd) and for forward +
backward (a scalar loss of rgb, alpha and depth, gradients for all Gaussian parameters and the pose). CUDA timings
synchronise before reading the clock.

Outputs in ``--out`` (default bench/results): ``splat_agreement.json`` (flat keys, device, versions, command) and
``splat_agreement.md`` (the table printed to stdout).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from gen3d_ros.geometry.camera import PinholeCamera, sample_sphere_cameras  # noqa: E402
from gen3d_ros.outputs import write_text  # noqa: E402
from gen3d_ros.robot.splatting import (  # noqa: E402
    RenderOutput,
    available_splat_backends,
    expected_depth,
    psnr,
    random_gaussians,
    render_gaussians,
)

FOV_Y_DEG = 50.0
BACKGROUND = (0.3, 0.3, 0.3)
PARAMS = ("means", "quats", "scales", "opacities", "colors")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cosine(a: torch.Tensor | None, b: torch.Tensor | None) -> float:
    if a is None or b is None:
        return float("nan")
    a, b = a.detach().double().flatten(), b.detach().double().flatten()
    den = a.norm() * b.norm()
    return float("nan") if den == 0 else float(a @ b / den)


def _leaves(scene: dict[str, torch.Tensor], T: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in scene.items()}
    return leaves, T.detach().clone().requires_grad_(True)


def agreement(
    scene: dict[str, torch.Tensor], Ts: torch.Tensor, cam: PinholeCamera, sh_degree: int, seed: int
) -> dict[str, float]:
    """Per-view RGB/alpha PSNR, depth difference and gradient cosines between gsplat and torch (CUDA)."""
    bg = torch.tensor(BACKGROUND, device=Ts.device)
    outs, grads = {}, {}
    W = None
    for backend in ("gsplat", "torch"):
        leaves, T = _leaves(scene, Ts)
        out = render_gaussians(
            **leaves, T_camera_base=T, camera=cam, background=bg, sh_degree=sh_degree, backend=backend
        )
        flat = torch.cat((out.rgb.flatten(), out.alpha.flatten(), 0.3 * out.depth.flatten()))
        if W is None:  # the same fixed random linear loss for both backends
            W = torch.randn(flat.numel(), generator=torch.Generator().manual_seed(seed)).to(flat.device)
        (flat @ W).backward()
        outs[backend] = out
        grads[backend] = {**{k: v.grad for k, v in leaves.items()}, "T_camera_base": T.grad}
    a, b = (RenderOutput(o.rgb.detach(), o.alpha.detach(), o.depth.detach()) for o in (outs["gsplat"], outs["torch"]))
    res: dict[str, float] = {}
    for v in range(Ts.shape[0]):
        res[f"view{v}.psnr_rgb"] = psnr(a.rgb[v], b.rgb[v])
        res[f"view{v}.psnr_alpha"] = psnr(a.alpha[v], b.alpha[v])
        both = (a.alpha[v] > 0.5) & (b.alpha[v] > 0.5)
        da, db = expected_depth(a)[v], expected_depth(b)[v]
        res[f"view{v}.depth_mean_abs_diff_m"] = float((da - db)[both].abs().mean()) if both.any() else float("nan")
        res[f"view{v}.coverage"] = float(both.float().mean())
    for k in (*PARAMS, "T_camera_base"):
        res[f"grad_cosine.{k}"] = _cosine(grads["gsplat"][k], grads["torch"][k])
    diff = (a.rgb - b.rgb).abs().amax(-1)
    res["rgb_max_abs_diff"] = float(diff.max())
    res["rgb_frac_pixels_diff_gt_0.01"] = float((diff > 0.01).float().mean())
    try:  # diagnostics only: never lose the agreement numbers to them
        res.update(_projection_diff(scene, Ts, cam))
    except Exception as exc:  # noqa: BLE001
        res["proj.error"] = repr(exc)[:300]
    return res


def _projection_diff(scene: dict[str, torch.Tensor], Ts: torch.Tensor, cam: PinholeCamera) -> dict[str, float]:
    """Screen-space Gaussians of gsplat's CUDA projection vs the torch backend's (diagnostics)."""
    from gsplat import fully_fused_projection

    from gen3d_ros.robot.splatting_torch import project_gaussians

    Ks = torch.tensor([[cam.fx, 0, cam.cx], [0, cam.fy, cam.cy], [0, 0, 1]], dtype=torch.float32, device=Ts.device)
    with torch.no_grad():
        radii, means2d, depths, conics, _ = fully_fused_projection(
            scene["means"], None, scene["quats"], scene["scales"], Ts, Ks.expand(len(Ts), 3, 3).contiguous(),
            cam.width, cam.height, eps2d=0.3, near_plane=0.01, far_plane=100.0, opacities=scene["opacities"],
        )
        ours = project_gaussians(scene["means"], scene["quats"], scene["scales"], scene["opacities"], Ts,
                                 cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height, 0.3, 0.01, 100.0)
    vis_g, vis_t = (radii > 0).all(-1), (ours.radii > 0).all(-1)
    both = vis_g & vis_t
    rel = ((conics - ours.conics).abs() / conics.abs().amax(-1, keepdim=True).clamp(min=1e-12))[both]
    return {
        "proj.visible_gsplat": int(vis_g.sum()), "proj.visible_mismatch": int((vis_g != vis_t).sum()),
        "proj.radii_mismatch": int((radii != ours.radii)[both].any(-1).sum()),
        "proj.means2d_max_abs_diff_px": float((means2d - ours.means2d)[both].abs().max()),
        "proj.conics_max_rel_diff": float(rel.max()),
        "proj.depths_max_abs_diff_m": float((depths - ours.depths)[both].abs().max()),
    }


def time_backend(
    backend: str, scene: dict[str, torch.Tensor], Ts: torch.Tensor, cam: PinholeCamera, sh_degree: int | None,
    reps: int, warmup: int,
) -> tuple[float, float]:
    """(forward ms/frame, forward+backward ms/frame), one camera per call, averaged over views and reps."""
    device = Ts.device
    bg = torch.tensor(BACKGROUND, device=device)

    def fwd(T: torch.Tensor) -> None:
        with torch.no_grad():
            render_gaussians(**scene, T_camera_base=T, camera=cam, background=bg, sh_degree=sh_degree, backend=backend)

    def fwd_bwd(T: torch.Tensor) -> None:
        leaves, Tl = _leaves(scene, T)
        out = render_gaussians(
            **leaves, T_camera_base=Tl, camera=cam, background=bg, sh_degree=sh_degree, backend=backend
        )
        (out.rgb.mean() + out.alpha.mean() + 0.1 * out.depth.mean()).backward()

    def clock(fn: Callable[[torch.Tensor], None]) -> float:
        for _ in range(warmup):
            fn(Ts[0])
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            for v in range(Ts.shape[0]):
                fn(Ts[v])
        _sync(device)
        return 1000.0 * (time.perf_counter() - t0) / (reps * Ts.shape[0])

    return clock(fwd), clock(fwd_bwd)


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device}: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s)"


def run(args: argparse.Namespace, command: str) -> dict[str, object]:
    from tqdm import tqdm

    device = torch.device(args.device)
    backends = [b for b in available_splat_backends() if device.type == "cuda" or b == "torch"]
    rng = np.random.default_rng(args.seed)
    Ts = torch.tensor(sample_sphere_cameras(args.views, rng, distance=(1.2, 1.8)), dtype=torch.float32, device=device)
    scenes = {d: random_gaussians(args.gaussians, seed=args.seed, sh_degree=d, device=device) for d in args.sh_degrees}
    out: dict[str, object] = {
        "n_gaussians": args.gaussians, "n_views": args.views, "sh_degrees": list(args.sh_degrees),
        "agreement_resolution": args.agreement_resolution, "resolutions": list(args.resolutions),
        "backends": backends, "fov_y_deg": FOV_Y_DEG, "seed": args.seed,
    }
    steps = (len(args.sh_degrees) if "gsplat" in backends else 0) + len(backends) * len(args.resolutions)
    bar = tqdm(total=steps, desc="splat bench", disable=not args.progress, dynamic_ncols=True)
    if "gsplat" in backends:
        cam = PinholeCamera.from_fov(args.agreement_resolution, args.agreement_resolution, FOV_Y_DEG)
        worst = math.inf
        for d in args.sh_degrees:
            bar.set_postfix_str(f"agreement sh{d}")
            res = agreement(scenes[d], Ts, cam, d, args.seed)
            out.update({f"sh{d}.{k}": v for k, v in res.items()})
            per_view = [res[f"view{v}.psnr_rgb"] for v in range(args.views)]
            out[f"psnr.sh{d}"] = min(per_view)
            out[f"psnr_alpha.sh{d}"] = min(res[f"view{v}.psnr_alpha"] for v in range(args.views))
            worst = min(worst, min(per_view))
            bar.update()
        out["backend_agreement_psnr"] = worst
    d_time = max(args.sh_degrees)  # timings with the most expensive colour model of the run
    out["timing_sh_degree"] = d_time
    for res_px in args.resolutions:
        cam = PinholeCamera.from_fov(res_px, res_px, FOV_Y_DEG)
        for backend in backends:
            bar.set_postfix_str(f"time {backend} {res_px}px")
            f, fb = time_backend(backend, scenes[d_time], Ts, cam, d_time, args.reps, args.warmup)
            out[f"ms_per_frame.{backend}.{res_px}.forward"] = f
            out[f"ms_per_frame.{backend}.{res_px}.forward_backward"] = fb
            bar.update()
    bar.close()
    try:
        import gsplat

        gsplat_version = gsplat.__version__
    except Exception:  # not installed
        gsplat_version = None
    out.update(
        {
            "device": device_description(device), "torch_version": torch.__version__, "gsplat_version": gsplat_version,
            "python": platform.python_version(), "command": command,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    return out


def markdown(r: dict) -> str:
    lines = [f"# Splatting backends: agreement and speed ({r['device']})", ""]
    if "backend_agreement_psnr" in r:
        lines += [
            f"{r['n_gaussians']} Gaussians, {r['n_views']} views at {r['agreement_resolution']} px; gsplat vs torch "
            f"on the same device. Minimum RGB PSNR over everything: **{r['backend_agreement_psnr']:.1f} dB**.",
            "",
            "| SH degree | RGB PSNR (min over views) | alpha PSNR | grad cos means | quats | scales | opacities "
            "| colours | T_camera_base |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for d in r["sh_degrees"]:
            cos = [r[f"sh{d}.grad_cosine.{k}"] for k in (*PARAMS, "T_camera_base")]
            lines.append(
                f"| {d} | {r[f'psnr.sh{d}']:.1f} dB | {r[f'psnr_alpha.sh{d}']:.1f} dB | "
                + " | ".join(f"{c:.5f}" for c in cos)
                + " |"
            )
        lines.append("")
    lines += [
        f"Milliseconds per frame (one camera per call, SH degree {r['timing_sh_degree']}, "
        f"{r['n_gaussians']} Gaussians):",
        "",
        "| backend | resolution | forward | forward + backward |",
        "|---|---|---|---|",
    ]
    for res_px in r["resolutions"]:
        for b in r["backends"]:
            lines.append(
                f"| {b} | {res_px}x{res_px} | {r[f'ms_per_frame.{b}.{res_px}.forward']:.2f} | "
                f"{r[f'ms_per_frame.{b}.{res_px}.forward_backward']:.2f} |"
            )
    lines += ["", f"torch {r['torch_version']}, gsplat {r['gsplat_version']}. Command: `{r['command']}`", ""]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--gaussians", type=int, default=10_000)
    p.add_argument("--views", type=int, default=4)
    p.add_argument("--sh-degrees", type=int, nargs="+", default=[0, 3])
    p.add_argument("--agreement-resolution", type=int, default=256)
    p.add_argument("--resolutions", type=int, nargs="+", default=[128, 256, 512])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    if argv is None:
        command = shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    else:
        command = shlex.join(["bench/splat_agreement.py", *argv])
    torch.set_num_threads(args.threads)
    results = run(args, command)
    args.out.mkdir(parents=True, exist_ok=True)
    # strict JSON: NaN/inf (an empty comparison, identical images) become null
    finite = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in results.items()}
    write_text(args.out / "splat_agreement.json", json.dumps(finite, indent=2) + "\n")
    md = markdown(results)
    write_text(args.out / "splat_agreement.md", md)
    print(md)
    return results


if __name__ == "__main__":
    main()
