#!/usr/bin/env python3
"""Per-stage latency of scene completion on one device: GCA alone (the baseline) vs the hGCA hierarchy.

    .venv/bin/python bench/completion_latency.py                          # demo sweeps, CPU
    .venv/bin/python bench/completion_latency.py --save-sweeps sweeps.npz # write the sweeps (needs open3d)
    python bench/completion_latency.py --sweeps sweeps.npz --device cuda  # e.g. on a GPU machine without open3d

Sweeps: the demo drive's (procedural street seed 0, VLP-32, ``gen3d demo``'s), or an ``.npz`` of them (keys
``sweep_0``, ``sweep_1``, ...: (N, 3) float32 metres, sensor frame). Each sweep is completed once by the packaged
GCA model (voxelise + chain + voxel marching cubes) and once by the packaged hGCA bundle (coarse chain, fine
encode + chain, UDF mesh); the first sweep of each is a warm-up and is not counted. Writes
``completion_latency.json`` (flat keys: ``<method>.<stage>_ms`` medians, ``ratio.hgca_over_gca``, device,
versions, command) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from gen3d_ros.outputs import atomic_path, write_text  # noqa: E402


def demo_sweeps(n: int) -> list[np.ndarray]:
    from gen3d_ros.demo import clear_drive_start
    from gen3d_ros.sim import LidarConfig, SceneConfig, generate_scene, simulate_drive

    scene = generate_scene(SceneConfig(), seed=0)
    sweeps = simulate_drive(scene, LidarConfig.preset("vlp32"), n_sweeps=n, seed=0,
                            start_s_m=clear_drive_start(scene, n, seed=0))
    return [s.scan.points.astype(np.float32) for s in sweeps]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def time_gca(points: np.ndarray, completer, device: str) -> dict[str, float]:
    from gen3d_ros.completion.voxel_mesh import voxels_to_mesh

    out: dict[str, float] = {}
    t0 = time.perf_counter()
    cells = completer.voxelize(points)
    out["voxelize"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    done = completer.complete_cells(cells, seed=0)
    _sync(device)
    out["gca"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    voxels_to_mesh(done, completer.voxel_size, completer.origin)
    out["mesh"] = time.perf_counter() - t0
    out["total"] = sum(out.values())
    return {k: 1e3 * v for k, v in out.items()}


def main(argv: list[str] | None = None) -> dict:
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sweeps", type=Path, default=None, help=".npz of sweeps (default: simulate the demo's)")
    p.add_argument("--save-sweeps", type=Path, default=None, help="write the simulated sweeps here and stop")
    p.add_argument("-n", type=int, default=6, help="sweeps (the first is a warm-up)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = p.parse_args(argv)
    command = shlex.join(["bench/completion_latency.py", *(sys.argv[1:] if argv is None else argv)])
    if args.save_sweeps:
        with atomic_path(args.save_sweeps) as tmp, open(tmp, "wb") as stream:
            np.savez_compressed(stream, **{f"sweep_{i}": s for i, s in enumerate(demo_sweeps(args.n))})
        return {}
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.sweeps:
        data = np.load(args.sweeps)
        sweeps = [data[f"sweep_{i}"] for i in range(len(data.files))][: args.n]
    else:
        sweeps = demo_sweeps(args.n)

    from gen3d_ros.completion.inference import SceneCompleter, SceneCompleterConfig
    from gen3d_ros.completion.checkpoint import default_gca_checkpoint as default_checkpoint
    from gen3d_ros.completion.inference import GCACompleter

    gca = GCACompleter(default_checkpoint(), device=args.device)
    hgca = SceneCompleter(None, SceneCompleterConfig(device=args.device))
    rows: dict[str, list[dict[str, float]]] = {"gca": [], "hgca": []}
    for i, points in enumerate(sweeps):
        g = time_gca(points, gca, args.device)
        t0 = time.perf_counter()
        res = hgca.complete(points, seed=0)
        _sync(args.device)
        h = dict(res.timings_ms)
        h["total"] = 1e3 * (time.perf_counter() - t0)
        h["triangles"] = float(len(res.mesh.faces))
        if i > 0:  # the first sweep warms up allocators / kernels
            rows["gca"].append(g)
            rows["hgca"].append(h)
        print(f"sweep {i}: gca {g['total']:.0f} ms, hgca {h['total']:.0f} ms "
              f"({', '.join(f'{k} {v:.0f}' for k, v in res.timings_ms.items())})", flush=True)
    out: dict[str, object] = {"sweeps_timed": len(rows["gca"]), "points_per_sweep": float(np.mean([len(s) for s in sweeps]))}
    for method, rs in rows.items():
        for key in rs[0]:
            out[f"{method}.{key}_ms" if key != "triangles" else f"{method}.triangles"] = float(
                np.median([r[key] for r in rs]))
    out["ratio.hgca_over_gca.total"] = out["hgca.total_ms"] / out["gca.total_ms"]
    dev = args.device
    if dev.startswith("cuda"):
        dev = f"{dev}: {torch.cuda.get_device_name(0)}"
    else:
        dev = f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s)"
    out.update({"device": dev, "torch": torch.__version__, "python": platform.python_version(),
                "command": command})
    args.out.mkdir(parents=True, exist_ok=True)
    name = "completion_latency" + ("_cuda" if args.device.startswith("cuda") else "")
    write_text(args.out / f"{name}.json", json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
