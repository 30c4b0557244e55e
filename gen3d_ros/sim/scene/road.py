"""The ground under the scene: the analytic ground model, the road centreline, the road cross-section
(asphalt, lane markings, curbs, sidewalks) and the terrain heightfield around it."""

from __future__ import annotations

import math

import numpy as np

from gen3d_ros.sim.scene.classes import CLASS_IDS
from gen3d_ros.sim.scene.config import SceneConfig
from gen3d_ros.sim.scene.model import GroundModel
from gen3d_ros.sim.scene.placement import SceneBuilder
from gen3d_ros.sim.scene.transforms import rot_z

_MARKING_LIFT_M = 0.005  # lane markings float this much above the asphalt


def make_ground(cfg: SceneConfig, rng: np.random.Generator) -> GroundModel:
    """A random tilted plane plus three sinusoidal undulations, its gradient bounded by ``cfg.max_slope_deg``."""
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


def make_centerline(cfg: SceneConfig, rng: np.random.Generator) -> np.ndarray:
    """(K, 2) world xy of a straight or gently bent road centreline crossing the scene square, 0.5 m apart."""
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
    xy = np.column_stack([u, v]) @ rot_z(yaw)[:2, :2].T
    # keep the run of vertices whose corridor can reach into the square
    reach = cfg.road_width_m / 2.0 + cfg.sidewalk_width_m + 1.0
    inside = np.all(np.abs(xy) <= half + reach, axis=1)
    idx = np.flatnonzero(inside)
    lo, hi = max(idx.min() - 1, 0), min(idx.max() + 2, xy.shape[0])
    return xy[lo:hi]


def add_road(builder: SceneBuilder) -> None:
    """Road, lane markings, curbs and sidewalks as ribbons along the centreline."""
    cfg, road = builder.cfg, builder.road
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
    z = builder.ground.height(xy.reshape(-1, 2)).reshape(k, -1) + dz[None, :]
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
    builder.mesh.add((verts, faces_all[keep]), labels[keep])
    # lane markings: dashed centre line (3 m dash, 6 m gap) and solid edge lines, lifted a few mm
    lifted = verts.copy()
    lifted[:, 2] += _MARKING_LIFT_M
    dash_rows = rows[(s[rows] % 9.0 < 3.0) & ((s[rows] + 0.5) % 9.0 < 3.0)]
    marks = np.concatenate([ribbon_faces(p_idx, r) for p_idx, r in ((6, dash_rows), (4, rows), (8, rows))])
    builder.mesh.add((lifted, marks[inside(marks)]), lid["lane_marking"])


def add_terrain(builder: SceneBuilder, building_rects: list[tuple[np.ndarray, float, np.ndarray]]) -> None:
    """Heightfield grid over the square, minus the road corridor and building interiors."""
    cfg = builder.cfg
    step = min(cfg.terrain_resolution_m, cfg.sidewalk_width_m / 2.0)
    n = int(math.ceil(cfg.size_m / step))
    g = np.linspace(-cfg.size_m / 2.0, cfg.size_m / 2.0, n + 1)
    gx, gy = np.meshgrid(g, g, indexing="ij")
    xy = np.column_stack([gx.ravel(), gy.ravel()])
    z = builder.terrain_z(xy)
    _, d = builder.road.project(xy)
    in_corridor = np.abs(d) < builder.corridor
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
    builder.mesh.add((verts, inverse.reshape(-1, 3)), CLASS_IDS["terrain"])

