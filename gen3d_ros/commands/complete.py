"""``gen3d complete``: complete one LiDAR scan file with any method of the completion node."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gen3d_ros.commands.common import UsageError, check_device_arg, set_threads

#: short names accepted by --method, as the node's ``method`` values
METHOD_ALIASES = {"poisson": "classical-poisson", "ballpivot": "classical-ballpivot"}
DEFAULT_METHOD = "hgca"


# ------------------------------------------------------------------------------------------------- complete


def register_complete(sub: argparse._SubParsersAction) -> None:
    from gen3d_ros.completion.processor import METHODS

    names = ", ".join([*METHODS, *METHOD_ALIASES])
    p = sub.add_parser(
        "complete", help="complete one LiDAR scan file (hgca, cgca, gca, poisson) into a mesh or voxels",
        description="Read a scan (.bin KITTI, .pcd, .ply, .npy, .xyz/.txt[.bz2]) in the sensor frame and complete "
                    "it as completion_node does (same CompletionConfig: --method, --params YAML, --set KEY=VALUE; "
                    "learned methods in a gravity-aligned frame, see gravity_align). Writes the completed mesh "
                    "(.ply, .obj, .glb) or, with --what voxels, the completed voxel centres (.ply), in the scan's "
                    "frame; one file per sample.")
    p.add_argument("input", type=Path, help="scan file, points in the sensor frame (metres)")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="output file (OUT_k.suffix for --samples > 1)")
    p.add_argument("--method", default=None,
                   help=f"completion method: {names} (default: the params file's, else {DEFAULT_METHOD})")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="model of the method (gca: model.pt, cgca: --stage fine model.pt, hgca: hgca.pt bundle); "
                        "default: the packaged demo model")
    p.add_argument("--params", type=Path, default=None,
                   help="ROS 2 params YAML of completion_node (e.g. config/completion_node.yaml); its topic and QoS "
                        "parameters are ignored")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a completion_node parameter (repeatable), e.g. --set region_half_extent=12")
    p.add_argument("--what", choices=("mesh", "voxels"), default="mesh", help="write the mesh (default) or voxels")
    p.add_argument("--samples", type=int, default=1, help="independent completions (diversity; TMD reported)")
    p.add_argument("--steps", type=int, default=None, help="transitions (hgca: coarse; default: the model's)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None, help="torch device of learned methods (default cpu)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default 1: small sparse ops gain little, shared cores lose a lot; 0: torch's)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(func=cmd_complete)


def completion_config(args: argparse.Namespace) -> Any:
    """The node's CompletionConfig from --params, --set and the dedicated options (later ones win); UsageError
    naming the bad key or value."""
    from gen3d_ros.bagmode import node_host_params
    from gen3d_ros.completion.processor import METHODS, CompletionConfig
    from gen3d_ros.config import from_mapping, load_node_params, parse_overrides
    from gen3d_ros.pipeline.registry import stage_entry

    params: dict[str, Any] = {}
    if args.params is not None:
        if not args.params.is_file():
            raise UsageError(f"--params {args.params}: no such file")
        params = load_node_params(args.params, "completion_node")
        params = {k: v for k, v in params.items() if k not in node_host_params(stage_entry("completion"))}
    try:
        params.update(parse_overrides(args.overrides))
    except ValueError as exc:
        raise UsageError(f"--set: {exc}") from None
    params.setdefault("method", DEFAULT_METHOD)
    options = {"method": args.method, "checkpoint": None if args.checkpoint is None else str(args.checkpoint),
               "steps": args.steps, "seed": args.seed, "device": args.device, "threads": args.threads}
    params.update({k: v for k, v in options.items() if v is not None})
    params["method"] = METHOD_ALIASES.get(params["method"], params["method"])
    if params["method"] not in METHODS:
        raise UsageError(f"--method {params['method']!r}: choose one of {', '.join([*METHODS, *METHOD_ALIASES])}")
    try:
        return from_mapping(CompletionConfig, params)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def cmd_complete(args: argparse.Namespace) -> int:
    from gen3d_ros.completion.scan_file import complete_file

    if args.samples < 1:
        raise UsageError(f"--samples must be >= 1, got {args.samples}")
    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps must be >= 1 (leave it out for the model's default), got {args.steps}")
    if args.threads is not None and args.threads < 0:
        raise UsageError(f"--threads must be >= 0, got {args.threads}")
    config = completion_config(args)
    check_device_arg(config.device)
    set_threads(config.threads)
    report = complete_file(args.input, args.output, config, samples=args.samples, what=args.what, force=args.force)
    for path, n, t in zip(report["outputs"], report["voxels"], report["triangles"]):
        print(f"{path}: {t} triangles, {n} completed voxels")
    align = report.get("alignment") or {}
    where = (f"; aligned ({align['alignment.source']}: sensor {align['alignment.sensor_height_m']} m above the "
             f"ground, tilt {align['alignment.tilt_deg']} deg)" if align else "")
    print(f"{report['method']} ({report['model']}): input {report['input_points']} points, voxels of "
          f"{report['voxel_size']:.2f} m{where}; {report['seconds']:.1f} s")
    if report.get("tmd") is not None:
        print(f"total mutual difference over {args.samples} samples: {report['tmd']:.4f} m")
    return 0
