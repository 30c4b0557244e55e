"""The semantic classes of generated scenes: a triangle's label is an index into :data:`CLASS_NAMES`.

A new object kind with a new class appends its name at the end (existing ids must not move: trained models
and stored datasets use them), and gets a reflectivity in ``sim/lidar.py::DEFAULT_REFLECTIVITY``.
"""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = (
    "terrain",
    "road",
    "lane_marking",
    "sidewalk",
    "curb",
    "building",
    "car",
    "pole",
    "traffic_sign",
    "trunk",
    "vegetation",
    "fence",
    "wall",
)
"""Class names; a label is an index into this tuple."""

CLASS_IDS: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}
