"""Apply a trained GCA kernel to a real or simulated scan: points (sensor frame) -> completed voxels -> mesh."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from gen3d_ros.completion.classical import TriangleMesh, height_colors
from gen3d_ros.completion.gca import complete
from gen3d_ros.completion.hgca_coarse import PlannedGCATransition, complete_planned
from gen3d_ros.completion.training import load_checkpoint, planner_points
from gen3d_ros.completion.voxelize import voxel_centers
from gen3d_ros.sim.dataset import CompletionDatasetConfig


def default_checkpoint() -> Path:
    """The GCA model committed with the package (``gen3d train-completion --preset demo``; see its model card)."""
    path = Path(__file__).resolve().parent.parent / "models" / "gca_demo.pt"
    if not path.is_file():
        raise FileNotFoundError(f"the packaged demo model {path} is missing; train one with "
                                "`gen3d train-completion --preset demo -o runs/gca_demo` and pass its model.pt")
    return path


class GCACompleter:
    """A loaded GCA model and the grid it was trained on.

    The grid is a box around the sensor: ``origin`` (3,) metres (corner of voxel 0), ``grid_shape`` (3,)
    voxels of ``voxel_size`` metres, in the sensor frame (x forward, z up, sensor at the origin).

    A planned checkpoint (hGCA coarse stage, ``planner_config`` in the file) loads as a
    :class:`~gen3d_ros.completion.hgca_coarse.PlannedGCATransition` (``planned`` is True); it plans from the voxel
    centres of the input cells before each chain, as in training.
    """

    def __init__(self, checkpoint: str | Path | Mapping, *, device: str = "cpu", steps: int | None = None,
                 backend: str | None = None) -> None:
        from gen3d_ros.devices import check_device

        if steps is not None and steps < 1:
            raise ValueError(f"GCA steps must be at least 1 (None: the model's default), got {steps}")
        from gen3d_ros.checkpoints import checkpoint_contents

        self.model, self.checkpoint = load_checkpoint(checkpoint, device=check_device(device), backend=backend)
        name = "<bundle>" if isinstance(checkpoint, Mapping) else str(checkpoint)
        with checkpoint_contents(name, "GCA"):
            data = CompletionDatasetConfig.from_dict(self.checkpoint["train_config"]["data"])
            self.voxel_size = float(data.voxel_size_m)
            self.origin = np.asarray(data.origin, np.float64)
            self.grid_shape = np.asarray(data.grid_shape, np.int64)
        self.steps = steps
        self.device = device
        name = "bundle" if isinstance(checkpoint, Mapping) else Path(checkpoint).name
        self.model_id = f"gca:{name}"
        self.planned = isinstance(self.model, PlannedGCATransition)

    def voxelize(self, points: np.ndarray) -> np.ndarray:
        """(N,3) metres, sensor frame -> (M,3) int32 unique cells inside the grid."""
        idx = np.floor((np.asarray(points, np.float64) - self.origin) / self.voxel_size).astype(np.int64)
        inside = ((idx >= 0) & (idx < self.grid_shape)).all(1)
        return np.unique(idx[inside], axis=0).astype(np.int32)

    def complete_cells(self, cells: np.ndarray, *, seed: int = 0, steps: int | None = None) -> np.ndarray:
        """Run the automaton from ``cells`` (M,3) int32; returns the final state (K,3) int32."""
        s0 = torch.cat([torch.zeros((len(cells), 1), dtype=torch.int32), torch.from_numpy(cells.astype(np.int32))], 1)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        kwargs = dict(steps=steps if steps is not None else self.steps,
                      bounds=((0, 0, 0), tuple(int(v) for v in self.grid_shape)), generator=gen)
        if self.planned:
            points = [planner_points(cells, self.voxel_size, self.origin)]
            extent = self.grid_shape.astype(np.float64) * self.voxel_size
            out = complete_planned(self.model, points, self.origin, extent, s0, **kwargs)
        else:
            out = complete(self.model, s0, **kwargs)
        return out.final[:, 1:].numpy().astype(np.int32)

    def centers(self, cells: np.ndarray) -> np.ndarray:
        """(K,3) int32 cells -> (K,3) float32 voxel centres, metres, sensor frame."""
        return voxel_centers(cells, self.voxel_size, self.origin).astype(np.float32)


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


def complete_file(input_path: Path, output: Path, checkpoint: Path, *, samples: int = 1, steps: int | None = None,
                  seed: int = 0, device: str = "cpu", force: bool = False) -> dict:
    """``gen3d complete``: read a scan, complete it ``samples`` times, write PLY point clouds of voxel centres."""
    from gen3d_ros.completion.metrics import total_mutual_difference
    from gen3d_ros.io.pointfiles import read_points, write_ply
    from gen3d_ros.outputs import prepare_output

    start = time.perf_counter()
    output = Path(output)
    outputs = [output] if samples == 1 else [output.with_name(f"{output.stem}_{k}{output.suffix or '.ply'}")
                                             for k in range(samples)]
    for path in outputs:  # before any work: not an input, writable, replaced only if ours and forced
        prepare_output(path, inputs=[input_path, checkpoint], others=[o for o in outputs if o != path], force=force)
    cloud = read_points(input_path)
    if len(cloud.points) == 0:
        raise ValueError(f"{input_path} has no finite points ({cloud.dropped} dropped)")
    completer = GCACompleter(checkpoint, device=device, steps=steps)
    cells = completer.voxelize(cloud.points)
    if len(cells) == 0:
        raise ValueError(f"no point of {input_path} lies in the model's grid: origin {completer.origin} m, "
                         f"{completer.grid_shape} voxels of {completer.voxel_size} m around the sensor")
    results, centres = [], []
    for k, path in enumerate(outputs):
        out = completer.complete_cells(cells, seed=seed + k)
        pts = completer.centers(out)
        write_ply(path, pts, colors=height_colors(pts))
        results.append(len(out))
        centres.append(pts)
    tmd = total_mutual_difference(centres) if samples > 1 else None
    return {"outputs": [str(p) for p in outputs], "cells": results, "input_points": len(cloud.points),
            "input_cells": len(cells), "voxel_size": completer.voxel_size, "tmd": tmd,
            "seconds": time.perf_counter() - start}
