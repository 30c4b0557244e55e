"""Writes ``config/<node>.yaml`` and ``config/gen3d.yaml`` from the nodes' declared parameters.

    python -m gen3d_ros.ros.config_files [CONFIG_DIR]      # default: config/ of the source checkout

The files are ROS 2 params files (``<node>: ros__parameters: …``) with every declared parameter at its
default and a comment (description, unit, range, read-only). Rerun after adding a config field or a stage;
``tests/ros/test_params.py`` fails while a file and the declared parameters differ. Tuned values in an
existing file are kept. Without an argument it also rewrites ``docs/NODES.md`` (:mod:`gen3d_ros.ros.node_reference`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from gen3d_ros.config import load_node_params
from gen3d_ros.outputs import write_text
from gen3d_ros.pipeline.registry import STAGES
from gen3d_ros.ros.params import declared_params, render_params_yaml, source_config_dir

HEADER_NODE = """ROS 2 parameters of {node} (gen3d_ros). Written by `python -m gen3d_ros.ros.config_files`; edit values
freely, keys must stay the declared parameters (tests/ros/test_params.py).
  ros2 run gen3d_ros {node} --ros-args --params-file config/{node}.yaml
  python -m gen3d_ros.ros.{node} --ros-args --params-file config/{node}.yaml"""

HEADER_ALL = """ROS 2 parameters of every gen3d_ros node: `ros2 launch gen3d_ros gen3d.launch.py` and `gen3d run` read
this file by default. Written by `python -m gen3d_ros.ros.config_files`; edit values freely, keys must stay the
declared parameters (tests/ros/test_params.py)."""


def _kept_values(path: Path, nodes: Sequence[str]) -> dict[str, dict]:
    if not path.is_file():
        return {}
    return {node: load_node_params(path, node) for node in nodes}


def write_config_files(config_dir: Path) -> list[Path]:
    """Write one params file per node of the registry and ``gen3d.yaml`` with all of them; the paths written."""
    config_dir.mkdir(parents=True, exist_ok=True)
    sections = {entry.node: declared_params(entry) for entry in STAGES}
    written = []
    for name, params in sections.items():
        path = config_dir / f"{name}.yaml"
        text = render_params_yaml({name: params}, header=HEADER_NODE.format(node=name),
                                  values=_kept_values(path, [name]))
        write_text(path, text)
        written.append(path)
    path = config_dir / "gen3d.yaml"
    write_text(path, render_params_yaml(sections, header=HEADER_ALL, values=_kept_values(path, list(sections))))
    written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    config_dir = Path(argv[0]) if argv else source_config_dir()
    for path in write_config_files(config_dir):
        print(f"wrote {path}")
    if not argv:  # the checkout's config: its node reference (docs/NODES.md) is made from the same parameters
        from gen3d_ros.ros.node_reference import main as write_node_reference

        write_node_reference([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
