#!/usr/bin/env python3
"""Fine-tune the packaged completion models on the richer world with randomised sensors, on a small CPU.

The CPU fallback of ``scripts/train_completion_gpu.sh`` (issue 13): each stage starts from the packaged demo
model's weights (``init_checkpoint``) and trains ``--seconds`` on ``data_presets.RICH_DATA`` (the GPU presets with
batch 2, in-process data); the hGCA fine stage keeps the packaged autoencoder (its codes are local; the grids are
congruent). The three stages run in parallel processes; then the bundle is written.

    OMP_NUM_THREADS=1 python scripts/finetune_completion_cpu.py runs/rich_cpu --seconds 300
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODELS = REPO / "gen3d_ros" / "models"
SMALL = {"batch_size": 2, "buffer_size": 12, "data_workers": 0, "threads": 1, "val_samples": 3, "log_every": 10}


def stage(name: str, out: str, seconds: float, lr: float | None) -> None:
    from gen3d_ros.completion.checkpoint import load_bundle
    from gen3d_ros.completion.training import cgca, gca

    common = {**SMALL, "time_limit_s": seconds, **({"lr": lr} if lr else {})}
    if name == "gca":
        gca.train(gca.make_config("gpu_rich", {**common, "init_checkpoint": str(MODELS / "gca_demo.pt")}),
                  Path(out) / "gca", progress=False)
    elif name == "coarse":
        gca.train(gca.make_config("gpu_rich_planner", {**common,
                                                       "init_checkpoint": f"{MODELS / 'hgca_demo.pt'}:coarse"}),
                  Path(out) / "hgca" / "coarse", progress=False)
    else:
        ae = load_bundle(MODELS / "hgca_demo.pt")["fine"]["autoencoder"]
        config = cgca.make_cgca_config("gpu_rich", {**common, "init_checkpoint": f"{MODELS / 'hgca_demo.pt'}:fine"})
        cgca.train_cgca(config, Path(out) / "hgca" / "fine", autoencoder_checkpoint=ae, progress=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--seconds", type=float, default=300.0, help="training seconds per stage")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the presets')")
    args = p.parse_args()
    procs = [mp.get_context("spawn").Process(target=stage, args=(n, str(args.out), args.seconds, args.lr))
             for n in ("gca", "coarse", "fine")]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    from gen3d_ros.completion.checkpoint import load_cgca, load_gca, save_bundle

    coarse = load_gca(args.out / "hgca" / "coarse" / "model.pt")[1]
    fine = load_cgca(args.out / "hgca" / "fine" / "model.pt")[2]
    metrics = {"coarse": coarse.get("metrics", {}), "fine": fine.get("metrics", {}),
               "autoencoder": fine["autoencoder"].get("metrics", {}), "preset": "gpu_rich (CPU fine-tune)"}
    save_bundle(args.out / "hgca" / "hgca.pt", coarse, fine, metrics,
                " ".join(["scripts/finetune_completion_cpu.py", *sys.argv[1:]]), half=True)


if __name__ == "__main__":
    main()
