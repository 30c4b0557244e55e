"""A completed mesh decimated to a triangle budget, for display (the completion node's rviz Marker).

The full mesh (hGCA: ~370k triangles for a ±12 m VLP-32 sweep) stays what ``CompletedMesh`` carries; rviz gets
at most ``max_triangles`` of it. Method: open3d's vertex clustering (every vertex in a cubic cell of side ``cell``
merges into one, at their mean position and colour), with the cell chosen from the surface area to land just
under the budget. Measured on the demo drive's hGCA mesh (368k triangles, 1416 m², 2 busy cores): quadric
decimation (``simplify_quadric_decimation``) takes 2.8 s to 100k triangles and 3.9 s to 50k, too slow for a
10 Hz sensor; vertex clustering takes 0.10-0.16 s to 80k-134k triangles and 0.10 s to 51k.
"""

from __future__ import annotations

import math

import numpy as np

from gen3d_ros.completion.mesh import TriangleMesh

#: Triangles per (area / cell²) that vertex clustering leaves of a surface mesh: each occupied cell of a sheet
#: becomes one vertex, and a triangulated sheet has about two triangles per vertex. Measured 1.9 (cell 0.1 m) to
#: 2.3 (cell 0.2-0.25 m) on the demo hGCA mesh; the larger value makes the first cell land under the budget.
TRIANGLES_PER_CELL = 2.3
#: Clustering attempts, each with a cell grown by the measured excess, before the fallback
MAX_ATTEMPTS = 8


def triangle_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) float64 areas, square metres, of ``faces`` (F, 3) int indexing ``vertices`` (V, 3) metres."""
    t = np.asarray(vertices, np.float64)[np.asarray(faces, np.int64)]
    return 0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1)


def clustering_cell(area_m2: float, max_triangles: int) -> float:
    """Side (metres) of the vertex-clustering cell expected to leave about ``max_triangles`` of a surface of
    ``area_m2`` square metres (:data:`TRIANGLES_PER_CELL`)."""
    return math.sqrt(TRIANGLES_PER_CELL * area_m2 / max_triangles)


def _largest(mesh: TriangleMesh, max_triangles: int) -> TriangleMesh:
    """The ``max_triangles`` largest triangles of ``mesh`` with the vertices they use."""
    keep = np.sort(np.argsort(-triangle_areas(mesh.vertices, mesh.faces), kind="stable")[:max_triangles])
    faces = mesh.faces[keep]
    used, inverse = np.unique(faces.reshape(-1), return_inverse=True)
    colors = mesh.vertex_colors[used] if len(mesh.vertex_colors) else mesh.vertex_colors
    return TriangleMesh(mesh.vertices[used], inverse.reshape(-1, 3).astype(np.int32), colors)


def _from_open3d(mesh: object, colored: bool) -> TriangleMesh:
    vertices = np.asarray(mesh.vertices, np.float32)
    colors = np.asarray(mesh.vertex_colors, np.float32) if colored else np.zeros((0, 3), np.float32)
    return TriangleMesh(vertices, np.asarray(mesh.triangles, np.int32), colors)


def decimate_to_budget(mesh: TriangleMesh, max_triangles: int) -> TriangleMesh:
    """``mesh`` with at most ``max_triangles`` triangles (``mesh`` itself when it has no more, or
    ``max_triangles`` <= 0: no limit).

    Vertex clustering with a cell of :func:`clustering_cell`, grown by the square root of the excess while the
    result is over the budget; vertices (metres, the mesh's frame) move by at most half a cell diagonal. Colours
    of merged vertices are averaged (a mesh without colours gives none). Should clustering still exceed the
    budget after :data:`MAX_ATTEMPTS` (never seen: it would need a surface far from a sheet), the
    ``max_triangles`` largest triangles of the last result are kept, so the budget always holds.
    """
    if max_triangles <= 0 or len(mesh.faces) <= max_triangles:
        return mesh
    area = float(triangle_areas(mesh.vertices, mesh.faces).sum())
    extent = float(np.ptp(mesh.vertices, axis=0).max()) if len(mesh.vertices) else 0.0
    if not area > 0.0 or not extent > 0.0:  # all triangles degenerate: nothing to cluster by
        return _largest(mesh, max_triangles)
    colored = len(mesh.vertex_colors) == len(mesh.vertices)
    source = mesh.to_open3d()
    cell = clustering_cell(area, max_triangles)
    result = mesh
    for _ in range(MAX_ATTEMPTS):
        result = _from_open3d(source.simplify_vertex_clustering(cell), colored)
        if len(result.faces) <= max_triangles:
            return result
        cell *= max(1.05, math.sqrt(len(result.faces) / max_triangles))
    return _largest(result, max_triangles)
