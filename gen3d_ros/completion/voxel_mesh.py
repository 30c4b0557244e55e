"""A surface around a set of occupied voxels (GCA's output): marching cubes of a smoothed occupancy grid."""

from __future__ import annotations

import numpy as np

from gen3d_ros.completion.mesh import TriangleMesh, height_colors


def voxels_to_mesh(cells: np.ndarray, voxel_size: float, origin: np.ndarray, *, smoothing: float = 0.7) -> TriangleMesh:
    """Marching cubes of a smoothed occupancy grid of ``cells`` (K,3) int; vertices in metres (same frame as origin).

    ``smoothing``: Gaussian sigma in voxels before the 0.5-ish iso-level (0 gives a blocky voxel surface).
    """
    from scipy.ndimage import gaussian_filter
    from skimage.measure import marching_cubes

    if len(cells) == 0:
        return TriangleMesh.empty()
    lo = cells.min(0) - 2
    shape = cells.max(0) - lo + 3
    grid = np.zeros(shape, np.float32)
    grid[tuple((cells - lo).T)] = 1.0
    if smoothing > 0:
        grid = gaussian_filter(grid, smoothing)
    level = 0.5 * float(grid.max()) if smoothing > 0 else 0.5
    verts, faces, _, _ = marching_cubes(grid, level=min(level, 0.35))
    # marching_cubes works on sample positions = voxel centres: index i sits at origin + (lo + i + 0.5) * size
    vertices = (np.asarray(origin) + (verts + lo + 0.5) * voxel_size).astype(np.float32)
    return TriangleMesh(vertices, faces.astype(np.int32), height_colors(vertices))
