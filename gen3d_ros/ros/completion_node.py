"""``completion_node``: ``sensor_msgs/PointCloud2`` -> completed mesh (Marker + ``gen3d_ros/CompletedMesh``) and
completed voxels (``PointCloud2``), in the input's frame and with its stamp; with ``method: hgca`` the coarse
completion first, as soon as it exists.

Outputs (logical name: default topic, type), in the order a sweep produces them:

- ``coarse_voxels``: ``/completion_node/coarse_voxels``, ``PointCloud2`` of the coarse voxel centres (hgca only),
  published before the mesh of the same sweep;
- ``mesh_marker``: ``/completion_node/marker``, ``Marker`` TRIANGLE_LIST of at most ``marker_max_triangles``
  triangles (latched);
- ``completed_mesh``: ``/completion_node/mesh``, ``gen3d_ros/CompletedMesh``, the full mesh (colours with
  ``mesh_colors``);
- ``completed_voxels``: ``/completion_node/voxels``, ``PointCloud2`` of the completed voxels' centres (hgca:
  the fine ones).

    python -m gen3d_ros.ros.completion_node --ros-args --params-file config/completion_node.yaml
    ros2 run gen3d_ros completion_node --ros-args -p cloud_topic:=/velodyne_points

A :class:`~gen3d_ros.ros.stage_node.StageNode` of the registry's ``completion`` entry
(:data:`gen3d_ros.pipeline.registry.STAGES`: default topics, the latched ``mesh_marker`` for rviz, the process
worker); topics are the parameters ``<name>_topic``, ``/diagnostics`` at 1 Hz. Every ``CompletionConfig`` field
is a parameter (``voxel_size``, ``method`` …), changeable at runtime.
"""

from __future__ import annotations

import sys
from typing import Sequence

from gen3d_ros.ros.node_main import run_node


def main(argv: Sequence[str] | None = None) -> int:
    """Run the registry's ``completion_node`` (:func:`gen3d_ros.ros.node_main.run_node`)."""
    return run_node("completion_node", argv)


if __name__ == "__main__":
    sys.exit(main())
