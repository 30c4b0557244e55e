"""Classical (non-learned) surface reconstruction: the baseline and the fallback of the completion node.

Poisson reconstruction (open3d) of a voxel-downsampled cloud with normals oriented towards the sensor,
trimmed where the Poisson density is low (surface the scan does not support). It fills small holes but
cannot hallucinate unseen geometry — exactly what GCA is measured against.
"""

from __future__ import annotations

import numpy as np

from gen3d_ros.completion.mesh import TriangleMesh, height_colors


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
