"""What a procedural street scene contains (:class:`SceneConfig`), validated on construction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from gen3d_ros.config import known_fields, plain_types
from gen3d_ros.sim.scene.classes import check_class_names

BALCONY_DEPTH_M = 1.0  # balconies reach this far in front of a facade, so setbacks must leave room


@dataclass
class SceneConfig:
    """What a procedural street scene contains. Lengths in metres, angles in degrees.

    Object counts are targets: placement tries many candidate positions and places fewer objects when the
    scene has no free room left (e.g. many buildings in a small scene).
    """

    size_m: float = 50.0
    """Edge of the square scene, centred on the world origin."""
    road_width_m: float = 7.0
    """Asphalt width, curb to curb (two lanes)."""
    sidewalk_width_m: float = 2.5
    curb_height_m: float = 0.15
    max_slope_deg: float = 3.0
    """Upper bound of the ground gradient anywhere (plane tilt + undulation)."""
    undulation_amplitude_m: float = 0.3
    """Upper bound of the summed amplitude of the ground's sinusoidal undulation."""
    road_curve_amplitude_m: float = 4.0
    """Largest lateral amplitude of the road's sinusoidal bend (0: always straight)."""
    straight_road_probability: float = 0.4
    n_buildings: int = 8
    n_cars: int = 8
    n_poles: int = 6
    """Street lights (pole + arm over the road + lamp)."""
    n_signs: int = 4
    n_trees: int = 10
    n_fences: int = 3
    n_walls: int = 3
    building_height_m: tuple[float, float] = (6.0, 24.0)
    building_width_m: tuple[float, float] = (7.0, 18.0)
    """Building length along the road."""
    building_depth_m: tuple[float, float] = (7.0, 14.0)
    building_setback_m: tuple[float, float] = (1.5, 5.0)
    """Gap between the sidewalk's outer edge and a building facade."""
    facade_detail: bool = True
    """Window recesses, balconies and roof parapets on the road-facing facades."""
    terrain_resolution_m: float = 0.5
    """Grid spacing of the terrain heightfield (reduced automatically for narrow sidewalks)."""
    # --- the richer world (all off by default: existing configs and seeds give the scenes they always gave)
    kind: str = "street"
    """``"street"`` or ``"warehouse"`` (an indoor hall with racks, pallets and crates along a central aisle)."""
    porous_canopies: bool = False
    """Tree crowns as clouds of small leaf clusters the beams partly pass through, instead of closed ellipsoids."""
    n_hedges: int = 0
    n_bushes: int = 0
    grass_verges: bool = False
    """Grass tufts on the terrain strips beside the sidewalks."""
    n_pedestrians: int = 0
    n_cyclists: int = 0
    vehicle_variety: bool = False
    """Also compact cars, pickups and buses (3.4-12 m), besides cars, vans and trucks."""
    overhang_probability: float = 0.0
    """Share of buildings whose upper floors overhang the facade by 0.6-1.0 m (arcades, cantilevers)."""
    parking_lot_probability: float = 0.0
    """Probability of one parking lot (asphalt, bay lines, rows of parked vehicles) beside the road."""
    exclude_classes: tuple[str, ...] = ()
    """Classes left out of the scene (held-out classes of a training set): no object of them is placed."""

    def __post_init__(self) -> None:
        self.building_height_m = _pair(self.building_height_m, "building_height_m")
        self.building_width_m = _pair(self.building_width_m, "building_width_m")
        self.building_depth_m = _pair(self.building_depth_m, "building_depth_m")
        self.building_setback_m = _pair(self.building_setback_m, "building_setback_m")
        corridor = self.road_width_m + 2.0 * self.sidewalk_width_m
        if self.road_width_m < 3.0:
            raise ValueError(f"road_width_m={self.road_width_m} is too narrow; use at least 3.0 m")
        if self.sidewalk_width_m < 0.5:
            raise ValueError(f"sidewalk_width_m={self.sidewalk_width_m} must be at least 0.5 m")
        if not 0.0 <= self.curb_height_m <= 0.5:
            raise ValueError(f"curb_height_m={self.curb_height_m} must lie in [0, 0.5] m")
        if self.size_m < corridor + 10.0:
            raise ValueError(
                f"size_m={self.size_m} leaves no room beside a {corridor:.1f} m road+sidewalks corridor; "
                f"use size_m >= {corridor + 10.0:.1f}"
            )
        if not 0.0 <= self.max_slope_deg < 20.0:
            raise ValueError(f"max_slope_deg={self.max_slope_deg} must lie in [0, 20)")
        if self.undulation_amplitude_m < 0 or self.road_curve_amplitude_m < 0:
            raise ValueError("undulation_amplitude_m and road_curve_amplitude_m must be >= 0")
        if self.terrain_resolution_m <= 0:
            raise ValueError(f"terrain_resolution_m={self.terrain_resolution_m} must be positive")
        for f in fields(self):
            if f.name.startswith("n_") and int(getattr(self, f.name)) < 0:
                raise ValueError(f"{f.name}={getattr(self, f.name)} must be >= 0")
        if self.kind not in ("street", "warehouse"):
            raise ValueError(f"kind={self.kind!r} is not 'street' or 'warehouse'")
        if not (0.0 <= self.overhang_probability <= 1.0 and 0.0 <= self.parking_lot_probability <= 1.0):
            raise ValueError("overhang_probability and parking_lot_probability must lie in [0, 1]")
        self.exclude_classes = check_class_names(tuple(self.exclude_classes), "exclude_classes")
        if self.building_setback_m[0] < BALCONY_DEPTH_M + 0.2:
            raise ValueError(
                f"building_setback_m={self.building_setback_m} must start at >= {BALCONY_DEPTH_M + 0.2} m "
                "(room for balconies)"
            )


    def to_dict(self) -> dict[str, object]:
        """Plain types only (tuples as lists), ready for YAML/JSON."""
        return plain_types({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> SceneConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` naming them. A ``preset`` key
        (``"rich"``, ``"warehouse"``) starts from :data:`SCENE_PRESETS` and the other keys override it."""
        data = dict(data)
        name = data.pop("preset", None)
        if name is not None:
            if name not in SCENE_PRESETS:
                raise ValueError(f"unknown scene preset {name!r}; choose from {sorted(SCENE_PRESETS)}")
            data = {**SCENE_PRESETS[str(name)], **data}
        return cls(**known_fields(cls, data))


SCENE_PRESETS: dict[str, dict[str, object]] = {
    # The richer world of issue 13: porous vegetation, hedges, grass, people, cyclists, vehicles of many sizes,
    # overhangs, parking lots, steeper slopes. Counts sized for the 50 m square.
    "rich": {"porous_canopies": True, "n_hedges": 3, "n_bushes": 6, "grass_verges": True, "n_pedestrians": 6,
             "n_cyclists": 2, "vehicle_variety": True, "overhang_probability": 0.3, "parking_lot_probability": 0.3,
             "max_slope_deg": 6.0, "undulation_amplitude_m": 0.5},
    "warehouse": {"kind": "warehouse", "n_pedestrians": 3},
}


def _pair(value: Sequence[float], name: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in value)
    if not 0 < lo <= hi:
        raise ValueError(f"{name} must be (lo, hi) with 0 < lo <= hi, got {value!r}")
    return (lo, hi)

