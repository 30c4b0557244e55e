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
    "hedge",
    "grass",
    "bush",
    "pedestrian",
    "cyclist",
    "floor",
    "rack",
    "pallet",
    "crate",
)
"""Class names; a label is an index into this tuple."""

CLASS_IDS: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}

POROUS_CLASSES: tuple[str, ...] = ("vegetation", "hedge", "bush", "grass")
"""Classes built from many small primitives that beams partly pass through (canopies, hedges, bushes, grass):
their ground truth is a porous volume, not a closed shell."""


def check_class_names(names: tuple[str, ...] | list[str], what: str) -> tuple[str, ...]:
    """``names`` as a tuple after checking each is a class; ``ValueError`` naming the unknown ones otherwise."""
    unknown = [n for n in names if n not in CLASS_IDS]
    if unknown:
        raise ValueError(f"{what} has unknown classes {unknown}; known: {list(CLASS_NAMES)}")
    return tuple(str(n) for n in names)
