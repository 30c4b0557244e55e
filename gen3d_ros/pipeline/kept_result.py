"""The last completion result a host keeps for its services (``completion_node``'s ``~/save_mesh``,
``~/clear_region``, ``~/reset``): the ``completed_mesh``, ``mesh_marker`` and ``completed_voxels`` outputs of the
last sweep, as messages of either world or as serialized bytes (the process worker's outputs, deserialized only when
a service needs them). No rclpy here: the host passes its deserializer.

Clearing a box keeps what lies outside it: a triangle goes when its centroid is inside, a voxel when its centre is
(bounds included); vertices no kept triangle uses are dropped with their colours.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from gen3d_ros.io.mesh_msgs import mesh_to_shape_mesh, shape_mesh_to_arrays
from gen3d_ros.io.messages import factory_for, make_header
from gen3d_ros.io.pointcloud2 import arrays_to_pointcloud2, pointcloud2_to_arrays
from gen3d_ros.pipeline.base import Output

#: the outputs of the completion stage that make up the kept result
KEPT_OUTPUTS = ("completed_mesh", "mesh_marker", "completed_voxels")


@dataclass
class ClearedRegion:
    """What :meth:`KeptCompletion.clear_box` did: counts, and the cleared messages to publish again."""

    removed_triangles: int
    removed_voxels: int
    remaining_triangles: int
    outputs: list[Output]


def inside_box(points: np.ndarray, lo: np.ndarray, hi: np.ndarray, T_box_points: np.ndarray | None = None) -> np.ndarray:
    """Mask of ``points`` (N, 3) metres inside the axis-aligned box ``lo..hi`` (bounds included). The box is in
    another frame when ``T_box_points`` (4x4, points' frame -> box frame) is given."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if T_box_points is not None:
        points = points @ T_box_points[:3, :3].T + T_box_points[:3, 3]
    return np.all((points >= lo) & (points <= hi), axis=1)


def _rgba_of(colors: Any) -> np.ndarray:
    return np.array([[c.r, c.g, c.b, c.a] for c in colors], dtype=np.float32).reshape(-1, 4)


class KeptCompletion:
    """Thread-safe store of the last completion result. ``deserialize(output_name, data)``: a message from the
    serialized bytes of an output (only called for ``bytes``-like values)."""

    def __init__(self, deserialize: Callable[[str, bytes], Any] | None = None) -> None:
        self._deserialize = deserialize
        self._lock = threading.Lock()
        self._kept: dict[str, Any] = {}

    def keep(self, name: str, msg: Any) -> None:
        """Keep output ``name``'s message (other outputs are ignored); a new mesh replaces the whole result."""
        if name not in KEPT_OUTPUTS:
            return
        with self._lock:
            self._kept[name] = msg

    def forget(self) -> None:
        with self._lock:
            self._kept.clear()

    def _message(self, name: str) -> Any:
        """The kept message ``name`` (deserialized once and kept as a message), or None; call with the lock."""
        msg = self._kept.get(name)
        if isinstance(msg, (bytes, bytearray, memoryview)):
            if self._deserialize is None:
                raise RuntimeError(f"kept {name} is serialized but no deserializer was given")
            msg = self._kept[name] = self._deserialize(name, bytes(msg))
        return msg

    def has_mesh(self) -> bool:
        with self._lock:
            return "completed_mesh" in self._kept

    def header(self) -> Any:
        """The ``std_msgs/Header`` of the kept result (mesh, else voxels); LookupError when nothing is kept."""
        with self._lock:
            msg = self._message("completed_mesh")
            if msg is None:
                msg = self._message("completed_voxels")
        if msg is None:
            raise LookupError("no completed result yet: nothing was completed since the start or the last reset")
        return msg.header

    def mesh(self) -> tuple[str, np.ndarray, np.ndarray, np.ndarray | None]:
        """frame_id, vertices (V, 3) float64 metres, faces (F, 3) int64, colours (V, 4) float32 0..1 or None.
        LookupError when no mesh is kept."""
        with self._lock:
            msg = self._message("completed_mesh")
        if msg is None:
            raise LookupError("no completed mesh yet: nothing was completed since the start or the last reset")
        vertices, faces = shape_mesh_to_arrays(msg.mesh)
        colors = _rgba_of(msg.vertex_colors) if len(msg.vertex_colors) == len(vertices) and len(vertices) else None
        return str(msg.header.frame_id), vertices, faces, colors

    def write_mesh_file(self, path: str | Path) -> tuple[int, int]:
        """Write the kept mesh to ``path`` (.ply, .obj or .glb; :func:`gen3d_ros.completion.udf_mesh.save_mesh`,
        atomic). Without colours in the message, the nodes' height ramp colours it. Returns (vertices, faces).
        The caller checks ``path`` first (:func:`gen3d_ros.outputs.prepare_output`)."""
        from gen3d_ros.completion.mesh import TriangleMesh, height_colors
        from gen3d_ros.completion.udf_mesh import save_mesh

        _, vertices, faces, colors = self.mesh()
        rgb = colors[:, :3] if colors is not None else height_colors(vertices)
        save_mesh(path, TriangleMesh(vertices.astype(np.float32), faces.astype(np.int32),
                                     np.clip(rgb, 0.0, 1.0).astype(np.float32)))
        return len(vertices), len(faces)

    def clear_box(self, lo: Iterable[float], hi: Iterable[float],
                  T_box_mesh: np.ndarray | None = None) -> ClearedRegion:
        """Remove the kept triangles and voxels inside the box ``lo..hi`` (metres; in the mesh's frame, or in a frame
        with ``T_box_mesh``: mesh frame -> box frame). The kept messages are replaced by the cleared ones, which
        are returned to be published again. LookupError when nothing is kept; ValueError for a bad box."""
        lo, hi = np.asarray(list(lo), np.float64), np.asarray(list(hi), np.float64)
        if lo.shape != (3,) or hi.shape != (3,) or not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            raise ValueError(f"the box needs finite min and max corners, got {lo.tolist()} and {hi.tolist()}")
        if (lo > hi).any():
            raise ValueError(f"box min {lo.tolist()} exceeds max {hi.tolist()} on some axis")
        with self._lock:
            mesh, marker, voxels = (self._message(n) for n in KEPT_OUTPUTS)
            if mesh is None and voxels is None:
                raise LookupError("no completed result yet: nothing to clear")
            outputs, removed_tri, removed_vox, remaining = [], 0, 0, 0
            if mesh is not None:
                mesh, removed_tri, remaining = _clear_mesh(mesh, lo, hi, T_box_mesh)
                outputs.append(Output("completed_mesh", mesh))
            if marker is not None:
                outputs.append(Output("mesh_marker", _clear_marker(marker, lo, hi, T_box_mesh)))
            if voxels is not None:
                voxels, removed_vox = _clear_voxels(voxels, lo, hi, T_box_mesh)
                outputs.append(Output("completed_voxels", voxels))
            for output in outputs:
                self._kept[output.name] = output.msg
        return ClearedRegion(removed_tri, removed_vox, remaining, outputs)


def _clear_mesh(msg: Any, lo: np.ndarray, hi: np.ndarray, T: np.ndarray | None) -> tuple[Any, int, int]:
    """A CompletedMesh without the triangles whose centroid is in the box; (message, removed, remaining)."""
    vertices, faces = shape_mesh_to_arrays(msg.mesh)
    drop = inside_box(vertices[faces].mean(axis=1), lo, hi, T) if len(faces) else np.zeros(0, bool)
    kept = faces[~drop]
    used = np.unique(kept)
    remap = np.full(len(vertices), -1, np.int64)
    remap[used] = np.arange(len(used))
    colors = list(msg.vertex_colors)
    msg.mesh = mesh_to_shape_mesh(vertices[used], remap[kept].reshape(-1, 3), factory_for(msg))
    if len(colors) == len(vertices):
        msg.vertex_colors = [colors[i] for i in used]
    return msg, int(drop.sum()), int(len(kept))


def _clear_marker(msg: Any, lo: np.ndarray, hi: np.ndarray, T: np.ndarray | None) -> Any:
    """A TRIANGLE_LIST Marker without the triangles whose centroid is in the box (points in the header frame:
    the nodes' markers have an identity pose and unit scale)."""
    points = np.array([[p.x, p.y, p.z] for p in msg.points], np.float64).reshape(-1, 3, 3)
    if not len(points):
        return msg
    keep = np.flatnonzero(~inside_box(points.mean(axis=1), lo, hi, T))
    corners = (keep[:, None] * 3 + np.arange(3)).reshape(-1)
    old_points, old_colors = list(msg.points), list(msg.colors)
    msg.points = [old_points[i] for i in corners]
    if len(old_colors) == len(old_points):
        msg.colors = [old_colors[i] for i in corners]
    return msg


def _clear_voxels(msg: Any, lo: np.ndarray, hi: np.ndarray, T: np.ndarray | None) -> tuple[Any, int]:
    """A PointCloud2 of voxel centres without those in the box; (message, removed)."""
    cloud = pointcloud2_to_arrays(msg)
    drop = inside_box(cloud.points, lo, hi, T)
    factory = factory_for(msg)
    out = arrays_to_pointcloud2(np.asarray(cloud.points[~drop], np.float32), factory,
                                header=make_header(factory, msg.header))
    return out, int(drop.sum())
