"""Triangle meshes of URDF geometry: the primitive shapes (``box``, ``cylinder``, ``sphere``) and mesh files.

Mesh files: STL/OBJ/PLY/OFF/glTF are read with open3d; COLLADA ``.dae`` (and anything else open3d cannot read)
with trimesh, which needs ``pycollada`` for ``.dae``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from gen3d_ros.robot.robot_model import DEFAULT_RGBA, URDFError

_CYLINDER_SEGMENTS = 32
_SPHERE_RINGS, _SPHERE_SEGMENTS = 12, 24


def box_mesh(size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Box of edge lengths ``size`` (metres) centred at the origin; 24 vertices (4 per face, so faces stay flat)."""
    half = np.asarray(size, dtype=np.float64) / 2.0
    vertices, faces = [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            u, v = (axis + 1) % 3, (axis + 2) % 3
            corners = []
            for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                p = np.zeros(3)
                p[axis], p[u], p[v] = sign * half[axis], a * half[u], b * half[v]
                corners.append(p)
            base = len(vertices)
            vertices.extend(corners)
            # (u, v, axis) is right-handed, so counter-clockwise in (u, v) faces +axis; flip for the -axis face.
            tri = [[0, 1, 2], [0, 2, 3]] if sign > 0 else [[0, 2, 1], [0, 3, 2]]
            faces.extend([[base + i for i in t] for t in tri])
    return np.array(vertices), np.array(faces, dtype=np.int64)


def cylinder_mesh(radius: float, length: float, segments: int = _CYLINDER_SEGMENTS) -> tuple[np.ndarray, np.ndarray]:
    """URDF cylinder: axis along z, centred at the origin; side and caps with outward normals."""
    angles = np.linspace(0.0, 2.0 * math.pi, segments, endpoint=False)
    ring = np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)
    h = length / 2.0
    bottom = np.column_stack([ring, np.full(segments, -h)])
    top = np.column_stack([ring, np.full(segments, h)])
    # Caps get their own vertices so that no vertex is shared between the side and a cap.
    vertices = np.vstack([bottom, top, bottom, top, [[0.0, 0.0, -h], [0.0, 0.0, h]]])
    i = np.arange(segments)
    j = (i + 1) % segments
    side = np.vstack([np.column_stack([i, j, segments + j]), np.column_stack([i, segments + j, segments + i])])
    c_bot, c_top = 4 * segments, 4 * segments + 1
    cap_bottom = np.column_stack([np.full(segments, c_bot), 2 * segments + j, 2 * segments + i])
    cap_top = np.column_stack([np.full(segments, c_top), 3 * segments + i, 3 * segments + j])
    return vertices, np.vstack([side, cap_bottom, cap_top]).astype(np.int64)


def sphere_mesh(
    radius: float, rings: int = _SPHERE_RINGS, segments: int = _SPHERE_SEGMENTS
) -> tuple[np.ndarray, np.ndarray]:
    """UV sphere centred at the origin with outward-facing triangles."""
    vertices = [[0.0, 0.0, radius]]
    for r in range(1, rings):
        theta = math.pi * r / rings
        for s in range(segments):
            phi = 2.0 * math.pi * s / segments
            vertices.append([radius * math.sin(theta) * math.cos(phi), radius * math.sin(theta) * math.sin(phi),
                             radius * math.cos(theta)])
    vertices.append([0.0, 0.0, -radius])
    south = len(vertices) - 1
    faces = []
    for s in range(segments):
        t = (s + 1) % segments
        faces.append([0, 1 + s, 1 + t])
        last = 1 + (rings - 2) * segments
        faces.append([south, last + t, last + s])
    for r in range(rings - 2):
        a, b = 1 + r * segments, 1 + (r + 1) * segments
        for s in range(segments):
            t = (s + 1) % segments
            faces.append([a + s, b + s, b + t])
            faces.append([a + s, b + t, a + t])
    return np.array(vertices), np.array(faces, dtype=np.int64)


_OPEN3D_FORMATS = (".stl", ".obj", ".ply", ".off", ".gltf", ".glb")


def load_mesh_file(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read a triangle mesh file: (vertices [V, 3] float64 in the file's units, faces [F, 3] int64, vertex_rgb).

    ``vertex_rgb`` [V, 3] in [0, 1] when the file carries colours (vertex colours or, through trimesh, materials),
    else ``None``. STL/OBJ/PLY/OFF/glTF via open3d; COLLADA and other formats via trimesh (+ pycollada for .dae).
    """
    suffix = path.suffix.lower()
    if suffix in _OPEN3D_FORMATS:
        return _load_with_open3d(path)
    return _load_with_trimesh(path)


def _load_with_open3d(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    import open3d as o3d

    mesh = o3d.io.read_triangle_mesh(str(path))
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.triangles, dtype=np.int64)
    if len(vertices) == 0 or len(faces) == 0:
        raise URDFError(f"mesh file {path} has no triangles (or open3d cannot read it)")
    colors = np.asarray(mesh.vertex_colors, dtype=np.float64) if mesh.has_vertex_colors() else None
    return vertices, faces, colors


def _load_with_trimesh(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    suffix = path.suffix.lower()
    try:
        import trimesh
    except ImportError as exc:
        raise URDFError(
            f"mesh {path} ({suffix}) needs trimesh{' and pycollada' if suffix == '.dae' else ''}: "
            f"`pip install trimesh{' pycollada' if suffix == '.dae' else ''}`, or load the collision meshes "
            f"(load_urdf(..., geometry='collision'), usually .stl)"
        ) from exc
    if suffix == ".dae":
        try:
            import collada  # noqa: F401  (trimesh's COLLADA loader)
        except ImportError as exc:
            raise URDFError(
                f"mesh {path} is COLLADA (.dae), which needs pycollada: `pip install pycollada`, or load the "
                f"collision meshes (load_urdf(..., geometry='collision'), usually .stl)"
            ) from exc
    try:
        loaded = trimesh.load(str(path), force="scene", process=False)
    except Exception as exc:  # trimesh raises many types; name the file in one place
        raise URDFError(f"cannot read mesh {path}: {exc}") from exc
    parts = []
    for geom_name in loaded.graph.nodes_geometry:
        transform, key = loaded.graph[geom_name]
        geom = loaded.geometry[key]
        if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
            continue
        vertices = trimesh.transformations.transform_points(np.asarray(geom.vertices, dtype=np.float64), transform)
        parts.append((vertices, np.asarray(geom.faces, dtype=np.int64), _trimesh_vertex_rgb(geom)))
    if not parts:
        raise URDFError(f"mesh file {path} has no triangles")
    return _merge_parts(parts)


def _trimesh_vertex_rgb(geom) -> np.ndarray | None:
    """[V, 3] colours in [0, 1] of a trimesh geometry (material or vertex colours), ``None`` if it has none."""
    if geom.visual is None or not getattr(geom.visual, "defined", True):
        return None
    try:
        colors = np.asarray(geom.visual.to_color().vertex_colors, dtype=np.float64)
    except Exception:  # textures trimesh cannot sample: fall back to the URDF colour
        return None
    if colors.ndim == 1:  # one colour for the whole part (COLLADA materials come out like this)
        colors = np.tile(colors, (len(geom.vertices), 1))
    if colors.shape != (len(geom.vertices), colors.shape[1]) or colors.shape[1] < 3:
        return None
    return colors[:, :3] / 255.0


def _merge_parts(
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    offsets = np.cumsum([0] + [len(v) for v, _, _ in parts[:-1]])
    vertices = np.vstack([v for v, _, _ in parts])
    faces = np.vstack([f + o for (_, f, _), o in zip(parts, offsets)])
    if all(c is None for _, _, c in parts):
        return vertices, faces, None
    colors = np.vstack([c if c is not None else np.tile(DEFAULT_RGBA[:3], (len(v), 1)) for v, _, c in parts])
    return vertices, faces, colors
