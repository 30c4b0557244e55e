"""Free-space carving: faces the sweep's rays pass through go, surfaces at the returns and grazing ground stay."""

from __future__ import annotations

import numpy as np


def _grid_mesh(corner: np.ndarray, u: np.ndarray, v: np.ndarray, n: int):
    """A square of (n x n) quads, two triangles each, spanned from ``corner`` by ``u`` and ``v`` (metres)."""
    from gen3d_ros.completion.mesh import TriangleMesh

    a, b = np.meshgrid(np.linspace(0, 1, n + 1), np.linspace(0, 1, n + 1), indexing="ij")
    vertices = corner + a.reshape(-1, 1) * u + b.reshape(-1, 1) * v
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    q = np.stack([idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]], -1).reshape(-1, 4)
    faces = np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]])
    return TriangleMesh(vertices.astype(np.float32), faces.astype(np.int32), np.zeros((len(vertices), 3), np.float32))


def _merge(*meshes):
    from gen3d_ros.completion.mesh import TriangleMesh

    offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
    return TriangleMesh(np.concatenate([m.vertices for m in meshes]),
                        np.concatenate([m.faces + o for m, o in zip(meshes, offsets)]),
                        np.concatenate([m.vertex_colors for m in meshes]))


def test_a_phantom_wall_in_front_of_the_returns_is_carved_and_the_real_surfaces_stay() -> None:
    from gen3d_ros.completion.carving import carve_free_space

    # sensor 1.7 m above a ground plane; a real wall 10 m ahead (its returns are the input); a phantom wall at 5 m
    ground = _grid_mesh(np.array([-2.0, -6.0, -1.7]), np.array([14.0, 0, 0]), np.array([0, 12.0, 0]), 40)
    wall = _grid_mesh(np.array([10.0, -4.0, -1.7]), np.array([0, 8.0, 0]), np.array([0, 0, 4.0]), 20)
    phantom = _grid_mesh(np.array([5.0, -1.0, -0.5]), np.array([0, 2.0, 0]), np.array([0, 0, 1.0]), 10)
    mesh = _merge(ground, wall, phantom)
    y, z = np.meshgrid(np.arange(-3.9, 4.0, 0.05), np.arange(-1.65, 2.3, 0.05))
    wall_returns = np.stack([np.full(y.size, 10.0), y.ravel(), z.ravel()], 1)
    az = np.radians(np.arange(-40, 40, 0.5))
    r = np.arange(4.0, 9.0, 0.25)  # ground returns, grazing at the far end, 2 cm range noise
    rr, aa = np.meshgrid(r, az)
    ground_returns = np.stack([rr * np.cos(aa), rr * np.sin(aa), np.full(rr.shape, -1.7)], -1).reshape(-1, 3)
    ground_returns *= 1 + np.random.default_rng(0).normal(0, 0.02, (len(ground_returns), 1)) / rr.reshape(-1, 1)
    keep = carve_free_space(mesh, np.concatenate([wall_returns, ground_returns]))
    n_ground, n_wall = len(ground.faces), len(wall.faces)
    assert keep[:n_ground].all() and keep[n_ground:n_ground + n_wall].all()
    assert not keep[n_ground + n_wall:].any()  # every phantom face lies on some ray's path (0.1 m faces, 5 cm rays)
    assert carve_free_space(mesh, np.zeros((0, 3))).all()
