"""``gen3d run``: start gen3d nodes from one params YAML in one process, where ``ros2 launch`` is absent.

    python -m gen3d_ros.ros.runner                                 # every node of config/gen3d.yaml
    python -m gen3d_ros.ros.runner --params-file my.yaml --nodes completion_node
    python -m gen3d_ros.ros.runner --ros-args -p completion_node:voxel_size:=0.1   # extra ROS arguments

It does what ``ros2 launch gen3d_ros gen3d.launch.py params_file:=…`` does, in one process: the params file
is handed to rcl as a global ``--params-file`` argument (same YAML semantics, ``/**`` sections included) and
the nodes spin in one ``MultiThreadedExecutor``. SIGINT/SIGTERM stop them cleanly (exit code 0). The nodes it
knows are those of :data:`gen3d_ros.pipeline.registry.STAGES`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import yaml

from gen3d_ros.pipeline.registry import node_entry, node_names


def nodes_in_params_file(params_file: str | Path) -> list[str]:
    """Nodes of the registry that have a section in ``params_file`` (``name``, ``/name`` or ``/ns/name``); all
    of them if it has only a ``/**`` section."""
    data = yaml.safe_load(Path(params_file).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{params_file}: a params file is a mapping of node names, got {type(data).__name__}")
    sections = {str(key).rstrip("/").rsplit("/", 1)[-1] for key in data}
    found = [name for name in node_names() if name in sections]
    if not found and "**" in sections:
        return node_names()
    return found


def run_nodes(params_file: str | Path, nodes: Sequence[str] = (), *, ros_args: Sequence[str] = (),
              lifecycle: bool = False, foxglove_port: int | None = None, foxglove_host: str = "127.0.0.1") -> int:
    """Start ``nodes`` (default: every node of the registry with a section in ``params_file``), spin until
    SIGINT/SIGTERM. Returns 0 on a clean shutdown, 2 on a bad params file or node name (reason on stderr).

    ``lifecycle``: managed nodes (:mod:`gen3d_ros.ros.lifecycle`), driven through configure and activate here
    (2 when one fails), which a lifecycle manager can then pause or clean up. ``foxglove_port``: also serve a
    Foxglove WebSocket of the nodes' clouds, meshes, poses and TF on ``foxglove_host:port``
    (:mod:`gen3d_ros.ros.foxglove_bridge`)."""
    params_file = Path(params_file)
    if not params_file.is_file():
        print(f"gen3d run: params file {params_file} does not exist", file=sys.stderr)
        return 2
    try:
        names = list(nodes) or nodes_in_params_file(params_file)
        entries = [node_entry(name) for name in names]
    except (KeyError, ValueError, yaml.YAMLError) as exc:
        print(f"gen3d run: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    if not names:
        print(f"gen3d run: {params_file} has no section for any of {node_names()}; pass --nodes",
              file=sys.stderr)
        return 2
    try:
        import rclpy
        import rclpy.logging
        from rclpy.exceptions import ParameterException

        from gen3d_ros.ros.node_main import install_log_bridge, spin_nodes
        from gen3d_ros.ros.hosts import bring_up, create_node
    except ImportError as exc:
        print(f"gen3d run: cannot import rclpy ({exc}); install the ros extra (pip install '.[ros]') or source "
              "a ROS 2 Jazzy install", file=sys.stderr)
        return 2

    rclpy.init(args=["gen3d-run", "--ros-args", "--params-file", str(params_file), *ros_args])
    install_log_bridge()
    started: list = []
    try:
        for entry in entries:
            started.append(create_node(entry.node, lifecycle=lifecycle))
            failed = bring_up(started[-1]) if lifecycle else ""
            if failed:
                raise ValueError(failed)
        if foxglove_port is not None:
            started.append(_foxglove_bridge(started, foxglove_port, foxglove_host))
    except (ValueError, TypeError, ParameterException, OSError, RuntimeError) as exc:
        interrupted = not rclpy.ok()  # SIGINT/SIGTERM during start-up shut the context: "context is invalid"
        if not interrupted:
            rclpy.logging.get_logger("gen3d_run").fatal(f"cannot start the nodes of {params_file}: {exc}")
        for node in started:
            node.destroy_node()
        rclpy.try_shutdown()
        return 0 if interrupted else 2
    except KeyboardInterrupt:
        for node in started:
            node.destroy_node()
        rclpy.try_shutdown()
        return 0
    rclpy.logging.get_logger("gen3d_run").info(f"running {names} with {params_file}")
    return spin_nodes(started)


def _foxglove_bridge(nodes: Sequence, port: int, host: str):
    """The bridge node serving ``nodes``' topics on a Foxglove WebSocket (OSError/RuntimeError: port taken)."""
    from gen3d_ros.ros.foxglove_bridge import FoxgloveBridge, bridge_topics
    from gen3d_ros.viz.foxglove_live import FoxgloveLiveView

    return FoxgloveBridge(FoxgloveLiveView(port=port, host=host), bridge_topics(nodes))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gen3d run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--params-file", type=Path, default=None,
                        help="ROS 2 params YAML (default: config/gen3d.yaml of the package)")
    parser.add_argument("--nodes", nargs="+", default=[], metavar="NODE",
                        help=f"nodes to start (default: those with a section in the params file); "
                             f"known: {', '.join(node_names())}")
    add_run_flags(parser)
    return parser


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """``--lifecycle`` and ``--foxglove [PORT]`` (shared with ``gen3d run``)."""
    parser.add_argument("--lifecycle", action="store_true",
                        help="start managed (lifecycle) nodes and drive them to active (configure, activate)")
    parser.add_argument("--foxglove", type=int, nargs="?", const=8765, default=None, metavar="PORT",
                        help="also serve a Foxglove WebSocket (default port 8765) of the clouds, meshes, poses and "
                             "TF: open ws://localhost:PORT in the Foxglove app")
    parser.add_argument("--foxglove-host", default="127.0.0.1",
                        help="address the Foxglove server listens on (default loopback; 0.0.0.0: every interface)")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of ``gen3d run``; arguments after ``--ros-args`` go to rcl unchanged."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args: list[str] = []
    if "--ros-args" in argv:
        cut = argv.index("--ros-args")
        argv, ros_args = argv[:cut], argv[cut + 1:]
    args = build_parser().parse_args(argv)
    params_file = args.params_file
    if params_file is None:
        from gen3d_ros.ros.params import default_params_file

        try:
            params_file = default_params_file("gen3d.yaml")
        except FileNotFoundError as exc:
            print(f"gen3d run: {exc}", file=sys.stderr)
            return 2
    return run_nodes(params_file, args.nodes, ros_args=ros_args, lifecycle=args.lifecycle,
                     foxglove_port=args.foxglove, foxglove_host=args.foxglove_host)


if __name__ == "__main__":
    sys.exit(main())
