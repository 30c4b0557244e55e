"""Placement bookkeeping shared by every object kind: occupancy grids and the scene under construction.

:class:`SceneBuilder` holds what the ``place_*``/``add_*`` functions of the object modules share: the
config, the random stream of the current stage, the road and ground, the labelled mesh being built, two
occupancy grids (footprints on the ground, things overhead) and the list of placed objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gen3d_ros.sim.scene.config import SceneConfig
from gen3d_ros.sim.scene.footprints import rect_corners
from gen3d_ros.sim.scene.model import GroundModel, RoadPolyline, SceneObject
from gen3d_ros.sim.scene.primitives import MeshBuilder

_TERRAIN_BELOW_SIDEWALK_M = 0.02  # terrain sits this much below the sidewalk top (a small outer edge)
_GRID_CELL_M = 0.25  # occupancy grid used for placement


class OccupancyGrid:
    """2-D boolean grid over the scene square, for keeping object footprints apart.

    Footprints are rectangles in world xy (centre (2,) metres, yaw radians, half sizes (2,) metres); a cell is
    covered when its centre lies inside the rectangle.
    """

    def __init__(self, size_m: float, cell_m: float = _GRID_CELL_M) -> None:
        self.cell = cell_m
        self.half = size_m / 2.0
        self.n = int(math.ceil(size_m / cell_m))
        self.occ = np.zeros((self.n, self.n), dtype=bool)

    def _cells_rect(self, center: np.ndarray, yaw: float, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        half = np.maximum(np.asarray(half, dtype=np.float64), self.cell * 0.75)  # thin things still mark cells
        corners = rect_corners(center, yaw, half)
        lo = np.floor((corners.min(axis=0) + self.half) / self.cell).astype(int)
        hi = np.floor((corners.max(axis=0) + self.half) / self.cell).astype(int)
        lo = np.clip(lo, 0, self.n - 1)
        hi = np.clip(hi, 0, self.n - 1)
        ix, iy = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
        ix, iy = ix.ravel(), iy.ravel()
        pc = np.column_stack([ix, iy]) * self.cell - self.half + self.cell / 2.0 - center
        c, s = math.cos(yaw), math.sin(yaw)
        u = pc @ np.array([c, s])
        v = pc @ np.array([-s, c])
        inside = (np.abs(u) <= half[0]) & (np.abs(v) <= half[1])
        return ix[inside], iy[inside]

    def free(self, center: np.ndarray, yaw: float, half: np.ndarray, margin: float = 0.0) -> bool:
        """True when no cell of the rectangle grown by ``margin`` metres is marked."""
        ix, iy = self._cells_rect(center, yaw, np.asarray(half) + margin)
        return not bool(self.occ[ix, iy].any())

    def mark(self, center: np.ndarray, yaw: float, half: np.ndarray) -> None:
        """Marks the cells of the rectangle as occupied."""
        ix, iy = self._cells_rect(center, yaw, np.asarray(half))
        self.occ[ix, iy] = True


@dataclass
class SceneBuilder:
    """The scene under construction: what the placement functions of every object kind share."""

    cfg: SceneConfig
    rng: np.random.Generator
    road: RoadPolyline
    ground: GroundModel
    mesh: MeshBuilder  # the labelled triangles placed so far
    low: OccupancyGrid  # footprints on the ground
    high: OccupancyGrid  # things overhead: building volumes, tree crowns, pole tops
    objects: list[SceneObject]

    @property
    def half_road(self) -> float:
        """Half the asphalt width, metres."""
        return self.cfg.road_width_m / 2.0

    @property
    def corridor(self) -> float:
        """Half width of road + sidewalks."""
        return self.cfg.road_width_m / 2.0 + self.cfg.sidewalk_width_m

    def sidewalk_z(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) world xy -> (N,) sidewalk top height, metres."""
        return self.ground.height(xy) + self.cfg.curb_height_m

    def terrain_z(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) world xy -> (N,) terrain height, metres (just below the sidewalk top)."""
        return self.ground.height(xy) + self.cfg.curb_height_m - _TERRAIN_BELOW_SIDEWALK_M

    def inside(self, pts: np.ndarray, margin: float = 0.5) -> bool:
        """True when every world xy point (N, 2) lies ``margin`` metres inside the scene square."""
        return bool(np.all(np.abs(pts) <= self.cfg.size_m / 2.0 - margin))

    def s_range(self, margin: float = 1.0) -> tuple[float, float]:
        """Arc-length range where the centreline lies inside the scene square."""
        inside = np.all(np.abs(self.road.xy) <= self.cfg.size_m / 2.0 - margin, axis=1)
        s_in = self.road.s[inside]
        return float(s_in.min()), float(s_in.max())

    def frame(self, s: float, d: float, side_facing_out: int) -> tuple[np.ndarray, float]:
        """World xy at (s, d) and a yaw whose local +y points away from the road on side ``side_facing_out``."""
        p = self.road.point(s)[0] + self.road.normal(s)[0] * d
        yaw = float(self.road.heading(s)[0]) + (0.0 if side_facing_out > 0 else math.pi)
        return p, yaw

