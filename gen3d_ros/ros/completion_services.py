"""``completion_node``'s services, on its private names (``/<ns>/completion_node/save_mesh`` …), like nvblox's
``save_ply`` and octomap_server's ``reset`` / ``clear_bbox``:

- ``~/save_mesh`` (``gen3d_ros/srv/SaveMesh``): write the last completed mesh (the full ``CompletedMesh``, after
  any ``~/clear_region``) to an absolute ``path``: ``.ply``, ``.obj`` or ``.glb`` by its suffix, atomically through
  :mod:`gen3d_ros.outputs`. Never over a file the node reads (its checkpoint and other configured files), and over
  an existing file only with ``overwrite`` and only when gen3d_ros wrote it. Vertices in metres, in the mesh's
  frame (the input cloud's).
- ``~/reset`` (``std_srvs/Trigger``): forget the kept result and rebuild the stage from the running
  configuration, so no state of earlier sweeps survives (a rebuild loads the model again: seconds).
- ``~/clear_region`` (``gen3d_ros/srv/ClearRegion``): remove the kept triangles / voxels inside an axis-aligned box
  (:mod:`gen3d_ros.pipeline.kept_result`) and publish the cleared mesh, Marker and voxels again (latched Marker:
  rviz shows the cleared one). The box is in ``frame_id``: empty means the mesh's frame; another frame is looked
  up in TF (``T_box_mesh`` at the mesh's stamp, :class:`gen3d_ros.ros.tf_buffer.NodeTransforms`: the node's own
  when it uses TF, else one the services keep), and the request fails, saying so, when that transform is missing.

The kept result is the last sweep's outputs, as the worker published them (serialized bytes with the process
worker), deserialized only when a service needs them.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from gen3d_ros.pipeline.kept_result import KeptCompletion
from gen3d_ros.ros.stage_node import _BUILD_KEY, StageNode


def configured_files(config: Any) -> list[str]:
    """Every non-empty string value of ``config`` (nested configs included) that names an existing path: the
    files a node reads, which ``~/save_mesh`` must never replace."""
    found = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            found += configured_files(value)
        elif isinstance(value, str) and value and Path(value).expanduser().exists():
            found.append(value)
    return found


class CompletionNode(StageNode):
    """The completion stage's host with the kept result and its three services."""

    def _setup(self) -> None:
        from rclpy.serialization import deserialize_message
        from std_srvs.srv import Trigger

        from gen3d_ros.srv import ClearRegion, SaveMesh

        super()._setup()
        classes = {name: self.factory.cls(msgtype) for name, msgtype in self.stage_cls.outputs.items()}
        self.kept = KeptCompletion(lambda name, data: deserialize_message(data, classes[name]))
        # ~/clear_region boxes in other frames: the node's TF when it has one, else a buffer of our own
        self._box_tf = self.tf if getattr(self, "tf", None) is not None else _node_transforms(self)
        self._mesh_services = [
            self.create_service(SaveMesh, "~/save_mesh", self._on_save_mesh),
            self.create_service(Trigger, "~/reset", self._on_reset),
            self.create_service(ClearRegion, "~/clear_region", self._on_clear_region),
        ]
        self.get_logger().info("services: " + ", ".join(s.srv_name for s in self._mesh_services))

    def _publish(self, name: str, msg: Any) -> None:
        """Publish as every host does, and keep the outputs the services work on."""
        kept = getattr(self, "kept", None)
        if kept is not None:
            kept.keep(name, msg)
        super()._publish(name, msg)

    # --- services ------------------------------------------------------------------------------------------

    def _on_save_mesh(self, request: Any, response: Any) -> Any:
        from gen3d_ros.completion.udf_mesh import MESH_SUFFIXES
        from gen3d_ros.outputs import OutputError, prepare_output

        path = Path(request.path)
        try:
            if not request.path or not path.is_absolute():
                raise ValueError(f"path must be absolute (the node's working directory is not the caller's), "
                                 f"got {request.path!r}")
            if path.suffix.lower() not in MESH_SUFFIXES:
                raise ValueError(f"path must end in {', '.join(MESH_SUFFIXES)}, got {path.name!r}")
            if not self.kept.has_mesh():
                raise LookupError("no completed mesh yet: nothing was completed since the start or the last reset")
            prepare_output(path, inputs=configured_files(self.config), force=request.overwrite, what="mesh")
            start = time.perf_counter()
            response.vertices, response.triangles = self.kept.write_mesh_file(path)
        except (ValueError, LookupError, OutputError, OSError) as exc:
            response.success, response.message = False, f"{exc}"
            self.get_logger().warning(f"~/save_mesh {request.path!r}: {exc}")
            return response
        response.success = True
        response.message = (f"wrote {response.vertices} vertices, {response.triangles} triangles to {path} "
                            f"({(time.perf_counter() - start) * 1e3:.0f} ms)")
        self.get_logger().info(response.message)
        return response

    def _on_reset(self, request: Any, response: Any) -> Any:
        self.kept.forget()
        self._rebuild_stage()
        response.success, response.message = True, "forgot the kept result; the stage is rebuilt from the running " \
                                                    "configuration (no state of earlier sweeps is kept)"
        self.get_logger().info(f"~/reset: {response.message}")
        return response

    def _rebuild_stage(self) -> None:
        """A fresh stage of the running configuration: in this process, or in the stage process before its next
        frame (a copy of the config, so the child builds it again)."""
        if self._stage_process is not None:
            self._stage_process.reconfigure(dataclasses.replace(self.config))
            self._queue.put(_BUILD_KEY, None)
            return
        stage = self.make_stage(self.config)
        stage.stats = self.stats
        with self._stage_lock:
            self.stage = stage

    def _on_clear_region(self, request: Any, response: Any) -> Any:
        lo = (request.min.x, request.min.y, request.min.z)
        hi = (request.max.x, request.max.y, request.max.z)
        try:
            cleared = self.kept.clear_box(lo, hi, self._T_box_mesh(request.frame_id))
        except (ValueError, LookupError) as exc:
            response.success, response.message = False, f"{exc}"
            self.get_logger().warning(f"~/clear_region: {exc}")
            return response
        for output in cleared.outputs:
            self._publish(output.name, output.msg)  # kept again; a managed node publishes only when active
        response.success = True
        response.removed_triangles, response.removed_voxels = cleared.removed_triangles, cleared.removed_voxels
        response.remaining_triangles = cleared.remaining_triangles
        response.message = (f"removed {cleared.removed_triangles} triangles and {cleared.removed_voxels} voxels in "
                            f"{lo}..{hi}; {cleared.remaining_triangles} triangles remain (published again)")
        self.get_logger().info(f"~/clear_region: {response.message}")
        return response

    def _T_box_mesh(self, box_frame: str) -> Any:
        """Mesh frame -> ``box_frame`` at the kept mesh's stamp (None: the same frame). LookupError when nothing
        is kept, ValueError when TF has no such transform."""
        from gen3d_ros.io.messages import stamp_to_nanoseconds
        from gen3d_ros.ros.tf_buffer import TransformMissing

        header = self.kept.header()
        if not box_frame or box_frame == header.frame_id:
            return None
        if self._box_tf is None:
            raise ValueError(f"the box is in frame {box_frame!r}, the mesh in {header.frame_id!r}, and this node has no "
                             "TF buffer")
        try:
            return self._box_tf.lookup(box_frame, header.frame_id, stamp_to_nanoseconds(header.stamp))
        except TransformMissing as exc:
            raise ValueError(f"no transform {header.frame_id!r} -> {box_frame!r} at the mesh's stamp: {exc}") from None


def _node_transforms(node: Any) -> Any:
    """A TF buffer of ``node`` (None where none can be made: no tf2_msgs)."""
    try:
        from gen3d_ros.ros.tf_buffer import NodeTransforms

        return NodeTransforms(node)
    except (ImportError, ValueError) as exc:
        node.get_logger().warning(f"~/clear_region: boxes only in the mesh's frame (no TF: {exc})")
        return None
