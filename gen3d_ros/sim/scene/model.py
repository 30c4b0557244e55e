"""What a generated scene is: the analytic ground, the road centreline, placed objects and the labelled mesh.

World frame: metres, z up, the scene square centred on the origin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial import cKDTree

from gen3d_ros.sim.scene.classes import CLASS_NAMES
from gen3d_ros.sim.scene.config import SceneConfig
from gen3d_ros.sim.scene.footprints import rect_corners
from gen3d_ros.sim.scene.transforms import align_z, rot_z, se3

if TYPE_CHECKING:
    import open3d as o3d


@dataclass(frozen=True)
class GroundModel:
    """Analytic ground height ``h(x, y) = g . xy + sum_k a_k sin(k_k . xy + phi_k)``, metres, world frame.

    The road surface lies on ``h``; sidewalks ``curb_height_m`` above it; terrain 2 cm below the sidewalks.
    """

    gradient: tuple[float, float] = (0.0, 0.0)
    amplitudes: tuple[float, ...] = ()
    wavevectors: tuple[tuple[float, float], ...] = ()
    """Radians per metre, one (kx, ky) per undulation component."""
    phases: tuple[float, ...] = ()

    def height(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) world xy -> (N,) ground (road surface) height, metres."""
        p = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        z = p @ np.asarray(self.gradient, dtype=np.float64)
        for a, k, phi in zip(self.amplitudes, self.wavevectors, self.phases):
            z = z + a * np.sin(p @ np.asarray(k) + phi)
        return z

    def slope(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) world xy -> (N, 2) gradient (dh/dx, dh/dy), dimensionless."""
        p = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        g = np.tile(np.asarray(self.gradient, dtype=np.float64), (p.shape[0], 1))
        for a, k, phi in zip(self.amplitudes, self.wavevectors, self.phases):
            kk = np.asarray(k, dtype=np.float64)
            g = g + (a * np.cos(p @ kk + phi))[:, None] * kk
        return g

    def normal(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) world xy -> (N, 3) unit upward ground normal."""
        g = self.slope(xy)
        n = np.concatenate([-g, np.ones((g.shape[0], 1))], axis=1)
        return n / np.linalg.norm(n, axis=1, keepdims=True)

    @staticmethod
    def flat() -> GroundModel:
        """h = 0 everywhere."""
        return GroundModel()


class RoadPolyline:
    """Arc-length parametrised road centre polyline with projection of points onto it.

    ``s`` is arc length in metres from the first vertex; ``d`` is the signed lateral offset in metres, positive
    to the left of the direction of travel (increasing ``s``).
    """

    def __init__(self, xy: np.ndarray, dense_step_m: float = 0.1) -> None:
        pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        if pts.shape[0] < 2:
            raise ValueError(f"a road polyline needs at least 2 vertices, got {pts.shape[0]}")
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        self.xy = pts
        self.s = np.concatenate([[0.0], np.cumsum(seg)])
        self.length = float(self.s[-1])
        n_dense = max(2, int(math.ceil(self.length / dense_step_m)) + 1)
        self._dense_s = np.linspace(0.0, self.length, n_dense)
        self._dense_xy = self.point(self._dense_s)
        self._dense_t = self.tangent(self._dense_s)
        self._tree = cKDTree(self._dense_xy)

    def point(self, s: np.ndarray | float) -> np.ndarray:
        """Arc length(s) (N,) -> (N, 2) world xy on the centreline (clamped to the ends)."""
        s_arr = np.atleast_1d(np.asarray(s, dtype=np.float64))
        return np.stack([np.interp(s_arr, self.s, self.xy[:, 0]), np.interp(s_arr, self.s, self.xy[:, 1])], axis=1)

    def tangent(self, s: np.ndarray | float) -> np.ndarray:
        """Arc length(s) (N,) -> (N, 2) unit direction of travel."""
        s_arr = np.atleast_1d(np.asarray(s, dtype=np.float64))
        h = 0.5
        a = self.point(np.clip(s_arr - h, 0.0, self.length))
        b = self.point(np.clip(s_arr + h, 0.0, self.length))
        t = b - a
        return t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)

    def normal(self, s: np.ndarray | float) -> np.ndarray:
        """Arc length(s) (N,) -> (N, 2) unit left normal (tangent rotated by +90 degrees)."""
        t = self.tangent(s)
        return np.stack([-t[:, 1], t[:, 0]], axis=1)

    def project(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) world xy -> (s (N,), d (N,)): nearest centreline arc length and signed lateral offset."""
        p = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        _, idx = self._tree.query(p)
        rel = p - self._dense_xy[idx]
        t = self._dense_t[idx]
        d = t[:, 0] * rel[:, 1] - t[:, 1] * rel[:, 0]
        s = self._dense_s[idx] + np.sum(rel * t, axis=1)
        return s, d

    def heading(self, s: np.ndarray | float) -> np.ndarray:
        """Arc length(s) (N,) -> (N,) yaw of the direction of travel, radians (atan2 of the tangent)."""
        t = self.tangent(s)
        return np.arctan2(t[:, 1], t[:, 0])


@dataclass(frozen=True)
class SceneObject:
    """A placed object: its kind, upright footprint rectangle and height range (world frame, metres)."""

    kind: str
    """'building', 'car', 'van', 'truck', 'street_light', 'sign', 'tree', 'fence', 'wall'."""
    center_xy: tuple[float, float]
    yaw: float
    """Radians; the footprint's local x axis is (cos yaw, sin yaw)."""
    half_size_xy: tuple[float, float]
    z_range: tuple[float, float]

    def corners_xy(self) -> np.ndarray:
        """(4, 2) footprint corners, counter-clockwise."""
        return rect_corners(np.asarray(self.center_xy), self.yaw, np.asarray(self.half_size_xy))



@dataclass(eq=False)
class Scene:
    """A generated scene.

    Attributes:
        mesh: legacy open3d triangle mesh, metres, world frame, z up.
        labels: (F,) int32 class id per triangle (index into ``class_names``).
        class_names: names of the class ids.
        config: the configuration the scene was generated from.
        seed: the seed it was generated from (-1 for a scene built with :meth:`from_mesh`).
        road_centerline: (K, 2) float64 world xy of the road centre polyline (may be empty).
        ground: the analytic ground height model.
        objects: the placed objects (footprints), for inspection and tests.
    """

    mesh: o3d.geometry.TriangleMesh
    labels: np.ndarray
    class_names: list[str]
    config: SceneConfig
    seed: int
    road_centerline: np.ndarray
    ground: GroundModel = field(default_factory=GroundModel.flat)
    objects: list[SceneObject] = field(default_factory=list)
    _raycasting: o3d.t.geometry.RaycastingScene | None = field(default=None, init=False, repr=False)
    _road: RoadPolyline | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_mesh(
        cls,
        mesh: o3d.geometry.TriangleMesh,
        labels: np.ndarray | None = None,
        class_names: Sequence[str] = CLASS_NAMES,
    ) -> Scene:
        """Wraps any mesh (world frame, metres) as a scene, e.g. an analytic test geometry.

        ``labels`` defaults to class 0 for every triangle.
        """
        n_tri = len(mesh.triangles)
        lab = np.zeros(n_tri, np.int32) if labels is None else np.asarray(labels, dtype=np.int32).reshape(-1)
        if lab.shape[0] != n_tri:
            raise ValueError(f"labels has {lab.shape[0]} entries but the mesh has {n_tri} triangles")
        return cls(mesh=mesh, labels=lab, class_names=list(class_names), config=SceneConfig(), seed=-1,
                   road_centerline=np.zeros((0, 2)))

    @property
    def vertices(self) -> np.ndarray:
        """(V, 3) float64 vertex positions, metres, world frame."""
        return np.asarray(self.mesh.vertices)

    @property
    def triangles(self) -> np.ndarray:
        """(F, 3) int32 vertex indices per triangle."""
        return np.asarray(self.mesh.triangles)

    @property
    def road(self) -> RoadPolyline:
        """The road centreline as a :class:`RoadPolyline` (raises if the scene has no road)."""
        if self._road is None:
            if self.road_centerline.shape[0] < 2:
                raise ValueError("this scene has no road centreline")
            self._road = RoadPolyline(self.road_centerline)
        return self._road

    def ground_height(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) world xy -> (N,) road-surface height, metres."""
        return self.ground.height(xy)

    def class_id(self, name: str) -> int:
        """Class id of ``name``; raises ``KeyError`` listing the known names."""
        try:
            return self.class_names.index(name)
        except ValueError:
            raise KeyError(f"unknown class {name!r}; known: {self.class_names}") from None

    def to_raycasting_scene(self) -> o3d.t.geometry.RaycastingScene:
        """The mesh as an open3d ``RaycastingScene`` (built once, then cached; geometry id 0)."""
        import open3d as o3d

        if self._raycasting is None:
            rs = o3d.t.geometry.RaycastingScene()
            rs.add_triangles(
                o3d.core.Tensor(np.ascontiguousarray(self.vertices, dtype=np.float32)),
                o3d.core.Tensor(np.ascontiguousarray(self.triangles, dtype=np.uint32)),
            )
            self._raycasting = rs
        return self._raycasting

    def road_pose(
        self,
        s_m: float,
        *,
        lateral_offset_m: float = 0.0,
        height_m: float = 1.8,
        yaw_offset_rad: float = 0.0,
        follow_ground: bool = True,
    ) -> np.ndarray:
        """Pose of a sensor riding on the road: ``T_world_sensor`` (4, 4) float64.

        The sensor sits ``height_m`` above the road surface at arc length ``s_m`` along the centreline and
        ``lateral_offset_m`` to its left; x points along the direction of travel (plus ``yaw_offset_rad``),
        z up. With ``follow_ground`` the pose is pitched/rolled onto the local ground normal, as a car is.
        """
        road = self.road
        s = float(np.clip(s_m, 0.0, road.length))
        xy = road.point(s)[0] + road.normal(s)[0] * float(lateral_offset_m)
        yaw = float(road.heading(s)[0]) + float(yaw_offset_rad)
        up = self.ground.normal(xy[None])[0] if follow_ground else np.array([0.0, 0.0, 1.0])
        rot = align_z(up) @ rot_z(yaw)
        base = np.array([xy[0], xy[1], float(self.ground.height(xy[None])[0])])
        return se3(rot, base + up * float(height_m))

