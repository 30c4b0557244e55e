"""Test doubles of the hGCA ``SceneCompleter``: the coarse result at once, the mesh ``delay_s`` later.

They keep the real contract (``complete(points, *, seed=None, on_coarse=None)`` returning a ``SceneCompletion``)
without a model, so the streaming path (processor -> stage -> stage process -> node, bag mode) is tested in
seconds. ``FakeHGCAStage`` / ``FailingFakeHGCAStage`` are ``CompletionStage`` s built on them, importable by a
stage process child (``tests/`` is on ``sys.path``: conftest's folder, which ``spawn`` passes on).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from gen3d_ros.completion.mesh import TriangleMesh, height_colors
from gen3d_ros.completion.processor import CompletionConfig
from gen3d_ros.completion.voxelize import voxel_centers
from gen3d_ros.pipeline.completion import CompletionStage

COARSE_VOXEL = 0.4
FINE_VOXEL = 0.2
ORIGIN = np.array([-12.0, -12.0, -3.0])


def grid_mesh(n: int, size_m: float = 16.0, z_m: float = -1.5) -> TriangleMesh:
    """A flat square of ``2 (n - 1)^2`` triangles, ``size_m`` wide, at height ``z_m`` (metres), height-coloured."""
    ticks = np.linspace(-size_m / 2, size_m / 2, n)
    x, y = np.meshgrid(ticks, ticks, indexing="ij")
    vertices = np.stack([x.ravel(), y.ravel(), np.full(n * n, z_m)], 1).astype(np.float32)
    vertices[:, 2] += 0.3 * np.sin(vertices[:, 0]) * np.cos(vertices[:, 1])  # not flat: colours vary
    i = np.arange(n - 1)[:, None] * n + np.arange(n - 1)[None, :]
    a, b, c, d = i.ravel(), i.ravel() + 1, i.ravel() + n, i.ravel() + n + 1
    faces = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)]).astype(np.int32)
    return TriangleMesh(vertices, faces, height_colors(vertices))


class FakeSceneCompleter:
    """``complete`` voxelises the points at :data:`COARSE_VOXEL` (the "coarse completion"), hands their centres
    to ``on_coarse``, sleeps ``delay_s`` (the fine stage and the mesh), then returns a :func:`grid_mesh` of
    ``mesh_n`` vertices a side, or raises RuntimeError when ``fail_after_coarse``."""

    model_id = "hgca:fake"

    def __init__(self, delay_s: float = 0.0, *, fail_after_coarse: bool = False, mesh_n: int = 80) -> None:
        self.delay_s, self.fail_after_coarse, self.mesh_n = delay_s, fail_after_coarse, mesh_n
        self.calls = 0

    def _completion(self, points: np.ndarray) -> object:
        from gen3d_ros.completion.inference import SceneCompletion

        cells = np.unique(np.floor((points - ORIGIN) / COARSE_VOXEL).astype(np.int32), axis=0)
        fine = np.unique(np.floor((points - ORIGIN) / FINE_VOXEL).astype(np.int32), axis=0)
        return SceneCompletion(mesh=grid_mesh(self.mesh_n), fine_cells=fine, coarse_cells=cells, input_cells=fine,
                               fine_voxel=FINE_VOXEL, coarse_voxel=COARSE_VOXEL, origin=ORIGIN, steps=(3, 4),
                               input_points=len(points), timings_ms={"coarse": 1.0, "fine": 1e3 * self.delay_s})

    def complete(self, points: np.ndarray, *, seed: int | None = None, on_coarse=None) -> object:
        self.calls += 1
        out = self._completion(np.asarray(points, np.float64))
        if on_coarse is not None:
            on_coarse(voxel_centers(out.coarse_cells, COARSE_VOXEL, ORIGIN))
        time.sleep(self.delay_s)
        if self.fail_after_coarse:
            raise RuntimeError("the fine stage failed (test double)")
        return out


class NonStreamingCompleter(FakeSceneCompleter):
    """A completer of the interface before issue 12: ``complete`` takes no ``on_coarse``."""

    def complete(self, points: np.ndarray, *, seed: int | None = None) -> object:  # type: ignore[override]
        return super().complete(points, seed=seed)


class FakeHGCAStage(CompletionStage):
    """``CompletionStage`` with method hgca on a :class:`FakeSceneCompleter` of :attr:`delay_s`."""

    delay_s = 1.5
    fail_after_coarse = False

    def __init__(self, config: CompletionConfig | None = None) -> None:
        config = dataclasses.replace(config or CompletionConfig(), method="hgca")
        super().__init__(config, completer=FakeSceneCompleter(self.delay_s,
                                                              fail_after_coarse=self.fail_after_coarse))


class FailingFakeHGCAStage(FakeHGCAStage):
    """:class:`FakeHGCAStage` whose completion fails after its coarse result."""

    delay_s = 0.2
    fail_after_coarse = True
