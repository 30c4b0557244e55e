"""``completion_node``: ``sensor_msgs/PointCloud2`` -> completed mesh (Marker + ``gen3d_ros/CompletedMesh``) and
completed voxels (``PointCloud2``), in the input's frame and with its stamp.

    python -m gen3d_ros.ros.completion_node --ros-args --params-file config/completion_node.yaml
    ros2 run gen3d_ros completion_node --ros-args -p cloud_topic:=/velodyne_points

Topics (parameters ``<name>_topic``): ``cloud`` in ``/gen3d/input/cloud``; ``mesh_marker`` out
``/gen3d/completion/mesh_marker`` (also transient-local, for rviz), ``completed_mesh`` out
``/gen3d/completion/mesh``, ``completed_voxels`` out ``/gen3d/completion/voxels``; ``/diagnostics`` at 1 Hz.
Every ``CompletionConfig`` field is a parameter (``voxel_size``, ``method`` …), changeable at runtime. The
stage runs in a child process by default (``worker: process``; ``thread`` keeps it in the node's process).
"""

from __future__ import annotations

import sys
from typing import Sequence

from gen3d_ros.completion.processor import CompletionConfig
from gen3d_ros.pipeline.completion import CompletionStage
from gen3d_ros.ros.stage_node import StageNode, run_node


class CompletionNode(StageNode):
    default_name = "completion_node"
    stage_cls = CompletionStage
    config_cls = CompletionConfig
    default_topics = {
        "mesh_marker": "/gen3d/completion/mesh_marker",
        "completed_mesh": "/gen3d/completion/mesh",
        "completed_voxels": "/gen3d/completion/voxels",
    }
    latched_outputs = frozenset({"mesh_marker"})
    # open3d's Poisson reconstruction holds the GIL for the whole call (seconds): run it in a child process.
    default_worker = "process"


def main(argv: Sequence[str] | None = None) -> int:
    return run_node(CompletionNode, argv)


if __name__ == "__main__":
    sys.exit(main())
