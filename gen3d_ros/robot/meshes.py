"""Robot surface geometry: per-link merged meshes, surface samples (to seed Gaussians) and whole posed meshes.

All colours are RGB in [0, 1]. Link-frame arrays are in metres in that link's URDF frame; ``posed_mesh`` works in
the base (root link) frame given ``T_base_link`` from :class:`~gen3d_ros.robot.kinematics.ForwardKinematics`.
Link indices always index ``robot.links``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gen3d_ros.robot.urdf import RobotModel, Visual


@dataclass
class SurfaceSamples:
    """Points on the robot's visual surface, each in its own link's frame.

    ``points`` [n, 3] metres (link frame), ``normals`` [n, 3] unit outward face normals (link frame),
    ``colors`` [n, 3] RGB in [0, 1], ``link_index`` [n] int64 into ``robot.links``.
    """

    points: np.ndarray
    normals: np.ndarray
    colors: np.ndarray
    link_index: np.ndarray


def visual_vertex_rgb(visual: Visual) -> np.ndarray:
    """[V, 3] colours of a visual's vertices: the mesh file's own colours if any, else its material colour."""
    if visual.vertex_rgb is not None:
        return np.asarray(visual.vertex_rgb, dtype=np.float64)
    return np.tile(np.asarray(visual.rgba[:3], dtype=np.float64), (len(visual.vertices), 1))


def link_meshes(robot: RobotModel) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each link's visuals merged into one mesh: ``{link: (vertices [V, 3], faces [F, 3] int64, vertex_rgb [V, 3])}``.

    Vertices in metres in the link frame. Links without visuals (frame-only links) are absent; keys follow
    ``robot.links`` order.
    """
    grouped: dict[str, list[Visual]] = {}
    for visual in robot.visuals:
        grouped.setdefault(visual.link, []).append(visual)
    out = {}
    for link in robot.links:
        visuals = grouped.get(link)
        if not visuals:
            continue
        offsets = np.cumsum([0] + [len(v.vertices) for v in visuals[:-1]])
        out[link] = (
            np.vstack([v.vertices for v in visuals]),
            np.vstack([v.faces + o for v, o in zip(visuals, offsets)]).astype(np.int64),
            np.vstack([visual_vertex_rgb(v) for v in visuals]),
        )
    return out


def triangle_areas_normals(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Areas [F] (m²) and unit normals [F, 3] (right-hand rule on the vertex order) of triangles."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    cross = np.cross(b - a, c - a)
    norm = np.linalg.norm(cross, axis=1)
    normals = cross / np.maximum(norm, 1e-20)[:, None]
    return 0.5 * norm, normals


def _merge_link_meshes(
    robot: RobotModel,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[tuple[int, int, int]]]:
    """All link meshes of :func:`link_meshes` as one, each in its own link's frame: vertices [V, 3], faces [F, 3]
    int64 (indices into the merged vertices), vertex_rgb [V, 3], vertex_link [V] int64 (into ``robot.links``) and,
    per link with a mesh, ``(link index, first vertex, end vertex)`` (vertices are stored link by link)."""
    index_of = {name: i for i, name in enumerate(robot.links)}
    parts_v, parts_f, parts_c, ranges = [], [], [], []
    offset = 0
    for link, (v, f, c) in link_meshes(robot).items():
        parts_v.append(v)
        parts_f.append(f + offset)
        parts_c.append(c)
        ranges.append((index_of[link], offset, offset + len(v)))
        offset += len(v)
    if not ranges:
        empty = np.zeros((0, 3))
        return empty, np.zeros((0, 3), dtype=np.int64), empty, np.zeros(0, dtype=np.int64), ranges
    vertex_link = np.concatenate([np.full(stop - start, i, dtype=np.int64) for i, start, stop in ranges])
    return np.vstack(parts_v), np.vstack(parts_f).astype(np.int64), np.vstack(parts_c), vertex_link, ranges


def sample_surface(robot: RobotModel, n: int, rng: np.random.Generator) -> SurfaceSamples:
    """``n`` points uniform over the robot's whole visual surface (area-weighted across all links).

    Each point is in its link's frame; its colour interpolates the triangle's vertex colours.
    """
    V, F, C, vertex_link, ranges = _merge_link_meshes(robot)
    if not ranges:
        raise ValueError(f"robot {robot.name!r} has no visual geometry to sample")
    L = vertex_link[F[:, 0]]  # each face's link
    areas, normals = triangle_areas_normals(V, F)
    tri = rng.choice(len(F), size=n, p=areas / areas.sum())
    # Uniform barycentric coordinates: fold the unit square onto the triangle.
    r1, r2 = rng.random(n), rng.random(n)
    flip = r1 + r2 > 1.0
    r1[flip], r2[flip] = 1.0 - r1[flip], 1.0 - r2[flip]
    w = np.stack([1.0 - r1 - r2, r1, r2], axis=1)
    corners = F[tri]
    points = np.einsum("nk,nkd->nd", w, V[corners])
    colors = np.einsum("nk,nkd->nd", w, C[corners])
    return SurfaceSamples(points=points, normals=normals[tri], colors=np.clip(colors, 0.0, 1.0), link_index=L[tri])


def posed_mesh(
    robot: RobotModel, T_base_link: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The whole robot as one mesh in the base frame.

    Args:
        T_base_link: [L, 4, 4] transforms of every link in ``robot.links`` order (``ForwardKinematics`` output).

    Returns:
        vertices [V, 3] metres in the base frame, faces [F, 3] int64, vertex_rgb [V, 3] in [0, 1], vertex_link [V]
        int64 index into ``robot.links``.
    """
    return PosedMeshBuilder(robot).build(T_base_link)


class PosedMeshBuilder:
    """Merges a robot's link meshes once, then poses them cheaply (one batched transform per call)."""

    def __init__(self, robot: RobotModel) -> None:
        self.num_links = len(robot.links)
        self.vertices, self.faces, self.vertex_rgb, self.vertex_link, self.link_ranges = _merge_link_meshes(robot)
        self.face_link = self.vertex_link[self.faces[:, 0]] if len(self.faces) else np.zeros(0, dtype=np.int64)

    def pose_vertices(self, T_target_link: np.ndarray) -> np.ndarray:
        """Vertices [V, 3] moved by their link's transform ``T_target_link`` [L, 4, 4] into the target frame."""
        T = np.asarray(T_target_link, dtype=np.float64)
        if T.shape != (self.num_links, 4, 4):
            raise ValueError(f"T_base_link has shape {T.shape}, expected ({self.num_links}, 4, 4) (one per link)")
        out = np.empty_like(self.vertices)
        # Vertices are stored link by link, so one small matmul per link poses a contiguous block.
        for link, start, stop in self.link_ranges:
            out[start:stop] = self.vertices[start:stop] @ T[link, :3, :3].T + T[link, :3, 3]
        return out

    def build(self, T_base_link: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(vertices, faces, vertex_rgb, vertex_link) posed by ``T_base_link``; see :func:`posed_mesh`."""
        return self.pose_vertices(T_base_link), self.faces.copy(), self.vertex_rgb.copy(), self.vertex_link.copy()
