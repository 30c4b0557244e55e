"""``gen3d complete``: complete one scan file (KITTI .bin, .pcd, .ply, .npy, text) with a trained GCA model."""

from __future__ import annotations

import time
from pathlib import Path

from gen3d_ros.completion.inference import GCACompleter
from gen3d_ros.completion.mesh import height_colors


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
