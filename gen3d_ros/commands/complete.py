"""``gen3d complete``: complete one LiDAR scan file."""

from __future__ import annotations

import argparse
from pathlib import Path

from gen3d_ros.commands.common import UsageError, check_device_arg, prepare, set_threads


# ------------------------------------------------------------------------------------------------- complete


def register_complete(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("complete", help="complete one LiDAR scan file with a trained GCA model",
                       description="Read a scan (.bin KITTI, .pcd, .ply, .npy, .xyz/.txt[.bz2]) in the sensor "
                                   "frame, voxelise it on the model's grid, run the cellular automaton and write "
                                   "the completed voxel centres as a .ply point cloud (one per sample).")
    p.add_argument("input", type=Path, help="scan file, points in the sensor frame (metres)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .ply (OUT_k.ply for --samples > 1)")
    p.add_argument("--checkpoint", type=Path, required=True, help="model.pt from gen3d train-completion")
    p.add_argument("--samples", type=int, default=1, help="independent completions (diversity; TMD reported)")
    p.add_argument("--steps", type=int, default=None, help="transitions (default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: small sparse ops gain little, shared cores lose a lot; 0: torch's)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(func=cmd_complete)


def cmd_complete(args: argparse.Namespace) -> int:
    from gen3d_ros.completion.scan_file import complete_file

    if args.samples < 1:
        raise UsageError(f"--samples must be >= 1, got {args.samples}")
    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps must be >= 1 (leave it out for the model's default), got {args.steps}")
    if args.threads < 0:
        raise UsageError(f"--threads must be >= 0, got {args.threads}")
    check_device_arg(args.device)
    set_threads(args.threads)
    report = complete_file(args.input, args.output, args.checkpoint, samples=args.samples, steps=args.steps,
                           seed=args.seed, device=args.device, force=args.force)
    for path, n in zip(report["outputs"], report["cells"]):
        print(f"{path}: {n} completed voxels")
    print(f"input {report['input_points']} points -> {report['input_cells']} voxels of "
          f"{report['voxel_size']:.2f} m; {report['seconds']:.1f} s")
    if report.get("tmd") is not None:
        print(f"total mutual difference over {args.samples} samples: {report['tmd']:.4f} m")
    return 0
