"""Vehicles on the road (cars, vans, trucks), parked at the curb or in their lane, tilted onto the ground."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from gen3d_ros.sim.scene.classes import CLASS_IDS
from gen3d_ros.sim.scene.footprints import rect_samples
from gen3d_ros.sim.scene.model import SceneObject
from gen3d_ros.sim.scene.placement import SceneBuilder
from gen3d_ros.sim.scene.primitives import box, cylinder
from gen3d_ros.sim.scene.transforms import align_z, rot_x, rot_z, se3


def _oriented_on_ground(builder: SceneBuilder, xy: np.ndarray, yaw: float, z_offset: float = 0.0) -> np.ndarray:
    """Pose of an object standing on the road at ``xy``, tilted onto the ground normal."""
    n = builder.ground.normal(xy[None])[0]
    z = float(builder.ground.height(xy[None])[0]) + z_offset
    return se3(align_z(n) @ rot_z(yaw), np.array([xy[0], xy[1], z]))


_Boxes = list[tuple[Sequence[float], Sequence[float]]]
_Wheels = list[tuple[float, float, float]]


def _four_wheels(base: float, track: float, r: float) -> _Wheels:
    """Wheels (x, y, radius) at (+-base, +-track), metres, vehicle frame."""
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
    elif kind in ("compact", "pickup", "bus"):
        return _more_vehicle_parts(kind, rng)
    else:
        raise ValueError(f"unknown vehicle kind {kind!r}")
    return boxes, wheels, L, W, height


def _more_vehicle_parts(kind: str, rng: np.random.Generator) -> tuple[_Boxes, _Wheels, float, float, float]:
    """Parts of the ``vehicle_variety`` kinds: compact car (3.4-3.9 m), pickup (5.2-5.9 m), bus (10-12 m)."""
    if kind == "compact":
        L, W, r = rng.uniform(3.4, 3.9), rng.uniform(1.6, 1.75), rng.uniform(0.27, 0.3)
        top = rng.uniform(1.4, 1.6)
        boxes = [((-L / 2, -W / 2, 0.22), (L / 2, W / 2, 0.85)),
                 ((-L / 2 + 0.1, -W / 2 + 0.08, 0.85), (L / 2 - 0.9, W / 2 - 0.08, top))]
        return boxes, _four_wheels(L / 2 - 0.6, W / 2 - 0.12, r), L, W, top
    if kind == "pickup":
        L, W, r = rng.uniform(5.2, 5.9), rng.uniform(1.9, 2.05), rng.uniform(0.38, 0.42)
        top = rng.uniform(1.8, 1.95)
        bed = L * 0.4
        boxes = [((-L / 2, -W / 2, 0.45), (L / 2, W / 2, 1.05)),
                 ((-L / 2 + bed, -W / 2 + 0.08, 1.05), (L / 2 - 0.9, W / 2 - 0.08, top)),
                 ((-L / 2, -W / 2, 1.05), (-L / 2 + bed, -W / 2 + 0.06, 1.5)),
                 ((-L / 2, W / 2 - 0.06, 1.05), (-L / 2 + bed, W / 2, 1.5))]
        return boxes, _four_wheels(L / 2 - 1.0, W / 2 - 0.15, r), L, W, top
    L, W, r = rng.uniform(10.0, 12.0), rng.uniform(2.45, 2.55), rng.uniform(0.48, 0.52)
    top = rng.uniform(2.9, 3.2)
    boxes = [((-L / 2, -W / 2, 0.35), (L / 2, W / 2, top))]
    return boxes, _four_wheels(L / 2 - 2.5, W / 2 - 0.2, r), L, W, top


def place_vehicles(builder: SceneBuilder) -> None:
    """Up to ``n_cars`` vehicles (car, van, truck) parked at the curb or driving in their lane (right-hand
    traffic), keeping a clear strip along the centreline for the sensor."""
    cfg, rng = builder.cfg, builder.rng
    s_lo, s_hi = builder.s_range(margin=3.0)
    placed, attempts = 0, 0
    lab = CLASS_IDS["car"]
    while placed < cfg.n_cars and attempts < 40 * max(cfg.n_cars, 1):
        attempts += 1
        if cfg.vehicle_variety:
            kind = str(rng.choice(["car", "van", "truck", "compact", "pickup", "bus"],
                                  p=[0.4, 0.15, 0.08, 0.17, 0.12, 0.08]))
        else:
            kind = str(rng.choice(["car", "van", "truck"], p=[0.65, 0.23, 0.12]))
        boxes, wheels, L, W, height = _vehicle_parts(kind, rng)
        side = 1 if rng.random() < 0.5 else -1
        parked = kind not in ("truck", "bus") and rng.random() < 0.5
        if parked:
            d = side * (builder.half_road - W / 2.0 - 0.25)
            forward = rng.random() < 0.85  # parked cars mostly face the flow of their lane
        else:
            d = side * max(builder.half_road / 2.0, W / 2.0 + 0.6)
            forward = True
        if abs(d) - W / 2.0 < 0.5:  # narrow road: keep a clear strip along the centreline for the sensor
            continue
        s = rng.uniform(s_lo, s_hi)
        xy = builder.road.point(s)[0] + builder.road.normal(s)[0] * d
        heading = float(builder.road.heading(s)[0])
        # right-hand traffic: the lane right of the centreline (side -1) drives towards +s
        yaw = heading + (0.0 if (side < 0) == forward else math.pi) + rng.normal(0.0, 0.03)
        half = np.array([L / 2.0, W / 2.0])
        samples = rect_samples(xy, yaw, half, 5)
        _, ds = builder.road.project(samples)
        if not builder.inside(samples, margin=1.0):
            continue
        if np.any(np.abs(ds) > builder.half_road - 0.1) or np.any(np.abs(ds) < 0.45) or np.any(np.sign(ds) != side):
            continue
        if not builder.low.free(xy, yaw, half, margin=0.6):
            continue
        builder.low.mark(xy, yaw, half)
        T = _oriented_on_ground(builder, xy, yaw)
        for lo, hi in boxes:
            builder.mesh.add(box(lo, hi), lab, T)
        for wx, wy, r in wheels:
            v, f = cylinder(r, -0.11, 0.11, n=12)
            Tw = T @ se3(rot_x(math.pi / 2.0), np.array([wx, wy, r]))
            builder.mesh.add((v, f), lab, Tw)
        builder.objects.append(SceneObject(kind, (float(xy[0]), float(xy[1])), yaw, (L / 2, W / 2),
                                           (float(T[2, 3]), float(T[2, 3]) + height)))
        placed += 1



def place_parking_lot(builder: SceneBuilder) -> None:
    """With ``parking_lot_probability``, one parking lot beyond a sidewalk: a flat asphalt slab (class ``road``)
    with bay lines and a row of vehicles parked nose-in, perpendicular to the road."""
    cfg, rng = builder.cfg, builder.rng
    if rng.random() >= cfg.parking_lot_probability:
        return
    s_lo, s_hi = builder.s_range(margin=2.0)
    for _ in range(30):
        side = 1 if rng.random() < 0.5 else -1
        length, depth = rng.uniform(12.0, 22.0), rng.uniform(8.0, 12.0)
        xy, yaw = builder.frame(rng.uniform(s_lo, s_hi), side * (builder.corridor + 0.3 + depth / 2.0), side)
        half = np.array([length / 2.0, depth / 2.0])
        samples = rect_samples(xy, yaw, half, 6)
        if not builder.inside(samples, margin=0.5) or not builder.low.free(xy, yaw, half, margin=0.2):
            continue
        zt = builder.terrain_z(samples)
        z_top = float(zt.max()) + 0.03
        T = se3(rot_z(yaw), np.array([xy[0], xy[1], 0.0]))
        builder.mesh.add(box((-half[0], -half[1], float(zt.min()) - 0.05), (half[0], half[1], z_top), bottom=False),
                         CLASS_IDS["road"], T)
        bay = rng.uniform(2.4, 2.7)
        xs = np.arange(-half[0] + 0.3, half[0] - 0.3 + 1e-9, bay)
        for x in xs:  # bay lines, from the far edge over 5 m towards the road
            builder.mesh.add(box((x - 0.06, half[1] - 5.2, z_top), (x + 0.06, half[1] - 0.2, z_top + 0.005)),
                             CLASS_IDS["lane_marking"], T)
        for x0, x1 in zip(xs[:-1], xs[1:]):
            if rng.random() < 0.35:
                continue
            kind = str(rng.choice(["car", "compact", "van", "pickup"], p=[0.5, 0.2, 0.15, 0.15]))
            boxes, wheels, L, W, _ = _vehicle_parts(kind, rng)
            if W > (x1 - x0) - 0.3:
                continue
            Tv = T @ se3(rot_z(math.pi / 2 * (1 if rng.random() < 0.5 else -1)),
                         np.array([(x0 + x1) / 2, half[1] - 0.3 - L / 2, z_top]))
            for lo, hi in boxes:
                builder.mesh.add(box(lo, hi), CLASS_IDS["car"], Tv)
            for wx, wy, r in wheels:
                builder.mesh.add(cylinder(r, -0.11, 0.11, n=12), CLASS_IDS["car"],
                                 Tv @ se3(rot_x(math.pi / 2.0), np.array([wx, wy, r])))
        builder.low.mark(xy, yaw, half)
        builder.objects.append(SceneObject("parking_lot", (float(xy[0]), float(xy[1])), yaw,
                                           (float(half[0]), float(half[1])), (float(zt.min()), z_top)))
        return