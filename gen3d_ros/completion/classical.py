"""Classical (non-learned) surface reconstruction: the baseline and the fallback of the completion node.

Poisson reconstruction (open3d) of a voxel-downsampled cloud with normals oriented towards the sensor,
trimmed where the Poisson density is low (surface the scan does not support). It fills small holes but
cannot hallucinate unseen geometry — exactly what GCA is measured against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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


def poisson_mesh(points: np.ndarray, *, voxel_size: float, depth: int = 9, density_quantile: float = 0.05,
                 sensor_origin: np.ndarray | None = None, normal_radius_factor: float = 3.0) -> TriangleMesh:
    """Poisson surface of ``points`` (N,3) metres, in their own frame.

    ``voxel_size``: downsampling cell (m); ``depth``: octree depth; ``density_quantile``: fraction of the
    least-supported vertices removed; ``sensor_origin`` (3,): where normals are oriented towards (the LiDAR
    sits at the origin of its own frame). Returns an empty mesh for fewer than 20 points.
    """
    import open3d as o3d

    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, np.float64)))
    pcd = pcd.voxel_down_sample(voxel_size)
    if len(pcd.points) < 20:
        return TriangleMesh.empty()
    pcd.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=normal_radius_factor * voxel_size, max_nn=30))
    origin = np.zeros(3) if sensor_origin is None else np.asarray(sensor_origin, np.float64)
    pcd.orient_normals_towards_camera_location(origin)
    mesh, densities = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(pcd, depth=depth, linear_fit=True)
    densities = np.asarray(densities)
    if density_quantile > 0 and len(densities):
        mesh.remove_vertices_by_mask(densities < np.quantile(densities, density_quantile))
    # Poisson closes the surface far beyond the data: keep only what lies near the input.
    box = pcd.get_axis_aligned_bounding_box()
    # Pad by a voxel: a flat cloud (a noise-free ground plane) has a box of zero thickness.
    pad = np.full(3, voxel_size)
    box = o3d.geometry.AxisAlignedBoundingBox(box.min_bound - pad, box.max_bound + pad)
    mesh = mesh.crop(box)
    mesh.remove_unreferenced_vertices()
    vertices = np.asarray(mesh.vertices, np.float32)
    return TriangleMesh(vertices, np.asarray(mesh.triangles, np.int32), height_colors(vertices))


def ball_pivot_mesh(points: np.ndarray, *, voxel_size: float, sensor_origin: np.ndarray | None = None) -> TriangleMesh:
    """Ball-pivoting surface of ``points`` (N,3) metres with radii of 1.5, 3 and 6 voxels; no hole filling."""
    import open3d as o3d

    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, np.float64)))
    pcd = pcd.voxel_down_sample(voxel_size)
    if len(pcd.points) < 20:
        return TriangleMesh.empty()
    pcd.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=3.0 * voxel_size, max_nn=30))
    pcd.orient_normals_towards_camera_location(np.zeros(3) if sensor_origin is None else sensor_origin)
    radii = o3d.utility.DoubleVector([1.5 * voxel_size, 3.0 * voxel_size, 6.0 * voxel_size])
    mesh = o3d.geometry.TriangleMesh.create_from_point_cloud_ball_pivoting(pcd, radii)
    vertices = np.asarray(mesh.vertices, np.float32)
    return TriangleMesh(vertices, np.asarray(mesh.triangles, np.int32), height_colors(vertices))
