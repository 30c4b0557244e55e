"""The triangle mesh every completion method returns, and the height colouring meshes are shown with in rviz."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # open3d is imported where a conversion needs it: inference runs without it
    import open3d as o3d


@dataclass
class TriangleMesh:
    """``vertices`` (V,3) float32 metres, ``faces`` (F,3) int32, ``vertex_colors`` (V,3) float32 in 0..1."""

    vertices: np.ndarray
    faces: np.ndarray
    vertex_colors: np.ndarray

    @classmethod
    def empty(cls) -> "TriangleMesh":
        return cls(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32), np.zeros((0, 3), np.float32))

    def to_open3d(self) -> o3d.geometry.TriangleMesh:
        import open3d as o3d

        mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(self.vertices.astype(np.float64)),
                                         o3d.utility.Vector3iVector(self.faces.astype(np.int32)))
        if len(self.vertex_colors):
            mesh.vertex_colors = o3d.utility.Vector3dVector(self.vertex_colors.astype(np.float64))
        return mesh

    @classmethod
    def from_open3d(cls, mesh: o3d.geometry.TriangleMesh) -> "TriangleMesh":
        colors = np.asarray(mesh.vertex_colors, np.float32)
        vertices = np.asarray(mesh.vertices, np.float32)
        if len(colors) != len(vertices):
            colors = height_colors(vertices)
        return cls(vertices, np.asarray(mesh.triangles, np.int32), colors)


def height_colors(points: np.ndarray, z_lo: float | None = None, z_hi: float | None = None) -> np.ndarray:
    """Per-point RGB in 0..1 from height (turbo-like ramp), for meshes shown in rviz. ``points`` (N,3) metres."""
    if len(points) == 0:
        return np.zeros((0, 3), np.float32)
    z = points[:, 2]
    lo = np.percentile(z, 2) if z_lo is None else z_lo
    hi = np.percentile(z, 98) if z_hi is None else z_hi
    t = np.clip((z - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    # A compact polynomial fit of matplotlib's "turbo" map; avoids importing matplotlib on the hot path.
    r = 0.1357 + t * (4.5974 - t * (42.3277 - t * (130.5887 - t * (150.5666 - t * 58.1375))))
    g = 0.0914 + t * (2.1856 + t * (4.8052 - t * (14.0195 - t * (4.2109 + t * 2.7747))))
    b = 0.1067 + t * (12.5925 - t * (60.1097 - t * (109.0745 - t * (88.5066 - t * 26.8183))))
    return np.clip(np.stack([r, g, b], 1), 0.0, 1.0).astype(np.float32)
