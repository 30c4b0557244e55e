"""Buildings beyond the sidewalks: footprints along both sides of the road, the building shell, and road-facing
facade relief (recessed windows, balconies, roof parapets)."""

from __future__ import annotations

import math

import numpy as np

from gen3d_ros.sim.scene.classes import CLASS_IDS
from gen3d_ros.sim.scene.config import BALCONY_DEPTH_M
from gen3d_ros.sim.scene.footprints import rect_samples
from gen3d_ros.sim.scene.model import SceneObject
from gen3d_ros.sim.scene.placement import SceneBuilder
from gen3d_ros.sim.scene.primitives import box
from gen3d_ros.sim.scene.transforms import rot_z, se3

_FACADE_RECESS_M = 0.25  # window recess depth


def _facade(builder: SceneBuilder, T: np.ndarray, W: float, D: float, z0: float, zg: float, z1: float) -> None:
    """Road-facing facade at local y = -D/2: piers/spandrels with recessed windows, balconies, parapet."""
    rng, b, lab = builder.rng, builder.mesh, CLASS_IDS["building"]
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
        b.add(box((-W / 2, y0, cursor), (W / 2, y1, zf + sill), bottom=False), lab, T)
        for x0e, x1e in edges:
            if x1e - x0e > 1e-6:
                b.add(box((x0e, y0, zf + sill), (x1e, y1, zf + sill + win_h)), lab, T)
        if balconies and floor >= 1:
            for wi in range(0, n_win, balcony_every):
                bx0, bx1 = wx0[wi] - 0.3, wx1[wi] + 0.3
                yb = y0 - BALCONY_DEPTH_M
                b.add(box((bx0, yb, zf), (bx1, y0, zf + 0.15)), lab, T)
                b.add(box((bx0, yb, zf + 0.15), (bx1, yb + 0.05, zf + 1.1)), lab, T)
        cursor = zf + sill + win_h
        zf += fh
        floor += 1
    b.add(box((-W / 2, y0, cursor), (W / 2, y1, z1), bottom=False), lab, T)


def _add_building(builder: SceneBuilder, center: np.ndarray, yaw: float, W: float, D: float, height: float) -> None:
    """A building of length ``W``, depth ``D`` and ``height`` (metres) on the terrain; its facade faces local -y."""
    cfg = builder.cfg
    T = se3(rot_z(yaw), np.array([center[0], center[1], 0.0]))
    footprint = rect_samples(center, yaw, np.array([W / 2, D / 2]), 4)
    zt = builder.terrain_z(footprint)
    z0, zg = float(zt.min()) - 0.05, float(zt.max())
    z1 = zg + height
    lab = CLASS_IDS["building"]
    r = _FACADE_RECESS_M if cfg.facade_detail else 0.0
    builder.mesh.add(box((-W / 2, -D / 2 + r, z0), (W / 2, D / 2, z1), bottom=False), lab, T)
    if cfg.facade_detail:
        _facade(builder, T, W, D, z0, zg, z1)
        if builder.rng.random() < 0.6:  # roof parapet
            t, h = 0.25, builder.rng.uniform(0.5, 1.0)
            for lo, hi in (((-W / 2, -D / 2, z1), (W / 2, -D / 2 + t, z1 + h)),
                           ((-W / 2, D / 2 - t, z1), (W / 2, D / 2, z1 + h)),
                           ((-W / 2, -D / 2 + t, z1), (-W / 2 + t, D / 2 - t, z1 + h)),
                           ((W / 2 - t, -D / 2 + t, z1), (W / 2, D / 2 - t, z1 + h))):
                builder.mesh.add(box(lo, hi), lab, T)
    if cfg.overhang_probability > 0 and builder.rng.random() < cfg.overhang_probability:
        # upper floors cantilevered over the facade (inside the balcony zone the placement kept free)
        depth, z_over = builder.rng.uniform(0.6, BALCONY_DEPTH_M), zg + builder.rng.uniform(3.0, 4.5)
        if z_over < z1 - 1.0:
            builder.mesh.add(box((-W / 2, -D / 2 - depth, z_over), (W / 2, -D / 2 + 0.3, z1)), lab, T)
    builder.objects.append(SceneObject("building", (float(center[0]), float(center[1])), yaw, (W / 2, D / 2),
                                       (z0, z1)))


def _room_to_border(p: np.ndarray, direction: np.ndarray, half: float) -> float:
    """Distance from ``p`` (2,) along unit ``direction`` (2,) to the border of the square [-half, half]^2."""
    t = np.inf
    for a in range(2):
        if abs(direction[a]) > 1e-9:
            t = min(t, ((half if direction[a] > 0 else -half) - p[a]) / direction[a])
    return float(max(t, 0.0))


def place_buildings(builder: SceneBuilder) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """Up to ``n_buildings`` buildings facing the road beyond the sidewalks; marks both occupancy grids.

    Returns each building's footprint rectangle (centre (2,) world xy, yaw radians, half sizes (2,)), metres.
    """
    cfg, rng = builder.cfg, builder.rng
    s_lo, s_hi = builder.s_range(margin=0.0)
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
        d_front = side * (builder.corridor + setback)
        s_line = np.linspace(s_c - W / 2.0, s_c + W / 2.0, 25)
        line = builder.road.point(s_line) + builder.road.normal(s_line) * d_front
        ok_line = np.all(np.abs(line) <= cfg.size_m / 2.0 - 0.6, axis=1)
        if not ok_line.any():
            continue
        if not ok_line.all():
            first, last = np.flatnonzero(ok_line)[[0, -1]]
            s0, s1 = s_line[first] + 0.3, s_line[last] - 0.3
            W, s_c = s1 - s0, (s0 + s1) / 2.0
            if W < cfg.building_width_m[0] * 0.6:
                continue
        front, yaw = builder.frame(s_c, d_front, side)
        D = min(D, _room_to_border(front, np.array([-math.sin(yaw), math.cos(yaw)]), cfg.size_m / 2.0 - 0.6))
        if D < 4.0:
            continue
        for attempt in range(3):  # shrink to fit the square or the curve
            center, yaw = builder.frame(s_c, side * (builder.corridor + setback + D / 2.0), side)
            # footprint incl. the balcony zone in front of the facade
            full_c = center - np.array([-math.sin(yaw), math.cos(yaw)]) * (BALCONY_DEPTH_M / 2.0)
            full_h = np.array([W / 2.0, D / 2.0 + BALCONY_DEPTH_M / 2.0])
            samples = rect_samples(full_c, yaw, full_h, 7)
            _, d = builder.road.project(samples)
            ok = builder.inside(samples) and bool(np.all(np.abs(d) >= builder.corridor + 0.3))
            if ok and builder.low.free(full_c, yaw, full_h, margin=0.3):
                builder.low.mark(full_c, yaw, full_h)
                builder.high.mark(center, yaw, np.array([W / 2.0, D / 2.0]))
                _add_building(builder, center, yaw, W, D, height)
                rects.append((center, yaw, np.array([W / 2.0, D / 2.0])))
                placed += 1
                break
            W, D = W * 0.8, D * 0.8
            if W < cfg.building_width_m[0] * 0.6 or D < 4.0:
                break
    return rects

