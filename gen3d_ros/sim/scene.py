"""Procedural outdoor street scenes as one labelled triangle mesh.

A scene is a square of ``size_m`` centred on the world origin (world frame: metres, z up). It holds gently
sloped, undulating terrain; a road (straight or gently curved) with lane markings, curbs and sidewalks; and
buildings with facade relief, cars/vans/trucks, street lights, traffic signs, trees, fences and walls.
Every triangle carries a class id (``Scene.labels``, names in ``Scene.class_names``).

Placement keeps objects apart with a 2-D occupancy grid: cars stand on the road, buildings, walls and fences
beyond the sidewalks, poles, signs and trees on the sidewalks (trees also on the terrain). Everything is drawn
from ``np.random.default_rng(seed)``, so a ``(SceneConfig, seed)`` pair gives the same scene every time.

    scene = generate_scene(SceneConfig(), seed=3)
    rays = scene.to_raycasting_scene()
    gt = sample_surface(scene, spacing_m=0.05, seed=0)         # (M, 3) dense surface samples, world frame
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

import numpy as np
from scipy.spatial import cKDTree

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

_TERRAIN_BELOW_SIDEWALK_M = 0.02  # terrain sits this much below the sidewalk top (a small outer edge)
_MARKING_LIFT_M = 0.005  # lane markings float this much above the asphalt
_FACADE_RECESS_M = 0.25  # window recess depth
_BALCONY_DEPTH_M = 1.0
_GRID_CELL_M = 0.25  # occupancy grid used for placement


# --------------------------------------------------------------------------------------------- configuration


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
        if self.building_setback_m[0] < _BALCONY_DEPTH_M + 0.2:
            raise ValueError(
                f"building_setback_m={self.building_setback_m} must start at >= {_BALCONY_DEPTH_M + 0.2} m "
                "(room for balconies)"
            )


    def to_dict(self) -> dict[str, object]:
        """Plain types only (tuples as lists), ready for YAML/JSON."""
        return _plain({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> SceneConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` naming them."""
        return cls(**_known_fields(cls, data))


def _plain(value: object) -> object:
    """Tuples/arrays -> lists, numpy scalars -> Python scalars, recursively through dicts."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _known_fields(cls: type, data: Mapping[str, object]) -> dict[str, object]:
    known = {f.name for f in fields(cls) if f.init}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; known: {sorted(known)}")
    return dict(data)


def _pair(value: Sequence[float], name: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in value)
    if not 0 < lo <= hi:
        raise ValueError(f"{name} must be (lo, hi) with 0 < lo <= hi, got {value!r}")
    return (lo, hi)


# -------------------------------------------------------------------------------------------- ground, road


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
        import open3d as o3d

        return _rect_corners(np.asarray(self.center_xy), self.yaw, np.asarray(self.half_size_xy))


# ----------------------------------------------------------------------------------------------- the scene


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
        rot = _align_z(up) @ _rot_z(yaw)
        base = np.array([xy[0], xy[1], float(self.ground.height(xy[None])[0])])
        return _se3(rot, base + up * float(height_m))


# ------------------------------------------------------------------------------------------ mesh primitives


def _rot_z(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rot_x(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _align_z(n: np.ndarray) -> np.ndarray:
    """Smallest rotation taking +z onto the unit vector ``n`` (3,)."""
    n = np.asarray(n, dtype=np.float64) / np.linalg.norm(n)
    v = np.array([-n[1], n[0], 0.0])  # z x n
    c = float(n[2])
    if np.linalg.norm(v) < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    vx = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + vx + vx @ vx * (1.0 / (1.0 + c))


def _se3(rot: np.ndarray, t: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = t
    return out


def _transform(v: np.ndarray, T: np.ndarray | None) -> np.ndarray:
    if T is None:
        return v
    return v @ T[:3, :3].T + T[:3, 3]


_Mesh = tuple[np.ndarray, np.ndarray]
"""(V, 3) float64 vertices and (F, 3) int64 triangles."""


def _prism(poly: np.ndarray, z0: float, z1: float, *, bottom: bool = True, top: bool = True) -> _Mesh:
    """Extrudes a convex counter-clockwise polygon (P, 2) from z0 to z1; outward-facing triangles."""
    p = poly.shape[0]
    v = np.concatenate([np.column_stack([poly, np.full(p, z0)]), np.column_stack([poly, np.full(p, z1)])])
    i = np.arange(p)
    j = (i + 1) % p
    faces = [np.stack([i, j, p + j], axis=1), np.stack([i, p + j, p + i], axis=1)]
    k = np.arange(1, p - 1)
    if top:
        faces.append(np.stack([np.full(p - 2, p), p + k, p + k + 1], axis=1))
    if bottom:
        faces.append(np.stack([np.zeros(p - 2, int), k + 1, k], axis=1))
    return v, np.concatenate(faces).astype(np.int64)


def _box(lo: Sequence[float], hi: Sequence[float], *, bottom: bool = True) -> _Mesh:
    """Axis-aligned box [lo, hi] (3,) as (8, 3) vertices and 12 (or 10 without bottom) triangles."""
    x0, y0, z0 = lo
    x1, y1, z1 = hi
    poly = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)
    return _prism(poly, z0, z1, bottom=bottom)


def _circle(radius: float, n: int) -> np.ndarray:
    a = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    return radius * np.column_stack([np.cos(a), np.sin(a)])


def _cylinder(radius: float, z0: float, z1: float, n: int = 10, *, bottom: bool = True) -> _Mesh:
    """Upright n-gon cylinder of ``radius`` from z0 to z1."""
    return _prism(_circle(radius, n), z0, z1, bottom=bottom)


def _ellipsoid(radii: Sequence[float], n_lat: int = 7, n_lon: int = 12) -> _Mesh:
    """UV ellipsoid centred at the origin, semi-axes ``radii`` (3,)."""
    theta = np.linspace(0.0, math.pi, n_lat + 1)[1:-1]  # polar angle, poles excluded
    phi = np.linspace(0.0, 2.0 * math.pi, n_lon, endpoint=False)
    st, ct = np.sin(theta)[:, None], np.cos(theta)[:, None]
    ring = np.stack([st * np.cos(phi), st * np.sin(phi), np.broadcast_to(ct, (theta.size, n_lon))], axis=-1)
    v = np.concatenate([[[0.0, 0.0, 1.0]], ring.reshape(-1, 3), [[0.0, 0.0, -1.0]]]) * np.asarray(radii)
    n_rings = theta.size
    faces = []
    j = np.arange(n_lon)
    jn = (j + 1) % n_lon
    faces.append(np.stack([np.zeros(n_lon, int), 1 + j, 1 + jn], axis=1))
    for r in range(n_rings - 1):
        a, b = 1 + r * n_lon, 1 + (r + 1) * n_lon
        faces.append(np.stack([a + j, b + j, b + jn], axis=1))
        faces.append(np.stack([a + j, b + jn, a + jn], axis=1))
    last = 1 + (n_rings - 1) * n_lon
    south = v.shape[0] - 1
    faces.append(np.stack([np.full(n_lon, south), last + jn, last + j], axis=1))
    return v, np.concatenate(faces).astype(np.int64)


class _MeshBuilder:
    """Accumulates labelled triangle soups; one concatenation at the end."""

    def __init__(self) -> None:
        self._v: list[np.ndarray] = []
        self._f: list[np.ndarray] = []
        self._l: list[np.ndarray] = []
        self._n = 0

    def add(self, vf: _Mesh, label: int | np.ndarray, T: np.ndarray | None = None) -> None:
        """Adds vertices (V, 3) and triangles (F, 3) with one label or (F,) labels, moved by ``T`` (4, 4)."""
        v, f = vf
        if f.shape[0] == 0:
            return
        self._v.append(_transform(np.asarray(v, dtype=np.float64), T))
        self._f.append(np.asarray(f, dtype=np.int64) + self._n)
        self._l.append(np.broadcast_to(np.asarray(label, dtype=np.int32), (f.shape[0],)).copy())
        self._n += v.shape[0]

    def build(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.concatenate(self._v), np.concatenate(self._f).astype(np.int32), np.concatenate(self._l))


# ----------------------------------------------------------------------------------- placement bookkeeping


def _rect_corners(center: np.ndarray, yaw: float, half: np.ndarray) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    ax, ay = np.array([c, s]) * half[0], np.array([-s, c]) * half[1]
    return np.array([center - ax - ay, center + ax - ay, center + ax + ay, center - ax + ay])


def _rect_samples(center: np.ndarray, yaw: float, half: np.ndarray, n: int = 5) -> np.ndarray:
    """(n*n, 2) points on a grid over a rectangle (its border included)."""
    u = np.linspace(-1.0, 1.0, n)
    uu, vv = np.meshgrid(u, u)
    c, s = math.cos(yaw), math.sin(yaw)
    local = np.column_stack([uu.ravel() * half[0], vv.ravel() * half[1]])
    return center + local @ np.array([[c, s], [-s, c]])


class _OccupancyGrid:
    """2-D boolean grid over the scene square, for keeping object footprints apart."""

    def __init__(self, size_m: float, cell_m: float = _GRID_CELL_M) -> None:
        self.cell = cell_m
        self.half = size_m / 2.0
        self.n = int(math.ceil(size_m / cell_m))
        self.occ = np.zeros((self.n, self.n), dtype=bool)

    def _cells_rect(self, center: np.ndarray, yaw: float, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        half = np.maximum(np.asarray(half, dtype=np.float64), self.cell * 0.75)  # thin things still mark cells
        corners = _rect_corners(center, yaw, half)
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
        ix, iy = self._cells_rect(center, yaw, np.asarray(half) + margin)
        return not bool(self.occ[ix, iy].any())

    def mark(self, center: np.ndarray, yaw: float, half: np.ndarray) -> None:
        ix, iy = self._cells_rect(center, yaw, np.asarray(half))
        self.occ[ix, iy] = True


@dataclass
class _Ctx:
    """What the placement functions share."""

    cfg: SceneConfig
    rng: np.random.Generator
    road: RoadPolyline
    ground: GroundModel
    builder: _MeshBuilder
    low: _OccupancyGrid  # footprints on the ground
    high: _OccupancyGrid  # things overhead: building volumes, tree crowns, pole tops
    objects: list[SceneObject]

    @property
    def half_road(self) -> float:
        return self.cfg.road_width_m / 2.0

    @property
    def corridor(self) -> float:
        """Half width of road + sidewalks."""
        return self.cfg.road_width_m / 2.0 + self.cfg.sidewalk_width_m

    def sidewalk_z(self, xy: np.ndarray) -> np.ndarray:
        return self.ground.height(xy) + self.cfg.curb_height_m

    def terrain_z(self, xy: np.ndarray) -> np.ndarray:
        return self.ground.height(xy) + self.cfg.curb_height_m - _TERRAIN_BELOW_SIDEWALK_M

    def inside(self, pts: np.ndarray, margin: float = 0.5) -> bool:
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


# --------------------------------------------------------------------------------------- scene generation


def _make_ground(cfg: SceneConfig, rng: np.random.Generator) -> GroundModel:
    budget = math.tan(math.radians(cfg.max_slope_deg))
    plane = budget * rng.uniform(0.2, 0.6)
    direction = rng.uniform(0.0, 2.0 * math.pi)
    gradient = (plane * math.cos(direction), plane * math.sin(direction))
    rest = (budget - plane) * 0.95 / 3.0  # gradient bound per undulation component
    amps, ks, phases = [], [], []
    for _ in range(3):
        wavelength = rng.uniform(15.0, 45.0)
        knorm = 2.0 * math.pi / wavelength
        a = min(rng.uniform(0.3, 1.0) * cfg.undulation_amplitude_m / 3.0, rest / knorm)
        ang = rng.uniform(0.0, 2.0 * math.pi)
        amps.append(float(a))
        ks.append((knorm * math.cos(ang), knorm * math.sin(ang)))
        phases.append(float(rng.uniform(0.0, 2.0 * math.pi)))
    return GroundModel(gradient=gradient, amplitudes=tuple(amps), wavevectors=tuple(ks), phases=tuple(phases))


def _make_centerline(cfg: SceneConfig, rng: np.random.Generator) -> np.ndarray:
    half = cfg.size_m / 2.0
    u = np.arange(-0.8 * cfg.size_m, 0.8 * cfg.size_m + 1e-9, 0.5)
    offset = rng.uniform(-0.08, 0.08) * cfg.size_m
    if rng.random() < cfg.straight_road_probability or cfg.road_curve_amplitude_m == 0:
        v = np.full_like(u, offset)
    else:
        amp = rng.uniform(0.3, 1.0) * cfg.road_curve_amplitude_m
        wavelength = rng.uniform(1.6, 3.2) * cfg.size_m
        wavelength = max(wavelength, 2.0 * math.pi * math.sqrt(amp * 40.0))  # curvature radius >= 40 m
        v = offset + amp * np.sin(2.0 * math.pi * u / wavelength + rng.uniform(0.0, 2.0 * math.pi))
    yaw = rng.uniform(0.0, 2.0 * math.pi)
    xy = np.column_stack([u, v]) @ _rot_z(yaw)[:2, :2].T
    # keep the run of vertices whose corridor can reach into the square
    reach = cfg.road_width_m / 2.0 + cfg.sidewalk_width_m + 1.0
    inside = np.all(np.abs(xy) <= half + reach, axis=1)
    idx = np.flatnonzero(inside)
    lo, hi = max(idx.min() - 1, 0), min(idx.max() + 2, xy.shape[0])
    return xy[lo:hi]


def _add_road(ctx: _Ctx) -> None:
    """Road, lane markings, curbs and sidewalks as ribbons along the centreline."""
    cfg, road = ctx.cfg, ctx.road
    w, sw, ch = cfg.road_width_m / 2.0, cfg.sidewalk_width_m, cfg.curb_height_m
    lid = CLASS_IDS
    curb_top = min(0.15, sw / 3.0)
    line_in, line_out = w - 0.375, w - 0.225  # edge line
    # cross-section: (d, dz) points; a strip between consecutive points gets the label in strips[i]
    prof = [
        (-w - sw, ch), (-w - curb_top, ch), (-w, ch), (-w, 0.0), (-line_out, 0.0), (-line_in, 0.0),
        (-0.075, 0.0), (0.075, 0.0), (line_in, 0.0), (line_out, 0.0), (w, 0.0), (w, ch), (w + curb_top, ch),
        (w + sw, ch),
    ]
    strips = ([lid["sidewalk"], lid["curb"], lid["curb"]] + [lid["road"]] * 7
              + [lid["curb"], lid["curb"], lid["sidewalk"]])
    s = road.s
    k = s.shape[0]
    d = np.array([p[0] for p in prof])
    dz = np.array([p[1] for p in prof])
    pts = road.point(s)
    nrm = road.normal(s)
    xy = pts[:, None, :] + nrm[:, None, :] * d[None, :, None]  # (K, P, 2)
    z = ctx.ground.height(xy.reshape(-1, 2)).reshape(k, -1) + dz[None, :]
    verts = np.concatenate([xy, z[..., None]], axis=-1).reshape(-1, 3)
    n_p = d.shape[0]
    half = cfg.size_m / 2.0

    def ribbon_faces(p_idx: int, rows: np.ndarray) -> np.ndarray:
        a = rows * n_p + p_idx
        b = (rows + 1) * n_p + p_idx
        return np.concatenate([np.stack([a, a + 1, b + 1], 1), np.stack([a, b + 1, b], 1)])

    rows = np.arange(k - 1)
    def inside(f: np.ndarray) -> np.ndarray:
        return np.all(np.abs(verts[f].mean(axis=1)[:, :2]) <= half, axis=1)

    faces = [ribbon_faces(p_idx, rows) for p_idx in range(len(strips))]
    labels = np.concatenate([np.full(f.shape[0], lab, np.int32) for f, lab in zip(faces, strips)])
    faces_all = np.concatenate(faces)
    keep = inside(faces_all)
    ctx.builder.add((verts, faces_all[keep]), labels[keep])
    # lane markings: dashed centre line (3 m dash, 6 m gap) and solid edge lines, lifted a few mm
    lifted = verts.copy()
    lifted[:, 2] += _MARKING_LIFT_M
    dash_rows = rows[(s[rows] % 9.0 < 3.0) & ((s[rows] + 0.5) % 9.0 < 3.0)]
    marks = np.concatenate([ribbon_faces(p_idx, r) for p_idx, r in ((6, dash_rows), (4, rows), (8, rows))])
    ctx.builder.add((lifted, marks[inside(marks)]), lid["lane_marking"])


def _add_terrain(ctx: _Ctx, building_rects: list[tuple[np.ndarray, float, np.ndarray]]) -> None:
    """Heightfield grid over the square, minus the road corridor and building interiors."""
    cfg = ctx.cfg
    step = min(cfg.terrain_resolution_m, cfg.sidewalk_width_m / 2.0)
    n = int(math.ceil(cfg.size_m / step))
    g = np.linspace(-cfg.size_m / 2.0, cfg.size_m / 2.0, n + 1)
    gx, gy = np.meshgrid(g, g, indexing="ij")
    xy = np.column_stack([gx.ravel(), gy.ravel()])
    z = ctx.terrain_z(xy)
    _, d = ctx.road.project(xy)
    in_corridor = np.abs(d) < ctx.corridor
    in_building = np.zeros(xy.shape[0], dtype=bool)
    for center, yaw, half in building_rects:
        c, s = math.cos(yaw), math.sin(yaw)
        rel = xy - center
        inner = np.asarray(half) - 0.1
        in_building |= (np.abs(rel @ np.array([c, s])) < inner[0]) & (np.abs(rel @ np.array([-s, c])) < inner[1])
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    a = (i * (n + 1) + j).ravel()
    b, c_, d_ = a + (n + 1), a + (n + 1) + 1, a + 1
    faces = np.concatenate([np.stack([a, b, c_], 1), np.stack([a, c_, d_], 1)])
    drop = np.all(in_corridor[faces], axis=1) | np.all(in_building[faces], axis=1)
    faces = faces[~drop]
    used, inverse = np.unique(faces, return_inverse=True)
    verts = np.column_stack([xy[used], z[used]])
    ctx.builder.add((verts, inverse.reshape(-1, 3)), CLASS_IDS["terrain"])


def _facade(ctx: _Ctx, T: np.ndarray, W: float, D: float, z0: float, zg: float, z1: float) -> None:
    """Road-facing facade at local y = -D/2: piers/spandrels with recessed windows, balconies, parapet."""
    rng, b, lab = ctx.rng, ctx.builder, CLASS_IDS["building"]
    r = _FACADE_RECESS_M
    y0, y1 = -D / 2.0, -D / 2.0 + r
    win_w, pier = rng.uniform(0.9, 1.6), rng.uniform(0.7, 1.6)
    n_win = max(1, int((W - pier) // (win_w + pier)))
    margin = (W - n_win * win_w - (n_win - 1) * pier) / 2.0
    wx0 = -W / 2.0 + margin + np.arange(n_win) * (win_w + pier)
    wx1 = wx0 + win_w
    edges = np.concatenate([[-W / 2.0], np.column_stack([wx0, wx1]).ravel(), [W / 2.0]]).reshape(-1, 2)
    floor_h = rng.uniform(2.8, 3.6)
    ground_floor_h = floor_h * rng.uniform(1.0, 1.3)
    shop = rng.random() < 0.5
    balconies = rng.random() < 0.4
    balcony_every = int(rng.integers(1, 3))
    cursor = z0
    zf, floor = zg, 0
    while True:
        fh = ground_floor_h if floor == 0 else floor_h
        if zf + fh > z1 - 0.4:
            break
        if floor == 0 and shop:
            sill, win_h = 0.4, fh - 1.0
        else:
            sill, win_h = 0.9, min(rng.uniform(1.2, 1.7), fh - 1.2)
        b.add(_box((-W / 2, y0, cursor), (W / 2, y1, zf + sill), bottom=False), lab, T)
        for x0e, x1e in edges:
            if x1e - x0e > 1e-6:
                b.add(_box((x0e, y0, zf + sill), (x1e, y1, zf + sill + win_h)), lab, T)
        if balconies and floor >= 1:
            for wi in range(0, n_win, balcony_every):
                bx0, bx1 = wx0[wi] - 0.3, wx1[wi] + 0.3
                yb = y0 - _BALCONY_DEPTH_M
                b.add(_box((bx0, yb, zf), (bx1, y0, zf + 0.15)), lab, T)
                b.add(_box((bx0, yb, zf + 0.15), (bx1, yb + 0.05, zf + 1.1)), lab, T)
        cursor = zf + sill + win_h
        zf += fh
        floor += 1
    b.add(_box((-W / 2, y0, cursor), (W / 2, y1, z1), bottom=False), lab, T)


def _add_building(ctx: _Ctx, center: np.ndarray, yaw: float, W: float, D: float, height: float) -> None:
    cfg = ctx.cfg
    T = _se3(_rot_z(yaw), np.array([center[0], center[1], 0.0]))
    footprint = _rect_samples(center, yaw, np.array([W / 2, D / 2]), 4)
    zt = ctx.terrain_z(footprint)
    z0, zg = float(zt.min()) - 0.05, float(zt.max())
    z1 = zg + height
    lab = CLASS_IDS["building"]
    r = _FACADE_RECESS_M if cfg.facade_detail else 0.0
    ctx.builder.add(_box((-W / 2, -D / 2 + r, z0), (W / 2, D / 2, z1), bottom=False), lab, T)
    if cfg.facade_detail:
        _facade(ctx, T, W, D, z0, zg, z1)
        if ctx.rng.random() < 0.6:  # roof parapet
            t, h = 0.25, ctx.rng.uniform(0.5, 1.0)
            for lo, hi in (((-W / 2, -D / 2, z1), (W / 2, -D / 2 + t, z1 + h)),
                           ((-W / 2, D / 2 - t, z1), (W / 2, D / 2, z1 + h)),
                           ((-W / 2, -D / 2 + t, z1), (-W / 2 + t, D / 2 - t, z1 + h)),
                           ((W / 2 - t, -D / 2 + t, z1), (W / 2, D / 2 - t, z1 + h))):
                ctx.builder.add(_box(lo, hi), lab, T)
    ctx.objects.append(SceneObject("building", (float(center[0]), float(center[1])), yaw, (W / 2, D / 2), (z0, z1)))


def _room_to_border(p: np.ndarray, direction: np.ndarray, half: float) -> float:
    """Distance from ``p`` (2,) along unit ``direction`` (2,) to the border of the square [-half, half]^2."""
    t = np.inf
    for a in range(2):
        if abs(direction[a]) > 1e-9:
            t = min(t, ((half if direction[a] > 0 else -half) - p[a]) / direction[a])
    return float(max(t, 0.0))


def _place_buildings(ctx: _Ctx) -> list[tuple[np.ndarray, float, np.ndarray]]:
    cfg, rng = ctx.cfg, ctx.rng
    s_lo, s_hi = ctx.s_range(margin=0.0)
    candidates = []
    for side in (1, -1):
        s = s_lo - cfg.building_width_m[1] / 2.0 + rng.uniform(0.0, 4.0)
        while s < s_hi:
            W = rng.uniform(*cfg.building_width_m)
            candidates.append((side, s + W / 2.0, W))
            s += W + rng.uniform(0.5, 5.0)
    order = rng.permutation(len(candidates))
    rects = []
    placed = 0
    for ci in order:
        if placed >= cfg.n_buildings:
            break
        side, s_c, W = candidates[ci]
        D = rng.uniform(*cfg.building_depth_m)
        setback = rng.uniform(*cfg.building_setback_m)
        height = rng.uniform(*cfg.building_height_m)
        # clip the facade to the part of its line inside the scene, then fit the depth to the room behind it
        d_front = side * (ctx.corridor + setback)
        s_line = np.linspace(s_c - W / 2.0, s_c + W / 2.0, 25)
        line = ctx.road.point(s_line) + ctx.road.normal(s_line) * d_front
        ok_line = np.all(np.abs(line) <= cfg.size_m / 2.0 - 0.6, axis=1)
        if not ok_line.any():
            continue
        if not ok_line.all():
            first, last = np.flatnonzero(ok_line)[[0, -1]]
            s0, s1 = s_line[first] + 0.3, s_line[last] - 0.3
            W, s_c = s1 - s0, (s0 + s1) / 2.0
            if W < cfg.building_width_m[0] * 0.6:
                continue
        front, yaw = ctx.frame(s_c, d_front, side)
        D = min(D, _room_to_border(front, np.array([-math.sin(yaw), math.cos(yaw)]), cfg.size_m / 2.0 - 0.6))
        if D < 4.0:
            continue
        for attempt in range(3):  # shrink to fit the square or the curve
            center, yaw = ctx.frame(s_c, side * (ctx.corridor + setback + D / 2.0), side)
            # footprint incl. the balcony zone in front of the facade
            full_c = center - np.array([-math.sin(yaw), math.cos(yaw)]) * (_BALCONY_DEPTH_M / 2.0)
            full_h = np.array([W / 2.0, D / 2.0 + _BALCONY_DEPTH_M / 2.0])
            samples = _rect_samples(full_c, yaw, full_h, 7)
            _, d = ctx.road.project(samples)
            ok = ctx.inside(samples) and bool(np.all(np.abs(d) >= ctx.corridor + 0.3))
            if ok and ctx.low.free(full_c, yaw, full_h, margin=0.3):
                ctx.low.mark(full_c, yaw, full_h)
                ctx.high.mark(center, yaw, np.array([W / 2.0, D / 2.0]))
                _add_building(ctx, center, yaw, W, D, height)
                rects.append((center, yaw, np.array([W / 2.0, D / 2.0])))
                placed += 1
                break
            W, D = W * 0.8, D * 0.8
            if W < cfg.building_width_m[0] * 0.6 or D < 4.0:
                break
    return rects


def _oriented_on_ground(ctx: _Ctx, xy: np.ndarray, yaw: float, z_offset: float = 0.0) -> np.ndarray:
    """Pose of an object standing on the road at ``xy``, tilted onto the ground normal."""
    n = ctx.ground.normal(xy[None])[0]
    z = float(ctx.ground.height(xy[None])[0]) + z_offset
    return _se3(_align_z(n) @ _rot_z(yaw), np.array([xy[0], xy[1], z]))


_Boxes = list[tuple[Sequence[float], Sequence[float]]]
_Wheels = list[tuple[float, float, float]]


def _four_wheels(base: float, track: float, r: float) -> _Wheels:
    return [(base, track, r), (base, -track, r), (-base, track, r), (-base, -track, r)]


def _vehicle_parts(kind: str, rng: np.random.Generator) -> tuple[_Boxes, _Wheels, float, float, float]:
    """Boxes (lo, hi) and wheels (x, y, r) of a vehicle in its frame (x forward, origin at ground centre).

    Returns (boxes, wheels, length, width, height).
    """
    if kind == "car":
        L, W = rng.uniform(3.9, 4.9), rng.uniform(1.7, 1.9)
        r = rng.uniform(0.29, 0.34)
        body_top = rng.uniform(0.85, 1.0)
        cabin_h = rng.uniform(0.45, 0.6) * (1.4 if rng.random() < 0.25 else 1.0)  # some SUVs
        cabin_len = L * rng.uniform(0.45, 0.6)
        cabin_x = rng.uniform(-0.35, -0.05)
        boxes = [((-L / 2, -W / 2, 0.25), (L / 2, W / 2, body_top)),
                 ((cabin_x - cabin_len / 2, -W / 2 + 0.08, body_top),
                  (cabin_x + cabin_len / 2, W / 2 - 0.08, body_top + cabin_h))]
        wheels = _four_wheels(L / 2 - 0.8, W / 2 - 0.12, r)
        height = body_top + cabin_h
    elif kind == "van":
        L, W = rng.uniform(4.8, 5.6), rng.uniform(1.9, 2.05)
        r = rng.uniform(0.32, 0.36)
        height = rng.uniform(1.9, 2.3)
        hood = rng.uniform(0.6, 1.0)
        boxes = [((-L / 2, -W / 2, 0.3), (L / 2 - hood, W / 2, height)),
                 ((L / 2 - hood, -W / 2, 0.3), (L / 2, W / 2, rng.uniform(1.0, 1.2)))]
        wheels = _four_wheels(L / 2 - 0.85, W / 2 - 0.12, r)
    elif kind == "truck":
        L, W = rng.uniform(7.0, 9.0), rng.uniform(2.3, 2.5)
        r = rng.uniform(0.48, 0.53)
        height = rng.uniform(3.0, 3.3)
        cab = rng.uniform(1.8, 2.2)
        boxes = [((L / 2 - cab, -W / 2, 0.55), (L / 2, W / 2, height - rng.uniform(0.2, 0.5))),
                 ((-L / 2, -W / 2 + 0.4, 0.55), (L / 2 - cab, W / 2 - 0.4, 0.95)),
                 ((-L / 2, -W / 2, 0.95), (L / 2 - cab - 0.2, W / 2, height))]
        front = L / 2 - cab / 2
        wheels = [(front, W / 2 - 0.15, r), (front, -(W / 2 - 0.15), r)]
        for x in (-L / 2 + 1.0, -L / 2 + 2.1):
            wheels += [(x, W / 2 - 0.15, r), (x, -(W / 2 - 0.15), r)]
    else:
        raise ValueError(f"unknown vehicle kind {kind!r}")
    return boxes, wheels, L, W, height


def _place_vehicles(ctx: _Ctx) -> None:
    cfg, rng = ctx.cfg, ctx.rng
    s_lo, s_hi = ctx.s_range(margin=3.0)
    placed, attempts = 0, 0
    lab = CLASS_IDS["car"]
    while placed < cfg.n_cars and attempts < 40 * max(cfg.n_cars, 1):
        attempts += 1
        kind = str(rng.choice(["car", "van", "truck"], p=[0.65, 0.23, 0.12]))
        boxes, wheels, L, W, height = _vehicle_parts(kind, rng)
        side = 1 if rng.random() < 0.5 else -1
        parked = kind != "truck" and rng.random() < 0.5
        if parked:
            d = side * (ctx.half_road - W / 2.0 - 0.25)
            forward = rng.random() < 0.85  # parked cars mostly face the flow of their lane
        else:
            d = side * max(ctx.half_road / 2.0, W / 2.0 + 0.6)
            forward = True
        if abs(d) - W / 2.0 < 0.5:  # narrow road: keep a clear strip along the centreline for the sensor
            continue
        s = rng.uniform(s_lo, s_hi)
        xy = ctx.road.point(s)[0] + ctx.road.normal(s)[0] * d
        heading = float(ctx.road.heading(s)[0])
        # right-hand traffic: the lane right of the centreline (side -1) drives towards +s
        yaw = heading + (0.0 if (side < 0) == forward else math.pi) + rng.normal(0.0, 0.03)
        half = np.array([L / 2.0, W / 2.0])
        samples = _rect_samples(xy, yaw, half, 5)
        _, ds = ctx.road.project(samples)
        if not ctx.inside(samples, margin=1.0):
            continue
        if np.any(np.abs(ds) > ctx.half_road - 0.1) or np.any(np.abs(ds) < 0.45) or np.any(np.sign(ds) != side):
            continue
        if not ctx.low.free(xy, yaw, half, margin=0.6):
            continue
        ctx.low.mark(xy, yaw, half)
        T = _oriented_on_ground(ctx, xy, yaw)
        for lo, hi in boxes:
            ctx.builder.add(_box(lo, hi), lab, T)
        for wx, wy, r in wheels:
            v, f = _cylinder(r, -0.11, 0.11, n=12)
            Tw = T @ _se3(_rot_x(math.pi / 2.0), np.array([wx, wy, r]))
            ctx.builder.add((v, f), lab, Tw)
        ctx.objects.append(SceneObject(kind, (float(xy[0]), float(xy[1])), yaw, (L / 2, W / 2),
                                       (float(T[2, 3]), float(T[2, 3]) + height)))
        placed += 1


def _place_on_sidewalk(ctx: _Ctx, s: float, d: float, half: np.ndarray, margin: float) -> bool:
    xy = ctx.road.point(s)[0] + ctx.road.normal(s)[0] * d
    return ctx.inside(xy[None], margin=1.0) and ctx.low.free(xy, 0.0, half, margin=margin)


def _place_street_lights(ctx: _Ctx) -> None:
    cfg, rng = ctx.cfg, ctx.rng
    if cfg.n_poles == 0:
        return
    s_lo, s_hi = ctx.s_range(margin=1.5)
    spacing = (s_hi - s_lo) / max(1, math.ceil(cfg.n_poles / 2))
    pole = CLASS_IDS["pole"]
    placed = 0
    for k in range(4 * cfg.n_poles):
        if placed >= cfg.n_poles:
            break
        side = 1 if k % 2 == 0 else -1
        s = s_lo + ((k // 2) + 0.5 + (0.5 if side < 0 else 0.0)) * spacing + rng.normal(0.0, 0.1 * spacing)
        if k >= 2 * cfg.n_poles:
            s = rng.uniform(s_lo, s_hi)
        d = side * (ctx.half_road + min(0.5, cfg.sidewalk_width_m / 2.0))
        r = rng.uniform(0.08, 0.12)
        half = np.array([r, r])
        if not (s_lo <= s <= s_hi) or not _place_on_sidewalk(ctx, s, d, half, margin=0.6):
            continue
        xy, yaw = ctx.frame(s, d, side)  # local +y points away from the road
        if not ctx.high.free(xy, yaw, np.array([0.5, 1.6]), margin=0.0):
            continue
        z0 = float(ctx.sidewalk_z(xy[None])[0]) - 0.05
        h = rng.uniform(6.0, 9.0)
        arm = rng.uniform(1.2, 2.5)
        T = _se3(_rot_z(yaw), np.array([xy[0], xy[1], z0]))
        ctx.builder.add(_cylinder(r, 0.0, h + 0.05, n=10, bottom=False), pole, T)
        # arm towards the road (local -y), then a lamp head
        v, f = _cylinder(0.05, 0.0, arm, n=8)
        ctx.builder.add((v, f), pole, T @ _se3(_rot_x(math.pi / 2.0), np.array([0.0, 0.0, h - 0.1])))
        ctx.builder.add(_box((-0.15, -arm - 0.5, h - 0.3), (0.15, -arm + 0.05, h - 0.1)), pole, T)
        ctx.low.mark(xy, 0.0, half)
        ctx.high.mark(xy, yaw, np.array([0.4, 0.4]))
        ctx.objects.append(SceneObject("street_light", (float(xy[0]), float(xy[1])), yaw, (r, r), (z0, z0 + h)))
        placed += 1


def _place_signs(ctx: _Ctx) -> None:
    cfg, rng = ctx.cfg, ctx.rng
    s_lo, s_hi = ctx.s_range(margin=1.5)
    placed, attempts = 0, 0
    while placed < cfg.n_signs and attempts < 30 * max(cfg.n_signs, 1):
        attempts += 1
        side = 1 if rng.random() < 0.5 else -1
        s = rng.uniform(s_lo, s_hi)
        d = side * (ctx.half_road + min(0.45, cfg.sidewalk_width_m / 2.0))
        r = 0.04
        if not _place_on_sidewalk(ctx, s, d, np.array([0.4, 0.4]), margin=0.3):
            continue
        xy, yaw = ctx.frame(s, d, side)
        if not ctx.high.free(xy, yaw, np.array([0.5, 0.5])):
            continue
        z0 = float(ctx.sidewalk_z(xy[None])[0]) - 0.05
        h = rng.uniform(2.0, 2.8)
        T = _se3(_rot_z(yaw), np.array([xy[0], xy[1], z0]))
        ctx.builder.add(_cylinder(r, 0.0, h + 0.05, n=8, bottom=False), CLASS_IDS["pole"], T)
        # plate faces along the road (its normal is local x); shapes: rectangle, disc, triangle
        shape = int(rng.integers(0, 3))
        Tp = T @ _se3(_rot_y(math.pi / 2.0), np.array([0.06, 0.0, h - 0.3]))  # plate plane = local y-z
        if shape == 0:
            a, b = rng.uniform(0.25, 0.4), rng.uniform(0.25, 0.4)
            v, f = _prism(np.array([[-a, -b], [a, -b], [a, b], [-a, b]]), -0.015, 0.015)
        elif shape == 1:
            v, f = _prism(_circle(rng.uniform(0.3, 0.4), 14), -0.015, 0.015)
        else:
            e = rng.uniform(0.35, 0.45)
            v, f = _prism(_circle(e, 3) @ _rot_z(math.pi)[:2, :2].T, -0.015, 0.015)
        ctx.builder.add((v, f), CLASS_IDS["traffic_sign"], Tp)
        ctx.low.mark(xy, 0.0, np.array([r, r]))
        ctx.high.mark(xy, yaw, np.array([0.45, 0.45]))
        ctx.objects.append(SceneObject("sign", (float(xy[0]), float(xy[1])), yaw, (r, r), (z0, z0 + h + 0.1)))
        placed += 1


def _place_trees(ctx: _Ctx) -> None:
    cfg, rng = ctx.cfg, ctx.rng
    s_lo, s_hi = ctx.s_range(margin=1.0)
    placed, attempts = 0, 0
    sidewalk_ok = cfg.sidewalk_width_m >= 1.4
    while placed < cfg.n_trees and attempts < 40 * max(cfg.n_trees, 1):
        attempts += 1
        side = 1 if rng.random() < 0.5 else -1
        s = rng.uniform(s_lo, s_hi)
        on_sidewalk = sidewalk_ok and rng.random() < 0.6
        if on_sidewalk:
            d = side * (ctx.corridor - 0.7)
        else:
            d = side * (ctx.corridor + rng.uniform(1.0, 12.0))
        trunk_r = rng.uniform(0.12, 0.3)
        crown_r = rng.uniform(1.2, 2.5) if on_sidewalk else rng.uniform(1.5, 3.2)
        crown_rz = rng.uniform(1.2, 2.5)
        xy = ctx.road.point(s)[0] + ctx.road.normal(s)[0] * d
        if not ctx.inside(xy[None], margin=crown_r * 0.5 + 0.5):
            continue
        if not ctx.low.free(xy, 0.0, np.array([trunk_r, trunk_r]), margin=0.5):
            continue
        if not ctx.high.free(xy, 0.0, np.array([crown_r, crown_r]) * 0.85):
            continue
        z0 = float(ctx.terrain_z(xy[None])[0] if not on_sidewalk else ctx.sidewalk_z(xy[None])[0]) - 0.05
        trunk_h = rng.uniform(2.8, 4.5)
        T = _se3(_rot_z(rng.uniform(0, 2 * math.pi)), np.array([xy[0], xy[1], z0]))
        ctx.builder.add(_cylinder(trunk_r, 0.0, trunk_h + 0.05, n=10, bottom=False), CLASS_IDS["trunk"], T)
        # the trunk ends inside the crown; the crown's bottom sits about 0.3 crown heights below the trunk top
        cz = trunk_h + 0.7 * crown_rz
        ctx.builder.add(_ellipsoid((crown_r, crown_r * rng.uniform(0.85, 1.0), crown_rz)), CLASS_IDS["vegetation"],
                        T @ _se3(np.eye(3), np.array([0.0, 0.0, cz])))
        ctx.low.mark(xy, 0.0, np.array([trunk_r, trunk_r]))
        ctx.high.mark(xy, 0.0, np.array([crown_r, crown_r]) * 0.85)
        ctx.objects.append(SceneObject("tree", (float(xy[0]), float(xy[1])), 0.0, (trunk_r, trunk_r),
                                       (z0, z0 + cz + crown_rz)))
        placed += 1


def _place_barriers(ctx: _Ctx, kind: str, count: int) -> None:
    """Fences (posts + rails or panels) and walls beyond the sidewalks, parallel or perpendicular to the road."""
    rng = ctx.rng
    s_lo, s_hi = ctx.s_range(margin=1.0)
    placed, attempts = 0, 0
    while placed < count and attempts < 40 * max(count, 1):
        attempts += 1
        side = 1 if rng.random() < 0.5 else -1
        s = rng.uniform(s_lo, s_hi)
        length = rng.uniform(4.0, 14.0)
        thick = rng.uniform(0.2, 0.4) if kind == "wall" else 0.08
        height = rng.uniform(0.6, 2.5) if kind == "wall" else rng.uniform(1.0, 1.8)
        if rng.random() < 0.7:  # parallel to the road, just behind the sidewalk
            d = side * (ctx.corridor + rng.uniform(0.3, 1.2) + thick / 2.0)
            xy, yaw = ctx.frame(s, d, side)
            half = np.array([length / 2.0, thick / 2.0])
        else:  # perpendicular, starting at the sidewalk edge
            d = side * (ctx.corridor + 0.3 + length / 2.0)
            xy, yaw = ctx.frame(s, d, side)
            yaw += math.pi / 2.0
            half = np.array([length / 2.0, thick / 2.0])
        samples = _rect_samples(xy, yaw, half, 7)
        _, ds = ctx.road.project(samples)
        if not ctx.inside(samples) or np.any(np.abs(ds) < ctx.corridor + 0.1):
            continue
        if not ctx.low.free(xy, yaw, half, margin=0.3):
            continue
        zt = ctx.terrain_z(samples)
        z0, ztop = float(zt.min()) - 0.05, float(zt.max()) + height
        T = _se3(_rot_z(yaw), np.array([xy[0], xy[1], 0.0]))
        if kind == "wall":
            ctx.builder.add(_box((-length / 2, -thick / 2, z0), (length / 2, thick / 2, ztop), bottom=False),
                            CLASS_IDS["wall"], T)
        else:
            lab = CLASS_IDS["fence"]
            n_posts = max(2, int(round(length / rng.uniform(2.0, 2.5))) + 1)
            for x in np.linspace(-length / 2 + 0.04, length / 2 - 0.04, n_posts):
                ctx.builder.add(_box((x - 0.04, -0.04, z0), (x + 0.04, 0.04, ztop), bottom=False), lab, T)
            if rng.random() < 0.5:  # rails
                for zr in np.linspace(z0 + 0.3 + (ztop - height - z0), ztop - 0.1, int(rng.integers(2, 4))):
                    ctx.builder.add(_box((-length / 2, -0.03, zr - 0.04), (length / 2, 0.03, zr + 0.04)), lab, T)
            else:  # mesh panel between bottom and top rails
                zb = z0 + 0.1 + (ztop - height - z0)
                ctx.builder.add(_box((-length / 2, -0.015, zb), (length / 2, 0.015, ztop - 0.05)), lab, T)
        ctx.low.mark(xy, yaw, half)
        ctx.objects.append(SceneObject(kind, (float(xy[0]), float(xy[1])), yaw, (float(half[0]), float(half[1])),
                                       (z0, ztop)))
        placed += 1


def generate_scene(config: SceneConfig, seed: int) -> Scene:
    """Generates a street scene, reproducibly from ``seed``.

    Args:
        config: what the scene contains.
        seed: seeds ``np.random.default_rng``; the same (config, seed) gives the same mesh and labels.

    Returns:
        The :class:`Scene` (world frame, metres, z up, square ``config.size_m`` centred on the origin).
    """
    import open3d as o3d

    rng = np.random.default_rng(seed)
    ground = _make_ground(config, rng)
    centerline = _make_centerline(config, rng)
    road = RoadPolyline(centerline)
    ctx = _Ctx(cfg=config, rng=rng, road=road, ground=ground, builder=_MeshBuilder(),
               low=_OccupancyGrid(config.size_m), high=_OccupancyGrid(config.size_m), objects=[])
    # each placement stage gets its own stream, so changing one object count leaves the others in place
    streams = rng.spawn(7)
    _add_road(ctx)
    ctx.rng = streams[0]
    building_rects = _place_buildings(ctx)
    _add_terrain(ctx, building_rects)
    ctx.rng = streams[1]
    _place_barriers(ctx, "wall", config.n_walls)
    ctx.rng = streams[2]
    _place_barriers(ctx, "fence", config.n_fences)
    ctx.rng = streams[3]
    _place_street_lights(ctx)
    ctx.rng = streams[4]
    _place_signs(ctx)
    ctx.rng = streams[5]
    _place_trees(ctx)
    ctx.rng = streams[6]
    _place_vehicles(ctx)
    verts, faces, labels = ctx.builder.build()
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(verts), o3d.utility.Vector3iVector(faces))
    scene = Scene(mesh=mesh, labels=labels, class_names=list(CLASS_NAMES), config=config, seed=int(seed),
                  road_centerline=centerline, ground=ground, objects=ctx.objects)
    scene._road = road
    return scene


# ------------------------------------------------------------------------------------------ surface samples


def triangle_areas(scene: Scene) -> np.ndarray:
    """(F,) float64 area of each triangle, m^2."""
    v, f = scene.vertices, scene.triangles
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)


def sample_surface(
    scene: Scene,
    spacing_m: float,
    seed: int,
    *,
    aabb: tuple[np.ndarray, np.ndarray] | None = None,
    return_labels: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Dense ground-truth samples of the scene surface, uniform over area.

    Each triangle gets ``area / spacing_m**2`` samples in expectation (the integer part exactly, the fraction
    by a coin flip), placed uniformly at random inside it: density ~ 1 / spacing_m^2 points per m^2.

    Args:
        scene: the scene.
        spacing_m: nominal sample spacing, metres.
        seed: seeds the sampling.
        aabb: optional world-frame box (lo (3,), hi (3,)); only triangles whose bounding boxes touch it are
            sampled (samples are not clipped to it).
        return_labels: also return each sample's class id.

    Returns:
        (M, 3) float32 world-frame points, metres; with ``return_labels`` also (M,) int32 class ids.
    """
    if not spacing_m > 0:
        raise ValueError(f"spacing_m must be positive, got {spacing_m!r}")
    rng = np.random.default_rng(seed)
    v, f = scene.vertices, scene.triangles
    tri_ids = np.arange(f.shape[0])
    if aabb is not None:
        lo, hi = (np.asarray(x, dtype=np.float64).reshape(3) for x in aabb)
        tv = v[f]
        keep = np.all(tv.max(axis=1) >= lo, axis=1) & np.all(tv.min(axis=1) <= hi, axis=1)
        tri_ids = tri_ids[keep]
    a, b, c = v[f[tri_ids, 0]], v[f[tri_ids, 1]], v[f[tri_ids, 2]]
    expected = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1) / float(spacing_m) ** 2
    counts = np.floor(expected).astype(np.int64)
    counts += rng.random(expected.shape[0]) < (expected - counts)
    which = np.repeat(np.arange(tri_ids.shape[0]), counts)
    # float32 throughout: one gather of (corner, edge, edge) per sample; ~2e-6 m rounding at 30 m
    base = np.repeat(np.concatenate([a, b - a, c - a], axis=1).astype(np.float32), counts, axis=0)
    u = rng.random((which.shape[0], 2), dtype=np.float32)
    u0, u1 = u[:, 0], u[:, 1]
    flip = (u0 + u1) > 1.0
    u0 = np.where(flip, 1.0 - u0, u0)
    u1 = np.where(flip, 1.0 - u1, u1)
    pts = base[:, 0:3] + u0[:, None] * base[:, 3:6]
    pts += u1[:, None] * base[:, 6:9]
    if return_labels:
        return pts, scene.labels[tri_ids[which]].astype(np.int32)
    return pts
