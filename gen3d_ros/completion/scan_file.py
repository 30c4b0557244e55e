"""``gen3d complete``: complete one scan file (KITTI .bin, .pcd, .ply, .npy, text) with any method of the
completion node (:class:`~gen3d_ros.completion.processor.CompletionProcessor`, the same configuration)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from gen3d_ros.completion.processor import CompletionConfig, CompletionProcessor

#: what ``complete_file`` writes: the completed mesh (.ply, .obj, .glb) or the completed voxels' centres (.ply)
WHATS = ("mesh", "voxels")


def sample_paths(output: Path, samples: int) -> list[Path]:
    """``output`` for one sample, ``OUT_k.suffix`` for each of ``samples`` > 1."""
    output = Path(output)
    if samples == 1:
        return [output]
    return [output.with_name(f"{output.stem}_{k}{output.suffix or '.ply'}") for k in range(samples)]


def complete_file(input_path: Path, output: Path, config: CompletionConfig, *, samples: int = 1,
                  what: str = "mesh", force: bool = False, T_base_cloud: np.ndarray | None = None) -> dict[str, Any]:
    """Read a scan (points in the sensor frame, metres), complete it ``samples`` times with ``config`` (seeds
    ``config.seed + k``), write each result (``what``: mesh or voxel centres, in the scan's frame).

    Returns a report: outputs, voxels and triangles per sample, input points, voxel size, the alignment used,
    the total mutual difference of the samples' voxels (m, None for one sample), seconds.
    Raises ValueError / FileNotFoundError (user errors) for unreadable inputs, bad outputs, missing checkpoints.
    """
    from gen3d_ros.completion.metrics import total_mutual_difference
    from gen3d_ros.completion.udf_mesh import MESH_SUFFIXES, save_mesh
    from gen3d_ros.io.pointfiles import read_points, write_ply
    from gen3d_ros.outputs import prepare_output

    start = time.perf_counter()
    if what not in WHATS:
        raise ValueError(f"what must be one of {WHATS}, got {what!r}")
    suffixes = MESH_SUFFIXES if what == "mesh" else (".ply",)
    outputs = sample_paths(output, samples)
    for path in outputs:  # before any work: not an input, writable, replaced only if ours and forced, known format
        prepare_output(path, inputs=[input_path, config.checkpoint or None],
                       others=[o for o in outputs if o != path], force=force)
        if path.suffix.lower() not in suffixes:
            raise ValueError(f"{path}: {what} files end in {', '.join(suffixes)}")
    config.check_resources()
    cloud = read_points(input_path)
    if len(cloud.points) == 0:
        raise ValueError(f"{input_path} has no finite points ({cloud.dropped} dropped)")
    processor = CompletionProcessor(config)
    report: dict[str, Any] = {"outputs": [str(p) for p in outputs], "voxels": [], "triangles": [],
                              "input_points": len(cloud.points), "method": config.method,
                              "model": processor.model_id}
    centres = []
    for path in outputs:
        result = processor.process(cloud.points, dropped=cloud.dropped, T_base_cloud=T_base_cloud)
        if what == "mesh":
            save_mesh(path, result.mesh)
        else:
            write_ply(path, result.voxels, colors=_height_colors(result.voxels))
        report["voxels"].append(len(result.voxels))
        report["triangles"].append(len(result.mesh.faces))
        report["voxel_size"] = result.voxel_size
        report["alignment"] = result.alignment.diagnostics() if result.alignment is not None else None
        centres.append(result.voxels)
    report["tmd"] = total_mutual_difference(centres) if samples > 1 else None
    report["seconds"] = time.perf_counter() - start
    return report


def _height_colors(points: np.ndarray) -> np.ndarray:
    from gen3d_ros.completion.mesh import height_colors

    return height_colors(points)
