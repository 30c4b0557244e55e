"""Data of the GPU-trained completion models: randomised sensors over the richer world, with held-out classes.

``RICH_DATA`` is the coarse (0.4 m) grid's :class:`~gen3d_ros.sim.dataset.CompletionDatasetConfig`; the fine
stage and the autoencoder use :func:`scaled` copies of it (0.2 m, the same origin). Sensor frame, gravity-aligned,
the sensor at its drawn height (1.2-2.5 m) above the road: z in [-3.6, 8.4) m covers the ground under the highest
mounting on a 6 degree slope at 12 m, and facades and canopies up to ~10 m above the road (real 128-beam sweeps:
11 % of an OS-1's returns came from above the earlier 4.4 m ceiling, ``bench/results/real_lidar.json``). ``train_config.data.sensor_height_m`` = [1.2, 2.5]: the runtime's alignment
(``completion/alignment.py::model_sensor_height``) shifts real sweeps so their ground lies at its middle, -1.85 m.

``HELDOUT_CLASSES`` never appear in training scenes (``scene.exclude_classes``); the benchmark reports scenes with
them separately (``bench/completion_quality.py --heldout``).
"""

from __future__ import annotations

import copy
from typing import Any

HELDOUT_CLASSES: tuple[str, ...] = ("cyclist", "hedge")
"""Object classes held out of the GPU models' training data: a thin moving object and a porous one."""

RICH_DATA: dict[str, Any] = {
    "voxel_size_m": 0.4, "half_extent_m": [12.0, 12.0], "z_range_m": [-3.6, 8.4],
    "sensor": "randomized", "sensor_height_m": [1.2, 2.5], "tilt_max_deg": 5.0, "alignment_residual_deg": 0.5,
    "scene": {"preset": "rich", "size_m": 50.0, "exclude_classes": list(HELDOUT_CLASSES)},
    "warehouse_fraction": 0.15, "augment": True, "length": 200_000, "cache_size": 8,
}


def scaled(data: dict[str, Any], scale: int, half_extent_m: tuple[float, float] | None = None,
           surface_spacing_m: float | None = None) -> dict[str, Any]:
    """``data`` on a grid ``scale`` times finer (same origin), optionally cropped and with a surface spacing."""
    out = copy.deepcopy(data)
    out["voxel_size_m"] = float(data["voxel_size_m"]) / scale
    if half_extent_m is not None:
        out["half_extent_m"] = list(half_extent_m)
    if surface_spacing_m is not None:
        out["surface_spacing_m"] = float(surface_spacing_m)
    return out
