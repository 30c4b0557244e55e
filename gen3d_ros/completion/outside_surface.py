"""The observed surface outside a learned model's completion volume, meshed beside the completion.

A learned model completes only inside its grid (the packaged models: 4.4 m above the level sensor frame, ±25.6 or
±51.2 m); a real sweep also sees facades above that ceiling and streets beyond it (11-21 % of an OS-1's returns,
``bench/results/real_lidar.json``). Those points are meshed without completion, as ``classical-poisson`` does, and
appended after the model's own faces (``CompletionResult.completed_faces``).

open3d's Poisson holds the GIL for its whole run (a 3.2 s stall of a waiting thread for a 3.8 s fit, measured), so a
thread cannot hide its 0.5-3 s behind the model. :class:`OutsideSurfaceWorker` runs it in one spawned process per
Python process instead, started on first use; the model completes on the caller's thread (and the GPU) meanwhile.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np
from scipy.spatial import cKDTree

from gen3d_ros.completion.classical import poisson_mesh
from gen3d_ros.completion.mesh import TriangleMesh, height_colors

OUTSIDE_BAND_M = 0.8
"""Metres inside the completion volume whose points also go into the Poisson fit (two coarse voxels): its surface
then reaches the volume's faces instead of stopping short of them."""

OUTSIDE_MAX_DIST_M = 0.6
"""Faces of the outside surface farther than this from every return are dropped (metres): Poisson closes sparse
returns above the ceiling into sheets spanning the scene (the demo's VLP-32 street: tree tops), which no ray saw.
0.6 m keeps a facade between two rings ~1 m apart; farther out rings spread, so the bound grows with the range
(``OUTSIDE_MAX_DIST_PER_M`` of the horizontal distance from the sensor)."""

OUTSIDE_MAX_DIST_PER_M = 0.03
"""The bound's growth with range (m per m): 1.2 m at 40 m, about two ring spacings of a 32-ring sensor there."""


def band_points(points: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
    """The points (N, 3) the outside surface is fitted to: outside the box ``[lo, hi)`` (metres, the model frame)
    or within ``OUTSIDE_BAND_M`` of its faces; None when no point lies outside the box."""
    if not ((points < lo) | (points >= hi)).any(1).any():
        return None
    return points[((points < lo + OUTSIDE_BAND_M) | (points >= hi - OUTSIDE_BAND_M)).any(1)]


def outside_surface(points: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, voxel_size: float, depth: int,
                    density_quantile: float) -> tuple[TriangleMesh | None, float]:
    """Poisson (:func:`poisson_mesh`) of ``points`` (from :func:`band_points`), cut to the faces whose centroid lies
    outside ``[lo, hi)`` and within ``OUTSIDE_MAX_DIST_M`` of a point, and the milliseconds it took; None when no
    face is left."""
    t0 = time.perf_counter()
    mesh = poisson_mesh(points, voxel_size=voxel_size, depth=depth, density_quantile=density_quantile)
    centroid = mesh.vertices[mesh.faces].mean(1) if len(mesh.faces) else np.zeros((0, 3))
    keep = ((centroid < lo) | (centroid >= hi)).any(1)
    if keep.any():  # Poisson balloons over sparse returns (tree tops, far streets): only faces near a return
        kept = centroid[keep]
        near, _ = cKDTree(points).query(kept, distance_upper_bound=OUTSIDE_MAX_DIST_M * 4)
        limit = np.maximum(OUTSIDE_MAX_DIST_M, OUTSIDE_MAX_DIST_PER_M * np.linalg.norm(kept[:, :2], axis=1))
        keep[np.flatnonzero(keep)[~(near <= limit)]] = False
    faces = mesh.faces[keep]
    surface = TriangleMesh(mesh.vertices, faces, mesh.vertex_colors) if len(faces) else None
    return surface, (time.perf_counter() - t0) * 1e3


def append_surface(mesh: TriangleMesh, surface: TriangleMesh | None) -> tuple[TriangleMesh, int]:
    """``mesh`` followed by ``surface`` (None: nothing to add), and ``mesh``'s face count."""
    if surface is None:
        return mesh, len(mesh.faces)
    n = len(mesh.vertices)
    vertices = np.concatenate([mesh.vertices, surface.vertices])
    colors = (np.concatenate([mesh.vertex_colors, surface.vertex_colors])
              if len(mesh.vertex_colors) == n and len(surface.vertex_colors) == len(surface.vertices)
              else height_colors(vertices))
    faces = np.concatenate([mesh.faces, surface.faces + n]).astype(np.int32)
    return TriangleMesh(vertices.astype(np.float32), faces, colors.astype(np.float32)), len(mesh.faces)


class OutsideSurfaceJob:
    """One :func:`outside_surface` call started by :meth:`OutsideSurfaceWorker.submit`; :meth:`result` waits."""

    def __init__(self, future: Future | None, args: tuple, kwargs: dict) -> None:
        self._future, self._args, self._kwargs = future, args, kwargs

    def result(self) -> tuple[TriangleMesh | None, float]:
        """``(surface or None, ms)``; a worker that died (killed, out of memory, or unable to start: a spawned
        process re-imports ``__main__`` by path, which a script on stdin lacks) is given up for this Python
        process and the surface is computed here."""
        if self._future is not None:
            try:
                return self._future.result()
            except BrokenProcessPool:
                OutsideSurfaceWorker.give_up()
        return outside_surface(*self._args, **self._kwargs)


class OutsideSurfaceWorker:
    """:func:`outside_surface` in a spawned worker process shared by the whole Python process (a node, the CLI,
    a test session). A daemonic process (the nodes' stage processes, which multiprocessing forbids children)
    computes it on the caller's thread (in :meth:`OutsideSurfaceJob.result`)."""

    _pool: ProcessPoolExecutor | None = None
    _broken = False
    _lock = threading.Lock()

    @classmethod
    def _executor(cls) -> ProcessPoolExecutor | None:
        if mp.current_process().daemon:  # a node's stage process: daemonic processes may not have children
            return None
        with cls._lock:
            if cls._pool is None and not cls._broken:
                # spawn, not fork: the caller may hold a CUDA context and rclpy threads
                cls._pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"))
                atexit.register(cls._pool.shutdown, wait=False, cancel_futures=True)
            return cls._pool

    @classmethod
    def give_up(cls) -> None:
        """No worker process from now on in this Python process (it failed once)."""
        with cls._lock:
            cls._broken = True
            if cls._pool is not None:
                cls._pool.shutdown(wait=False, cancel_futures=True)
                cls._pool = None

    def submit(self, points: np.ndarray, lo: np.ndarray, hi: np.ndarray, **poisson: float) -> OutsideSurfaceJob:
        """Start meshing ``points`` (:func:`band_points`) outside ``[lo, hi)``; ``poisson``: the
        :func:`outside_surface` keywords."""
        args = (points, lo, hi)
        executor = self._executor()
        future = None
        if executor is not None:
            try:
                future = executor.submit(outside_surface, *args, **poisson)
            except (BrokenProcessPool, RuntimeError):
                self.give_up()
        return OutsideSurfaceJob(future, args, poisson)
