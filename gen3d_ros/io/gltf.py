"""Binary glTF 2.0 (``.glb``) meshes, for any 3D viewer (Blender, three.js, Foxglove, Windows 3D Viewer).

Written and read with trimesh's glTF exporter/loader (a well-kept library) instead of by hand. Each file carries
``asset.generator = "gen3d_ros <version>"`` (the marker ``--force`` and :func:`gen3d_ros.outputs.written_by_gen3d`
look for). Files are written through :mod:`gen3d_ros.outputs` (temporary sibling + rename).

glTF is y-up by convention, but vertices are stored as given (ROS x forward, y left, z up, metres): the file is a
copy of the mesh in its ROS frame, and the reader returns exactly what was written.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np


def _rgba8(colors: np.ndarray | None, n: int) -> np.ndarray | None:
    """(N, 3|4) uint8 or float 0..1 colours -> (N, 4) uint8, or None."""
    if colors is None or len(colors) == 0:
        return None
    colors = np.asarray(colors)
    if colors.ndim != 2 or colors.shape[0] != n or colors.shape[1] not in (3, 4):
        raise ValueError(f"colors must be ({n}, 3) or ({n}, 4), got shape {colors.shape}")
    if colors.dtype != np.uint8:
        colors = np.rint(np.clip(np.nan_to_num(colors.astype(np.float64)), 0.0, 1.0) * 255.0).astype(np.uint8)
    if colors.shape[1] == 3:
        colors = np.concatenate([colors, np.full((n, 1), 255, np.uint8)], axis=1)
    return colors


def glb_bytes(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None) -> bytes:
    """The ``.glb`` file content of a triangle mesh.

    Args:
        vertices: (V, 3) metres (stored as float32).
        faces: (F, 3) vertex indices, counter-clockwise seen from outside.
        colors: optional per-vertex (V, 3|4) uint8 or float 0..1 colours (stored as RGBA8 ``COLOR_0``).
    """
    import trimesh
    from trimesh.exchange.gltf import export_glb

    from gen3d_ros.outputs import GENERATOR

    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(f"faces index vertices {faces.min()}..{faces.max()} but there are {len(vertices)}")
    # process=False: keep vertices and faces exactly (trimesh would merge duplicates and drop degenerate faces)
    mesh = trimesh.Trimesh(vertices, faces, vertex_colors=_rgba8(colors, len(vertices)), process=False)

    def mark(tree: dict) -> None:
        tree.setdefault("asset", {})["generator"] = GENERATOR

    return bytes(export_glb(trimesh.Scene(mesh), include_normals=False, tree_postprocessor=mark))


def write_glb(path: str | Path, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None) -> Path:
    """Write :func:`glb_bytes` to ``path`` atomically (:func:`gen3d_ros.outputs.write_bytes`)."""
    from gen3d_ros.outputs import write_bytes

    return write_bytes(path, glb_bytes(vertices, faces, colors))


def read_glb(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A ``.glb`` with one mesh -> vertices (V, 3) float64 metres, faces (F, 3) int64, colours (V, 4) uint8 or None.

    Several meshes are concatenated (faces re-indexed). ValueError when the file holds no triangle mesh."""
    import trimesh

    scene: Any = trimesh.load(io.BytesIO(Path(path).read_bytes()), file_type="glb", process=False, force="scene")
    meshes = [g for g in scene.geometry.values() if isinstance(g, trimesh.Trimesh)]
    if not meshes:
        raise ValueError(f"{path}: no triangle mesh in the glTF file")
    vertices, faces, colors, offset = [], [], [], 0
    for mesh in meshes:
        vertices.append(np.asarray(mesh.vertices, dtype=np.float64))
        faces.append(np.asarray(mesh.faces, dtype=np.int64) + offset)
        offset += len(mesh.vertices)
        kind = getattr(mesh.visual, "kind", None)
        colors.append(np.asarray(mesh.visual.vertex_colors, dtype=np.uint8) if kind == "vertex" else None)
    rgba = np.concatenate(colors) if all(c is not None for c in colors) else None
    return np.concatenate(vertices), np.concatenate(faces), rgba
