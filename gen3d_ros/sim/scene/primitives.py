"""Closed mesh primitives (prism, box, cylinder, ellipsoid) and the labelled mesh they are collected into.

Every primitive is a ``Mesh``: (V, 3) float64 vertices in metres, in the primitive's own frame, and (F, 3)
int64 triangles, counter-clockwise seen from outside.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from gen3d_ros.sim.scene.transforms import transform_points

Mesh = tuple[np.ndarray, np.ndarray]
"""(V, 3) float64 vertices and (F, 3) int64 triangles."""


def prism(poly: np.ndarray, z0: float, z1: float, *, bottom: bool = True, top: bool = True) -> Mesh:
    """Extrudes a convex counter-clockwise polygon (P, 2) from z0 to z1; outward-facing triangles."""
    p = poly.shape[0]
    v = np.concatenate([np.column_stack([poly, np.full(p, z0)]), np.column_stack([poly, np.full(p, z1)])])
    i = np.arange(p)
    j = (i + 1) % p
    faces = [np.stack([i, j, p + j], axis=1), np.stack([i, p + j, p + i], axis=1)]
    k = np.arange(1, p - 1)
    if top:
        faces.append(np.stack([np.full(p - 2, p), p + k, p + k + 1], axis=1))
    if bottom:
        faces.append(np.stack([np.zeros(p - 2, int), k + 1, k], axis=1))
    return v, np.concatenate(faces).astype(np.int64)


def box(lo: Sequence[float], hi: Sequence[float], *, bottom: bool = True) -> Mesh:
    """Axis-aligned box [lo, hi] (3,) as (8, 3) vertices and 12 (or 10 without bottom) triangles."""
    x0, y0, z0 = lo
    x1, y1, z1 = hi
    poly = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)
    return prism(poly, z0, z1, bottom=bottom)


def circle(radius: float, n: int) -> np.ndarray:
    """(n, 2) vertices of a regular n-gon of circumradius ``radius`` (metres), counter-clockwise from +x."""
    a = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    return radius * np.column_stack([np.cos(a), np.sin(a)])


def cylinder(radius: float, z0: float, z1: float, n: int = 10, *, bottom: bool = True) -> Mesh:
    """Upright n-gon cylinder of ``radius`` from z0 to z1."""
    return prism(circle(radius, n), z0, z1, bottom=bottom)


def ellipsoid(radii: Sequence[float], n_lat: int = 7, n_lon: int = 12) -> Mesh:
    """UV ellipsoid centred at the origin, semi-axes ``radii`` (3,)."""
    theta = np.linspace(0.0, math.pi, n_lat + 1)[1:-1]  # polar angle, poles excluded
    phi = np.linspace(0.0, 2.0 * math.pi, n_lon, endpoint=False)
    st, ct = np.sin(theta)[:, None], np.cos(theta)[:, None]
    ring = np.stack([st * np.cos(phi), st * np.sin(phi), np.broadcast_to(ct, (theta.size, n_lon))], axis=-1)
    v = np.concatenate([[[0.0, 0.0, 1.0]], ring.reshape(-1, 3), [[0.0, 0.0, -1.0]]]) * np.asarray(radii)
    n_rings = theta.size
    faces = []
    j = np.arange(n_lon)
    jn = (j + 1) % n_lon
    faces.append(np.stack([np.zeros(n_lon, int), 1 + j, 1 + jn], axis=1))
    for r in range(n_rings - 1):
        a, b = 1 + r * n_lon, 1 + (r + 1) * n_lon
        faces.append(np.stack([a + j, b + j, b + jn], axis=1))
        faces.append(np.stack([a + j, b + jn, a + jn], axis=1))
    last = 1 + (n_rings - 1) * n_lon
    south = v.shape[0] - 1
    faces.append(np.stack([np.full(n_lon, south), last + jn, last + j], axis=1))
    return v, np.concatenate(faces).astype(np.int64)


class MeshBuilder:
    """Accumulates labelled triangle soups; one concatenation at the end."""

    def __init__(self) -> None:
        self._v: list[np.ndarray] = []
        self._f: list[np.ndarray] = []
        self._l: list[np.ndarray] = []
        self._n = 0

    def add(self, vf: Mesh, label: int | np.ndarray, T: np.ndarray | None = None) -> None:
        """Adds vertices (V, 3) and triangles (F, 3) with one label or (F,) labels, moved by ``T`` (4, 4)."""
        v, f = vf
        if f.shape[0] == 0:
            return
        self._v.append(transform_points(np.asarray(v, dtype=np.float64), T))
        self._f.append(np.asarray(f, dtype=np.int64) + self._n)
        self._l.append(np.broadcast_to(np.asarray(label, dtype=np.int32), (f.shape[0],)).copy())
        self._n += v.shape[0]

    def build(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(V, 3) float64 vertices, (F, 3) int32 triangles and (F,) int32 labels of everything added."""
        return (np.concatenate(self._v), np.concatenate(self._f).astype(np.int32), np.concatenate(self._l))

