"""Completion stage: ``sensor_msgs/PointCloud2`` -> Marker (TRIANGLE_LIST), ``gen3d_ros/CompletedMesh``,
completed voxels as ``PointCloud2``. Header (stamp, frame_id) of the input is kept on every output."""

from __future__ import annotations

from typing import Any

import numpy as np

from gen3d_ros.completion.processor import CompletionConfig, CompletionProcessor, EmptyInputError
from gen3d_ros.io.mesh_msgs import colors_to_rgba_msgs, mesh_to_marker, mesh_to_shape_mesh
from gen3d_ros.io.messages import MessageFactory, make_header
from gen3d_ros.io.pointcloud2 import arrays_to_pointcloud2, pointcloud2_to_arrays
from gen3d_ros.pipeline.base import InputRejected, Output, Stage


class CompletionStage(Stage):
    name = "completion"
    inputs = {"cloud": "sensor_msgs/msg/PointCloud2"}
    outputs = {
        "mesh_marker": "visualization_msgs/msg/Marker",
        "completed_mesh": "gen3d_ros/msg/CompletedMesh",
        "completed_voxels": "sensor_msgs/msg/PointCloud2",
    }

    def __init__(self, config: CompletionConfig | None = None) -> None:
        super().__init__()
        self.processor = CompletionProcessor(config)

    def handle(self, input_name: str, msg: Any, factory: MessageFactory) -> list[Output]:
        try:
            cloud = pointcloud2_to_arrays(msg)
        except ValueError as exc:
            raise InputRejected(f"malformed PointCloud2: {exc}") from exc
        try:
            result = self.processor.process(cloud.points, dropped=cloud.dropped)
        except EmptyInputError as exc:
            raise InputRejected(str(exc)) from exc
        self.stats.extra["input_points"] = float(result.input_points)
        self.stats.extra["dropped_points"] = float(result.dropped_points)
        for key, value in result.timings_ms.items():
            self.stats.extra[f"{key}_ms"] = value
        mesh = result.mesh
        outputs = [
            Output("mesh_marker", mesh_to_marker(mesh.vertices, mesh.faces, factory,
                                                 header=make_header(factory, msg.header),
                                                 vertex_colors=mesh.vertex_colors, ns="gen3d_completion")),
            Output("completed_mesh", factory.new(
                "gen3d_ros/msg/CompletedMesh",
                header=make_header(factory, msg.header),
                mesh=mesh_to_shape_mesh(mesh.vertices, mesh.faces, factory),
                vertex_colors=colors_to_rgba_msgs(mesh.vertex_colors, factory),
                voxel_size=float(result.voxel_size), steps=int(result.steps),
                input_points=int(result.input_points), dropped_points=int(result.dropped_points),
                latency_ms=float(result.latency_ms), model_id=result.model_id)),
            Output("completed_voxels", arrays_to_pointcloud2(result.voxels.astype(np.float32), factory,
                                                             header=make_header(factory, msg.header))),
        ]
        return outputs
