"""Decimation of a completed mesh to the Marker's triangle budget: the budget holds and the surface stays."""

from __future__ import annotations

import numpy as np
import pytest

from completion_fakes import grid_mesh
from gen3d_ros.completion.decimate import clustering_cell, decimate_to_budget, triangle_areas
from gen3d_ros.completion.mesh import TriangleMesh, height_colors
from gen3d_ros.completion.metrics import chamfer_l1
from gen3d_ros.completion.udf_mesh import sample_mesh


@pytest.fixture(scope="module")
def scene_mesh() -> TriangleMesh:
    """108k triangles, 312 m²: a bumpy 16 m ground square and a 2 m sphere standing on it, height-coloured."""
    import open3d as o3d

    sphere = o3d.geometry.TriangleMesh.create_sphere(radius=2.0, resolution=120).translate((0.0, 0.0, 1.0))
    ground = grid_mesh(161)
    vertices = np.concatenate([ground.vertices, np.asarray(sphere.vertices, np.float32)])
    faces = np.concatenate([ground.faces, np.asarray(sphere.triangles, np.int32) + len(ground.vertices)])
    return TriangleMesh(vertices, faces, height_colors(vertices))


@pytest.mark.parametrize("budget", [5000, 1000])
def test_decimated_mesh_fits_the_budget_and_keeps_the_surface(scene_mesh: TriangleMesh, budget: int) -> None:
    out = decimate_to_budget(scene_mesh, budget)
    assert 0.7 * budget <= len(out.faces) <= budget  # close to the budget, never over it
    assert out.faces.max() < len(out.vertices) and out.vertex_colors.shape == out.vertices.shape
    area = triangle_areas(scene_mesh.vertices, scene_mesh.faces).sum()
    assert triangle_areas(out.vertices, out.faces).sum() == pytest.approx(area, rel=0.1)
    # Chamfer between area samples of both: vertices merge within a cell, so the surface moves by a fraction of it.
    # Two sample sets of the same full mesh are already 0.04 m apart (the sampling density).
    cell = clustering_cell(area, budget)  # 0.38 m for 5000, 0.85 m for 1000
    full = sample_mesh(scene_mesh, 50_000, seed=0)
    assert chamfer_l1(sample_mesh(out, 50_000, seed=1), full) < 0.25 * cell
    assert chamfer_l1(sample_mesh(scene_mesh, 50_000, seed=1), full) < 0.045


def test_colours_of_merged_vertices_are_averaged_heights(scene_mesh: TriangleMesh) -> None:
    out = decimate_to_budget(scene_mesh, 5000)
    # the height ramp is smooth: the mean colour of a cell's vertices is close to the colour at their mean height
    lo, hi = np.percentile(scene_mesh.vertices[:, 2], [2, 98])
    expected = height_colors(out.vertices, lo, hi)
    assert np.median(np.abs(out.vertex_colors - expected)) < 0.05


def test_within_budget_or_no_limit_returns_the_mesh_itself(scene_mesh: TriangleMesh) -> None:
    assert decimate_to_budget(scene_mesh, 0) is scene_mesh
    assert decimate_to_budget(scene_mesh, len(scene_mesh.faces)) is scene_mesh
    empty = TriangleMesh.empty()
    assert decimate_to_budget(empty, 10) is empty


def test_budget_holds_for_a_triangle_soup_without_colours() -> None:
    # 30k small triangles scattered in a 10 m cube: far from a sheet, the first cell is too small
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 10, (30_000, 1, 3)) + rng.normal(0, 0.05, (30_000, 3, 3))
    soup = TriangleMesh(corners.reshape(-1, 3).astype(np.float32), np.arange(90_000, dtype=np.int32).reshape(-1, 3),
                        np.zeros((0, 3), np.float32))
    for budget in (1000, 100):
        out = decimate_to_budget(soup, budget)
        assert 0 < len(out.faces) <= budget and len(out.vertex_colors) == 0


def test_a_mesh_without_area_still_fits_the_budget() -> None:
    # 10 collinear (zero-area) triangles: no cell can be derived from the area; the budget still holds
    vertices = np.repeat(np.arange(30, dtype=np.float32)[:, None], 3, axis=1)
    mesh = TriangleMesh(vertices, np.arange(30, dtype=np.int32).reshape(-1, 3), height_colors(vertices))
    out = decimate_to_budget(mesh, 4)
    assert len(out.faces) == 4 and out.faces.max() < len(out.vertices) == len(out.vertex_colors) == 12
