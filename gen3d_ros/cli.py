"""``gen3d``: the command line of gen3d_ros (also ``python -m gen3d_ros``).

    gen3d demo -o demo_out                       # synthetic drive -> bag -> completion -> meshes + preview
    gen3d bag drive/ -o completed/ --copy-inputs # completion over a rosbag2 (mcap or sqlite3), no middleware
    gen3d info completed/                        # topics, types, counts, duration
    gen3d run --params config/gen3d.yaml         # start the ROS 2 nodes (rclpy) where `ros2 launch` is absent

Each subcommand is a ``register_<name>(subparsers)`` function that adds its parser and sets ``func`` to a
``cmd_<name>(args) -> int``; add new ones to :data:`COMMANDS`. A user mistake (missing file, existing output,
bad value) raises :class:`UsageError` or one of :data:`USER_ERRORS` and ends with a one-line message and exit
code 2, no traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

log = logging.getLogger("gen3d_ros.cli")

from gen3d_ros.commands.common import EXIT_USAGE, UsageError, check_device_arg, prepare, set_threads
from gen3d_ros.commands.complete import register_complete
from gen3d_ros.commands.robot import (register_act, register_calibrate_camera, register_estimate_pose,
                                      register_train_robot)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the user asked for something impossible", not a bug (imported lazily)."""
    from gen3d_ros.bagmode import BagModeError
    from gen3d_ros.io.rosbag2 import BagError

    return (UsageError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
            PermissionError, BagError, BagModeError, ValueError)


# --------------------------------------------------------------------------------------------------- demo


def register_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="synthetic drive -> rosbag2 -> completion -> meshes, preview PNG, report; "
                                    "robot video -> pose per frame -> trajectory",
                       description="Generate a procedural street scene and a short LiDAR drive, write it as a "
                                   "rosbag2 (drive/), complete every sweep in bag mode (completed/), and write "
                                   "meshes/*.ply, preview.png and demo_report.json into the output folder; then "
                                   "render a video of the test arm (robot/robot_video/), estimate its joints per "
                                   "frame in bag mode (robot/robot_poses/) and extract the trajectory "
                                   "(robot/trajectory.json, overlay.gif, joints.png).")
    p.add_argument("-o", "--output", type=Path, default=Path("demo_out"), help="output folder (default: demo_out)")
    p.add_argument("--sweeps", type=int, default=None, help="LiDAR sweeps to simulate (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the scene and the drive (default: 0)")
    p.add_argument("--robot-frames", type=int, default=16,
                   help="frames of the robot video (pose estimation + trajectory); 0 skips the robot half")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from gen3d_ros.demo import DEFAULT_SWEEPS, run_demo

    sweeps = DEFAULT_SWEEPS if args.sweeps is None else args.sweeps
    if sweeps < 1:
        raise UsageError(f"--sweeps must be at least 1, got {sweeps}")
    if args.robot_frames < 0:
        raise UsageError(f"--robot-frames must be >= 0, got {args.robot_frames}")
    report = run_demo(args.output, n_sweeps=sweeps, seed=args.seed, force=args.force,
                      progress=sys.stderr.isatty(), robot_frames=args.robot_frames)
    print(report.format())
    return 0


# --------------------------------------------------------------------------------------------------- bag


def register_bag(sub: argparse._SubParsersAction) -> None:
    from gen3d_ros.pipeline.registry import STAGES

    stages = "; ".join(f"{e.name}: {e.summary}" for e in STAGES)
    p = sub.add_parser("bag", help="run gen3d stages (" + ", ".join(e.name for e in STAGES) + ") over a rosbag2 and "
                                   "write the results as a new rosbag2",
                       description="Feed the input topics of each chosen stage in log-time order and write its "
                                   f"outputs with the input's log time. Stages: {stages}. Topics default to the "
                                   "nodes' (an input topic the bag lacks: the bag's only topic of its type). By "
                                   "default the stages are chosen by the topic types in the bag. The input is only "
                                   "read; the output is written atomically.")
    p.add_argument("input", type=Path, help="input rosbag2: a bag directory, a .mcap or a .db3 file")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="output bag: a directory, or a single *.mcap / *.db3 file")
    p.add_argument("--stages", default="auto",
                   help="comma-separated stages to run: " + ", ".join(e.name for e in STAGES) + "; 'auto' "
                        "(default): those whose inputs the bag has (PointCloud2; Image + CameraInfo; JointState + "
                        "a goal topic)")
    p.add_argument("--copy-inputs", action="store_true", help="also copy every input topic (e.g. /tf, the clouds)")
    p.add_argument("--force", action="store_true", help="replace an existing output")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default=None, help="output storage (default: mcap)")
    p.add_argument("--params", type=Path, default=None,
                   help="ROS 2 params YAML with a section per node (" + ", ".join(e.node for e in STAGES) + "), "
                        "e.g. config/gen3d.yaml or config/completion_node.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="[NODE:]KEY=VALUE",
                   help="override a node parameter (repeatable), e.g. --set robot_pose_node:estimator.search_size=32 "
                        "(nested configs: section.field); without NODE: the only stage run (or completion_node, for "
                        "compatibility, when several run)")
    p.add_argument("--input-topic", default=None,
                   help="PointCloud2 topic to complete, exactly (default: /points, the live node's, or the params file's "
                        "cloud_topic; when the bag lacks it, the bag's only PointCloud2 topic)")
    p.add_argument("--limit", type=int, default=None, help="stop after N input messages")
    p.add_argument("--start", type=float, default=None, metavar="SECONDS",
                   help="skip messages logged before this: seconds from the bag's first message, or absolute Unix "
                        "time (>= 1e9)")
    p.add_argument("--end", type=float, default=None, metavar="SECONDS",
                   help="stop after messages logged at this time (included): seconds from the bag's first "
                        "message, or absolute Unix time (>= 1e9)")
    p.add_argument("--remap", action="append", default=[], metavar="OLD:=NEW",
                   help="rename a stage input or output topic (repeatable), like --ros-args -r: "
                        "--remap /points:=/velodyne_points reads the clouds from /velodyne_points, "
                        "--remap /completion_node/mesh:=/car1/mesh writes the meshes there")
    p.add_argument("--output-time", choices=("log", "header"), default="log",
                   help="log time of outputs: the input's log time (default) or its header stamp")
    p.add_argument("--report", type=Path, default=None, help="also write the run report as JSON here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--serve", type=int, nargs="?", const=8765, default=None, metavar="PORT",
                   help="serve a Foxglove WebSocket live view of the run (default port 8765; open ws://localhost:PORT "
                        "in the Foxglove app); after the run it keeps serving until Ctrl-C")
    p.add_argument("--serve-host", default="127.0.0.1", help="address --serve listens on (default loopback)")
    p.add_argument("--meshes", type=Path, default=None, metavar="DIR",
                   help="also write every completed mesh to DIR as <topic>_<time ns>.<--mesh-format>")
    p.add_argument("--mesh-format", choices=("ply", "obj", "glb"), default="ply",
                   help="file format of --meshes: ply (default), obj, glb (binary glTF, for any 3D viewer)")
    p.set_defaults(func=cmd_bag)


def _bag_stage_names(args: argparse.Namespace) -> list[str]:
    from gen3d_ros.bagmode import stages_for_topics
    from gen3d_ros.io.rosbag2 import read_bag_info
    from gen3d_ros.pipeline.registry import stage_names

    if args.stages != "auto":
        names = [n.strip() for n in args.stages.split(",") if n.strip()]
        unknown = [n for n in names if n not in stage_names()]
        if unknown or not names:
            raise UsageError(f"--stages {args.stages!r}: choose from {', '.join(stage_names())} (comma-separated)")
        return names
    topics = {name: t["type"] if isinstance(t, dict) else t.msgtype
              for name, t in read_bag_info(args.input)["topics"].items()}
    names = stages_for_topics(topics)
    if not names:
        raise UsageError(f"bag {args.input} has no inputs for any stage (PointCloud2; Image + CameraInfo; JointState + "
                         f"a goal); its topics: {topics}; name the stages and topics with --stages / --params")
    return names


def cmd_bag(args: argparse.Namespace) -> int:
    from gen3d_ros.bagmode import run_bag, stage_from_params
    from gen3d_ros.config import load_node_params, parse_overrides
    from gen3d_ros.pipeline.registry import stage_entry

    if not args.input.exists():
        raise UsageError(f"input bag {args.input} does not exist")
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be at least 1, got {args.limit}")
    remap = {}
    for rule in args.remap:
        old, sep, new = rule.partition(":=")
        if not sep or not old or not new:
            raise UsageError(f"--remap {rule!r} must look like OLD:=NEW, e.g. /points:=/velodyne_points")
        remap[old] = new
    if args.params is not None and not args.params.is_file():
        raise UsageError(f"params file {args.params} does not exist")
    inputs = [args.input, args.params]
    prepare(args.report, args, inputs=inputs, others=[args.output], what="report")
    prepare(args.output, args, inputs=inputs, others=[args.report], what="output bag")
    names = _bag_stage_names(args)
    node_of = {name: stage_entry(name).node for name in names}
    params: dict[str, dict] = {name: {} for name in names}
    if args.params is not None:
        for name in names:
            params[name] = load_node_params(args.params, node_of[name])
        if not any(params.values()):
            raise UsageError(f"{args.params} has no section (or /**) with ros__parameters for "
                             f"{', '.join(node_of.values())}")
    default_target = names[0] if len(names) == 1 else "completion"
    for item in args.overrides:
        key = item.split("=", 1)[0]
        node, _, _ = key.rpartition(":")
        target = next((n for n in names if node_of[n] == node), None) if node else default_target
        if target is None or target not in names:
            raise UsageError(f"--set {item!r}: {node or 'completion_node'} is not run; nodes run: "
                             f"{', '.join(node_of.values())}")
        params[target].update(parse_overrides([item.split(":", 1)[1] if node else item]))
    stages, topics = [], {}
    for name in names:
        stage, stage_topics = stage_from_params(name, params[name])
        stages.append(stage)
        topics.update(stage_topics)
    if args.input_topic:
        if "completion" not in names:
            raise UsageError("--input-topic names the completion stage's cloud topic, but completion is not run")
        topics[("completion", "cloud")] = args.input_topic
    from gen3d_ros.commands.bag_views import observers_from_args

    observers = observers_from_args(args, inputs)  # --serve, --meshes
    try:
        report = run_bag(args.input, args.output, stages=stages, topic_map=topics, copy_inputs=args.copy_inputs,
                         force=args.force, progress=not args.no_progress and sys.stderr.isatty(), limit=args.limit,
                         storage=args.storage, output_time=args.output_time, autodetect=not args.input_topic,
                         observe=observers, start_s=args.start, end_s=args.end, remap=remap,
                         frames={name: {"base": str(params[name].get("base_frame", "")),
                                        "target": str(params[name].get("target_frame", ""))} for name in names})
        print(report.format())
        if observers is not None:
            observers.linger()
    finally:
        if observers is not None:
            observers.close()
    if args.report is not None:
        from gen3d_ros.outputs import write_json

        write_json(args.report, report.as_dict())
    return 0


# --------------------------------------------------------------------------------------------------- info


def register_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="topics, types, message counts and duration of a rosbag2",
                       description="Summarise a rosbag2 bag (directory, .mcap or .db3).")
    p.add_argument("bag", type=Path, help="a bag directory, a .mcap or a .db3 file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_info)


def cmd_info(args: argparse.Namespace) -> int:
    from gen3d_ros.io.rosbag2 import read_bag_info

    if not args.bag.exists():
        raise UsageError(f"bag {args.bag} does not exist")
    info = read_bag_info(args.bag)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(format_bag_info(info))
    return 0


def qos_text(profiles: list[dict]) -> str:
    """Recorded QoS profiles in one line, e.g. ``reliable transient_local keep_last(1)``; ``-`` without any."""
    def one(q: dict) -> str:
        if "profile" in q:
            return str(q["profile"])
        history = q.get("history", "?")
        depth = f"({q.get('depth')})" if history == "keep_last" else ""
        return f"{q.get('reliability', '?')} {q.get('durability', '?')} {history}{depth}"

    return "; ".join(one(q) for q in profiles) or "-"


def format_bag_info(info: dict) -> str:
    """The table ``gen3d info`` prints."""
    def when(ns: int) -> str:
        try:
            return datetime.fromtimestamp(ns * 1e-9, timezone.utc).isoformat(timespec="milliseconds")
        except (OverflowError, OSError, ValueError):  # a corrupt bag's absurd time: show the number only
            return "out of range"

    duration = info["duration_s"]
    formats = sorted({t.get("serialization_format", "cdr") for t in info["topics"].values()}) or ["-"]
    lines = [f"bag:       {info['path']}", f"storage:   {info['storage']}",
             f"size:      {info.get('size_bytes', 0) / 2**20:.2f} MiB ({info.get('size_bytes', 0)} bytes)",
             f"serialization: {', '.join(formats)}",
             f"messages:  {info['message_count']}", f"duration:  {duration:.3f} s"]
    if info["message_count"]:
        lines += [f"start:     {when(info['start_ns'])} ({info['start_ns'] * 1e-9:.3f})",
                  f"end:       {when(info['end_ns'])} ({info['end_ns'] * 1e-9:.3f})"]
    topics = info["topics"]
    width = max([len("topic")] + [len(t) for t in topics])
    twidth = max([len("type")] + [len(t["type"]) for t in topics.values()])
    lines.append(f"topics:    {len(topics)}")
    # frequency: the topic's messages over the bag's duration (rosbag2 keeps no per-topic first/last time)
    lines.append(f"  {'topic':<{width}}  {'type':<{twidth}}  {'count':>7}  {'Hz':>8}  offered QoS")
    for name, t in topics.items():
        rate = f"{t['count'] / duration:8.2f}" if duration > 0 else f"{'-':>8}"
        lines.append(f"  {name:<{width}}  {t['type']:<{twidth}}  {t['count']:>7}  {rate}  {qos_text(t['qos'])}")
    if info.get("skipped_records"):
        lines.append(f"warning:   {info['skipped_records']} record(s) on undeclared channels were skipped")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- run


def register_run(sub: argparse._SubParsersAction) -> None:
    from gen3d_ros.pipeline.registry import node_names

    p = sub.add_parser("run", help="start gen3d ROS 2 nodes (rclpy) from a params YAML",
                       description="Start the nodes of a ROS 2 params file in one process (what `ros2 launch "
                                   "gen3d_ros gen3d.launch.py` does). Arguments after --ros-args go to rcl.")
    p.add_argument("--params", "--params-file", dest="params", type=Path, default=None,
                   help="params YAML (default: config/gen3d.yaml)")
    p.add_argument("--nodes", nargs="+", default=[], metavar="NODE",
                   help="nodes to start (default: every node with a section in the params file); known: "
                        + ", ".join(node_names()))
    from gen3d_ros.ros.runner import add_run_flags

    add_run_flags(p)  # --lifecycle, --foxglove [PORT], --foxglove-host
    p.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=[],
                   help="remaining arguments are passed to rcl (e.g. --ros-args -p completion_node:voxel_size:=0.1)")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    params = args.params
    if params is None:
        from gen3d_ros.ros.params import default_params_file

        try:
            params = default_params_file("gen3d.yaml")
        except FileNotFoundError as exc:
            raise UsageError(f"{exc}; pass --params") from exc
    elif not params.is_file():
        raise UsageError(f"params file {params} does not exist")
    try:
        from gen3d_ros.ros.runner import run_nodes
    except ImportError as exc:
        raise UsageError(f"cannot start ROS 2 nodes: {exc} (install rclpy: pip install '.[ros]', or source a "
                         "ROS 2 Jazzy install)") from exc
    return int(run_nodes(params, args.nodes, ros_args=args.ros_args, lifecycle=args.lifecycle,
                         foxglove_port=args.foxglove, foxglove_host=args.foxglove_host) or 0)


# ------------------------------------------------------------------------------------------ train-completion


def register_train_completion(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-completion", help="train a GCA completion kernel on simulated LiDAR scenes",
                       description="Infusion training of a Generative Cellular Automata kernel on procedural "
                                   "street scenes scanned by a simulated LiDAR. Writes model.pt, metrics.json "
                                   "and training_curve.png into the output folder. Several GPUs: start it with "
                                   "`torchrun --nproc_per_node N -m gen3d_ros train-completion ... --device cuda` "
                                   "(one process a GPU, gradients averaged, rank 0 writes).")
    p.add_argument("-o", "--output", type=Path, required=True, help="run folder")
    p.add_argument("--stage", choices=("transition", "autoencoder", "fine", "hierarchy"), default="transition",
                   help="transition: the (planned) GCA kernel; autoencoder: cGCA's latent encoder + UDF decoder; "
                        "fine: a cGCA kernel over a trained autoencoder (--set autoencoder=PATH); hierarchy: the "
                        "whole hGCA (coarse + autoencoder + fine) into OUTPUT/hgca.pt")
    p.add_argument("--preset", default=None,
                   help="start from a preset: tiny (seconds), tiny_planner (tiny + hGCA BEV planner), demo, "
                        "demo_planner (transition only)")
    p.add_argument("--coarse-checkpoint", type=Path, default=None,
                   help="hierarchy: reuse this trained coarse stage (model.pt) instead of training one")
    p.add_argument("--config", type=Path, default=None, help="YAML of TrainConfig keys (applied after --preset)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key (dotted for nested: model.steps=20, data.voxel_size_m=0.2); repeatable")
    p.add_argument("--seed", type=int, default=None, help="random seed (overrides the config)")
    p.add_argument("--device", default=None,
                   help="torch device: cpu (default), cuda, cuda:1 (under torchrun, cuda = each rank's own GPU)")
    p.add_argument("--amp", nargs="?", const="bf16", default=None, choices=("off", "bf16", "fp16"),
                   help="mixed precision: --amp is bf16 autocast (CUDA and CPU; on a CPU mostly slower, for "
                        "checks); --amp fp16 adds a GradScaler (CUDA only)")
    p.add_argument("--force", action="store_true", help="write into an existing run folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train_completion)


def _train_overrides(args: argparse.Namespace) -> dict:
    """--config, --set, --seed, --device and --amp as config overrides; the device and precision checked."""
    import yaml

    from gen3d_ros.completion.training.precision import check_amp
    from gen3d_ros.config import parse_overrides

    overrides: dict = {}
    if args.config is not None:
        if not args.config.is_file():
            raise FileNotFoundError(f"config file {args.config} does not exist")
        overrides.update(yaml.safe_load(args.config.read_text()) or {})
    overrides.update(parse_overrides(args.overrides))
    for key, value in (("seed", args.seed), ("device", args.device), ("amp", args.amp)):
        if value is not None:
            overrides[key] = value
    if "device" in overrides:
        overrides["device"] = check_device_arg(str(overrides["device"]))
    check_amp(str(overrides.get("amp", "off")), str(overrides.get("device", "cpu")))
    return overrides


def cmd_train_completion(args: argparse.Namespace) -> int:
    from gen3d_ros.completion.training import distributed
    from gen3d_ros.outputs import prepare_run_folder

    overrides = _train_overrides(args)
    if args.stage == "hierarchy" and set(overrides) - {"device", "amp"}:
        raise UsageError("--stage hierarchy takes no --set/--config/--seed: its stages come from the preset "
                         "(--device and --amp apply to every stage)")
    context = distributed.init_from_environment(str(overrides.get("device", "cpu")))
    if not context.is_main:  # rank 0 logs for the run; the others only warn
        logging.getLogger("gen3d_ros").setLevel(logging.WARNING)
    try:
        if context.is_main:  # one process checks and marks the run folder; the others only train
            prepare_run_folder(args.output, inputs=[args.config, args.coarse_checkpoint], force=args.force,
                               product="hgca.pt" if args.stage == "hierarchy" else "model.pt")
        context.barrier()
        lines = _train_stage(args, overrides)
        if context.is_main:
            print("\n".join(lines))
    finally:
        distributed.shutdown()
    return 0


def _train_stage(args: argparse.Namespace, overrides: dict) -> list[str]:
    """Train ``args.stage``; the lines to print (what was written, the held-out scores)."""
    progress = not args.no_progress
    if args.stage == "hierarchy":
        from gen3d_ros.completion.training.hierarchy import train_hierarchy

        metrics = train_hierarchy(args.preset or "demo", args.output, coarse_checkpoint=args.coarse_checkpoint,
                                  progress=progress, command="gen3d " + " ".join(sys.argv[1:]), **overrides)
        if not metrics:  # ranks other than 0
            return []
        fine = metrics["fine"]
        lines = [f"trained in {metrics['train_seconds']:.0f} s -> {args.output}/hgca.pt"]
        if fine:
            lines.append(f"fine stage on true coarse cells: held-out IoU {fine['iou']:.3f} "
                         f"(input {fine['input_iou']:.3f})")
        return lines
    if args.stage == "fine":
        from gen3d_ros.completion.training.cgca import make_cgca_config, train_cgca

        _, summary = train_cgca(make_cgca_config(args.preset, overrides), args.output, progress=progress)
        final = summary["final"]
        scores = (f"held-out IoU {final['iou']:.3f} (input only {final['input_iou']:.3f}), "
                  f"Chamfer-L1 {final['chamfer_l1']:.3f} m") if final else ""
    elif args.stage == "autoencoder":
        from gen3d_ros.completion.training.autoencoder import make_autoencoder_config, train_autoencoder

        _, summary = train_autoencoder(make_autoencoder_config(args.preset, overrides), args.output,
                                       progress=progress)
        final = summary["final"]
        scores = (f"held-out UDF mean error {final['udf_mae']:.3f} m, mesh Chamfer-L1 {final['chamfer_l1']:.3f} m "
                  f"({final['chamfer_l1_voxels']:.2f} voxels)") if final else ""
    else:
        from gen3d_ros.completion.training.gca import make_config, train

        _, summary = train(make_config(args.preset, overrides), args.output, progress=progress)
        final = summary["final"]
        scores = (f"held-out IoU {final['iou']:.3f} (input only {final['input_iou']:.3f}), "
                  f"F-score {final['fscore']:.3f} (input {final['input_fscore']:.3f}), "
                  f"Chamfer-L1 {final['chamfer_l1']:.3f} m (input {final['input_chamfer_l1']:.3f} m)") if final else ""
    lines = [f"trained in {summary['train_seconds']:.0f} s ({summary['iters_per_s']:.2f} it/s of training) "
             f"-> {args.output}/model.pt"]
    return lines + ([scores] if scores else [])


# --------------------------------------------------------------------------------------------------- main

#: Subcommands in the order ``gen3d --help`` lists them. Later ones (train-completion, complete, train-robot,
#: estimate-pose, act) are one ``register_*`` function each, appended here.
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [register_demo, register_bag, register_info,
                                                                register_train_completion, register_complete,
                                                                 register_run, register_train_robot,
                                                                 register_estimate_pose, register_act,
                                                                 register_calibrate_camera]


def build_parser() -> argparse.ArgumentParser:
    from gen3d_ros import __version__

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="more log output (-v: debug)")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="only warnings and errors")
    parser = argparse.ArgumentParser(prog="gen3d", description="gen3d_ros: generative 3D perception for ROS 2.",
                                     parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.split("\n\n")[1].splitlines()))
    parser.add_argument("--version", action="version", version=f"gen3d_ros {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in COMMANDS:
        register(sub)
    for choice in sub.choices.values():  # -v/-q also after the subcommand
        for action in common._actions:
            if action.option_strings and not any(o in choice._option_string_actions for o in action.option_strings):
                choice._add_action(action)
    return parser


def setup_logging(verbose: int, quiet: bool) -> None:
    """gen3d_ros loggers at INFO (DEBUG with -v, WARNING with -q); other libraries at WARNING."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("gen3d_ros").setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    from gen3d_ros.outputs import install_sigterm_handler, terminated_by

    install_sigterm_handler()  # a `kill` ends the command through its cleanup code: no half-written outputs
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "verbose", 0) or 0, getattr(args, "quiet", False))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"gen3d {args.command}: interrupted", file=sys.stderr)
        return 130
    except _user_errors() as exc:
        if terminated_by() is not None:
            return _terminated(args)
        if getattr(args, "verbose", 0):
            log.debug("details", exc_info=True)
        message = str(exc) or type(exc).__name__
        print(f"gen3d {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except BaseException:
        if terminated_by() is None:
            raise
        return _terminated(args)


def _terminated(args: argparse.Namespace) -> int:
    from gen3d_ros.outputs import terminated_by

    signum = terminated_by() or 15
    print(f"gen3d {args.command}: terminated by signal {signum}; partial outputs removed", file=sys.stderr)
    return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
