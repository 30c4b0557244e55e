"""People: pedestrians on the sidewalks and cyclists (rider + bicycle) at the road edge, riding with traffic."""

from __future__ import annotations

import math

import numpy as np

from gen3d_ros.sim.scene.classes import CLASS_IDS
from gen3d_ros.sim.scene.model import SceneObject
from gen3d_ros.sim.scene.placement import SceneBuilder
from gen3d_ros.sim.scene.primitives import Mesh, box, cylinder, ellipsoid
from gen3d_ros.sim.scene.transforms import rot_x, rot_y, rot_z, se3, transform_points


def _merge(parts: list[tuple[Mesh, np.ndarray]]) -> Mesh:
    """One mesh from (mesh, (4, 4) transform) parts."""
    verts, faces, n = [], [], 0
    for (v, f), T in parts:
        verts.append(transform_points(np.asarray(v, np.float64), T))
        faces.append(np.asarray(f) + n)
        n += v.shape[0]
    return np.concatenate(verts), np.concatenate(faces)


def person(rng: np.random.Generator, height: float, *, seated: bool = False) -> Mesh:
    """A person of ``height`` metres standing (or seated, legs forward) on the origin, facing +x: legs, torso,
    arms, head. Metres, own frame."""
    leg = 0.47 * height
    torso = 0.3 * height
    w = rng.uniform(0.32, 0.45)
    I = np.eye(3)
    parts: list[tuple[Mesh, np.ndarray]] = []
    hip = 0.0 if not seated else leg * 0.55
    for y in (-w / 4, w / 4):
        if seated:  # thighs forward, shins down
            parts.append((box((0.0, y - 0.07, hip - 0.08), (leg * 0.5, y + 0.07, hip + 0.06)), se3(I, np.zeros(3))))
            parts.append((box((leg * 0.45, y - 0.06, 0.0), (leg * 0.55, y + 0.06, hip)), se3(I, np.zeros(3))))
        else:
            stride = rng.uniform(-0.2, 0.2)
            parts.append((box((-0.07, y - 0.07, 0.0), (0.07, y + 0.07, leg)),
                          se3(rot_y(stride), np.zeros(3))))
    base = (leg if not seated else hip + 0.05)
    parts.append((box((-0.12, -w / 2, base), (0.12, w / 2, base + torso)), se3(I, np.zeros(3))))
    for y in (-w / 2 - 0.05, w / 2 + 0.05):
        parts.append((box((-0.05, y - 0.05, base + torso * 0.15), (0.05, y + 0.05, base + torso)),
                      se3(rot_y(rng.uniform(-0.3, 0.3)), np.zeros(3))))
    head_r = 0.1 * height / 1.75
    parts.append((ellipsoid((head_r * 0.9, head_r * 0.8, head_r * 1.15), n_lat=5, n_lon=8),
                  se3(I, np.array([0.0, 0.0, base + torso + 0.05 + head_r]))))
    return _merge(parts)


def bicycle(rng: np.random.Generator) -> tuple[Mesh, float]:
    """A bicycle along +x on the origin (two thin wheels, frame bars, saddle, handlebar) and its saddle height."""
    r = rng.uniform(0.3, 0.36)
    base = rng.uniform(1.0, 1.15)
    saddle = r + rng.uniform(0.45, 0.6)
    wheel = cylinder(r, -0.02, 0.02, n=14)
    parts: list[tuple[Mesh, np.ndarray]] = [
        (wheel, se3(rot_x(math.pi / 2), np.array([x, 0.0, r]))) for x in (-base / 2, base / 2)
    ]
    bar = lambda x0, z0, x1, z1: (box((0.0, -0.02, -0.02), (math.hypot(x1 - x0, z1 - z0), 0.02, 0.02)),  # noqa: E731
                                  se3(rot_y(-math.atan2(z1 - z0, x1 - x0)), np.array([x0, 0.0, z0])))
    crank = (0.0, r)
    parts += [bar(-base / 2, r, crank[0], crank[1]), bar(crank[0], crank[1], base / 2 - 0.1, saddle),
              bar(-base / 2, r, -0.1, saddle - 0.05), bar(-0.1, saddle - 0.05, base / 2 - 0.1, saddle),
              bar(base / 2 - 0.1, saddle, base / 2, r)]
    parts.append((box((-0.18, -0.08, saddle), (0.05, 0.08, saddle + 0.05)), se3(np.eye(3), np.zeros(3))))
    parts.append((box((base / 2 - 0.15, -0.3, saddle + 0.05), (base / 2 - 0.1, 0.3, saddle + 0.09)),
                  se3(np.eye(3), np.zeros(3))))
    return _merge(parts), saddle


def place_pedestrians(builder: SceneBuilder) -> None:
    """Up to ``n_pedestrians`` people on the sidewalks (a few crossing the road), random headings."""
    cfg, rng = builder.cfg, builder.rng
    s_lo, s_hi = builder.s_range(margin=1.0)
    placed, attempts = 0, 0
    while placed < cfg.n_pedestrians and attempts < 40 * max(cfg.n_pedestrians, 1):
        attempts += 1
        side = 1 if rng.random() < 0.5 else -1
        crossing = rng.random() < 0.15
        d = side * (rng.uniform(0.5, builder.half_road - 1.0) if crossing
                    else builder.half_road + rng.uniform(0.3, max(0.35, builder.cfg.sidewalk_width_m - 0.3)))
        s = rng.uniform(s_lo, s_hi)
        xy = builder.road.point(s)[0] + builder.road.normal(s)[0] * d
        half = np.array([0.3, 0.3])
        if not builder.inside(xy[None], margin=1.0) or not builder.low.free(xy, 0.0, half, margin=0.2):
            continue
        z0 = float((builder.ground.height(xy[None]) if crossing else builder.sidewalk_z(xy[None]))[0])
        height = rng.uniform(1.1, 1.95) if rng.random() < 0.15 else rng.uniform(1.55, 1.95)  # some children
        yaw = rng.uniform(0, 2 * math.pi)
        builder.mesh.add(person(rng, height), CLASS_IDS["pedestrian"], se3(rot_z(yaw), np.array([xy[0], xy[1], z0])))
        builder.low.mark(xy, 0.0, half)
        builder.objects.append(SceneObject("pedestrian", (float(xy[0]), float(xy[1])), yaw, (0.3, 0.3),
                                           (z0, z0 + height)))
        placed += 1


def place_cyclists(builder: SceneBuilder) -> None:
    """Up to ``n_cyclists`` riders on bicycles near the right-hand road edge, riding with the traffic."""
    cfg, rng = builder.cfg, builder.rng
    s_lo, s_hi = builder.s_range(margin=2.0)
    placed, attempts = 0, 0
    while placed < cfg.n_cyclists and attempts < 40 * max(cfg.n_cyclists, 1):
        attempts += 1
        side = 1 if rng.random() < 0.5 else -1
        d = side * (builder.half_road - rng.uniform(0.5, 1.0))
        s = rng.uniform(s_lo, s_hi)
        xy = builder.road.point(s)[0] + builder.road.normal(s)[0] * d
        yaw = float(builder.road.heading(s)[0]) + (0.0 if side < 0 else math.pi) + rng.normal(0.0, 0.05)
        half = np.array([0.95, 0.35])
        if not builder.inside(xy[None], margin=1.5) or not builder.low.free(xy, yaw, half, margin=0.3):
            continue
        z0 = float(builder.ground.height(xy[None])[0])
        T = se3(rot_z(yaw), np.array([xy[0], xy[1], z0]))
        bike, saddle = bicycle(rng)
        builder.mesh.add(bike, CLASS_IDS["cyclist"], T)
        rider = person(rng, rng.uniform(1.6, 1.9), seated=True)
        # seated rider on the saddle, leaning forward towards the handlebar
        lean = se3(rot_y(rng.uniform(0.2, 0.45)), np.array([-0.1, 0.0, saddle - 0.3]))
        builder.mesh.add(rider, CLASS_IDS["cyclist"], T @ lean)
        builder.low.mark(xy, yaw, half)
        builder.objects.append(SceneObject("cyclist", (float(xy[0]), float(xy[1])), yaw, (0.95, 0.35),
                                           (z0, z0 + saddle + 1.0)))
        placed += 1
