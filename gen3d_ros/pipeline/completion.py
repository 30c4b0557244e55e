"""Completion stage: ``sensor_msgs/PointCloud2`` -> coarse voxels first (hgca), then the mesh as a Marker
(TRIANGLE_LIST, decimated for rviz) and ``gen3d_ros/CompletedMesh`` (the full mesh), and the completed voxels as
``PointCloud2``. Header (stamp, frame_id) of the input is kept on every output, unless the host gives a ``target``
transform (:attr:`Stage.transforms`, the node's ``target_frame``): then the outputs are mapped into that frame and
carry its name. A ``base`` transform (the node's ``base_frame``, the sensor mounting) goes to the processor as
``T_base_cloud`` (gravity alignment).

Measured for the demo drive's ±12 m VLP-32 sweep completed by the packaged hGCA model (368k triangles, 200k
vertices, CDR bytes): Marker 44.2 MB with per-corner colours / 26.5 MB without before the triangle budget,
11.6 / 7.0 MB at the default 100k triangles; CompletedMesh 12.4 MB with colours / 9.2 MB without (the default);
completed voxels 0.49 MB; coarse voxels 0.1 MB.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from typing import Any

import numpy as np

from gen3d_ros.completion.processor import CompletionConfig, CompletionProcessor, CompletionResult, EmptyInputError
from gen3d_ros.io.mesh_msgs import colors_to_rgba_msgs, mesh_to_marker, mesh_to_shape_mesh
from gen3d_ros.io.messages import MessageFactory, make_header
from gen3d_ros.io.pointcloud2 import arrays_to_pointcloud2, pointcloud2_to_arrays
from gen3d_ros.pipeline.base import InputRejected, Output, Stage

MARKER_NS = "gen3d_completion"


def _takes_base_transform(processor: Any) -> bool:
    """Whether ``processor.process`` accepts ``T_base_cloud`` (gravity alignment from TF)."""
    return "T_base_cloud" in inspect.signature(processor.process).parameters


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 3) float32 points (metres) mapped by the 4x4 ``T``."""
    points = np.asarray(points, np.float64)
    return (points @ T[:3, :3].T + T[:3, 3]).astype(np.float32)


def transformed_result(result: CompletionResult, T_target_cloud: np.ndarray) -> CompletionResult:
    """``result`` with its meshes and voxels mapped from the cloud frame into the target frame."""
    def moved(mesh: Any) -> Any:
        return None if mesh is None else dataclasses.replace(mesh, vertices=transform_points(T_target_cloud,
                                                                                              mesh.vertices))
    return dataclasses.replace(result, mesh=moved(result.mesh), display_mesh=moved(result.display_mesh),
                               voxels=transform_points(T_target_cloud, result.voxels))


class CompletionStage(Stage):
    """Outputs, in the order a sweep produces them: ``coarse_voxels`` (hgca only: the coarse completion's voxel
    centres, emitted as soon as it exists), then ``mesh_marker``, ``completed_mesh``, ``completed_voxels``."""

    name = "completion"
    inputs = {"cloud": "sensor_msgs/msg/PointCloud2"}
    outputs = {
        "coarse_voxels": "sensor_msgs/msg/PointCloud2",
        "mesh_marker": "visualization_msgs/msg/Marker",
        "completed_mesh": "gen3d_ros/msg/CompletedMesh",
        "completed_voxels": "sensor_msgs/msg/PointCloud2",
    }

    def __init__(self, config: CompletionConfig | None = None, *, completer: Any = None) -> None:
        """``completer``: see :class:`~gen3d_ros.completion.processor.CompletionProcessor`."""
        super().__init__()
        self.processor = CompletionProcessor(config, completer=completer)

    @property
    def config(self) -> CompletionConfig:
        return self.processor.config

    def handle(self, input_name: str, msg: Any, factory: MessageFactory) -> list[Output]:
        try:
            cloud = pointcloud2_to_arrays(msg)
        except ValueError as exc:
            raise InputRejected(f"malformed PointCloud2: {exc}") from exc
        start = time.perf_counter()

        header, T_out = self._output_frame(msg.header, factory)

        def on_coarse(centres: np.ndarray) -> None:
            centres = transform_points(T_out, centres) if T_out is not None else centres
            self.emit(Output("coarse_voxels", arrays_to_pointcloud2(centres, factory,
                                                                    header=make_header(factory, header))))
            self.stats.extra["coarse_output_ms"] = (time.perf_counter() - start) * 1e3

        extra = {}
        base = self.transforms.get("base")
        if base is not None and _takes_base_transform(self.processor):  # gravity from the sensor mounting
            extra["T_base_cloud"] = np.asarray(base[1], np.float64)
        try:
            result = self.processor.process(cloud.points, dropped=cloud.dropped, on_coarse=on_coarse, **extra)
        except EmptyInputError as exc:
            raise InputRejected(str(exc)) from exc
        self.stats.extra["input_points"] = float(result.input_points)
        self.stats.extra["dropped_points"] = float(result.dropped_points)
        for key, value in result.timings_ms.items():
            self.stats.extra[f"{key}_ms"] = value
        if T_out is not None:
            result = transformed_result(result, T_out)
        return self.mesh_outputs(result, header, factory)

    def _output_frame(self, header: Any, factory: MessageFactory) -> tuple[Any, np.ndarray | None]:
        """The header of the outputs and ``T_target_cloud`` (None: outputs stay in the cloud's frame): with a
        ``target`` transform from the host (the node's ``target_frame``), the outputs are published in it."""
        target = self.transforms.get("target")
        if target is None or target[0] == header.frame_id:
            return header, None
        out = make_header(factory, header)
        out.frame_id = target[0]
        return out, np.asarray(target[1], np.float64)

    def mesh_outputs(self, result: CompletionResult, header: Any, factory: MessageFactory) -> list[Output]:
        """The final outputs of ``result``, each with a copy of ``header``: the Marker of the display mesh
        (colours per ``marker_colors``), CompletedMesh of the full mesh (colours per ``mesh_colors``), voxels."""
        c = self.config
        mesh = result.mesh
        shown = result.display_mesh if result.display_mesh is not None else mesh
        self.stats.extra["marker_triangles"] = float(len(shown.faces))
        self.stats.extra["mesh_triangles"] = float(len(mesh.faces))
        marker = mesh_to_marker(shown.vertices, shown.faces, factory, header=make_header(factory, header),
                                vertex_colors=shown.vertex_colors if c.marker_colors else None, ns=MARKER_NS)
        completed = factory.new(
            "gen3d_ros/msg/CompletedMesh",
            header=make_header(factory, header),
            mesh=mesh_to_shape_mesh(mesh.vertices, mesh.faces, factory),
            vertex_colors=colors_to_rgba_msgs(mesh.vertex_colors if c.mesh_colors else None, factory),
            voxel_size=float(result.voxel_size), steps=int(result.steps),
            input_points=int(result.input_points), dropped_points=int(result.dropped_points),
            latency_ms=float(result.latency_ms), model_id=result.model_id)
        voxels = arrays_to_pointcloud2(result.voxels.astype(np.float32), factory, header=make_header(factory, header))
        return [Output("mesh_marker", marker), Output("completed_mesh", completed),
                Output("completed_voxels", voxels)]
