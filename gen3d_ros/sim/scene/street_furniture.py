"""Street furniture on the sidewalks: street lights (pole, arm over the road, lamp) and traffic signs."""

from __future__ import annotations

import math

import numpy as np

from gen3d_ros.sim.scene.classes import CLASS_IDS
from gen3d_ros.sim.scene.model import SceneObject
from gen3d_ros.sim.scene.placement import SceneBuilder
from gen3d_ros.sim.scene.primitives import box, circle, cylinder, prism
from gen3d_ros.sim.scene.transforms import rot_x, rot_y, rot_z, se3


def _place_on_sidewalk(builder: SceneBuilder, s: float, d: float, half: np.ndarray, margin: float) -> bool:
    """True when a footprint of half sizes ``half`` (metres) at road coordinates (s, d) is inside and free."""
    xy = builder.road.point(s)[0] + builder.road.normal(s)[0] * d
    return builder.inside(xy[None], margin=1.0) and builder.low.free(xy, 0.0, half, margin=margin)


def place_street_lights(builder: SceneBuilder) -> None:
    """Up to ``n_poles`` street lights at the road edge of the sidewalks, alternating sides, arms over the road."""
    cfg, rng = builder.cfg, builder.rng
    if cfg.n_poles == 0:
        return
    s_lo, s_hi = builder.s_range(margin=1.5)
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
        d = side * (builder.half_road + min(0.5, cfg.sidewalk_width_m / 2.0))
        r = rng.uniform(0.08, 0.12)
        half = np.array([r, r])
        if not (s_lo <= s <= s_hi) or not _place_on_sidewalk(builder, s, d, half, margin=0.6):
            continue
        xy, yaw = builder.frame(s, d, side)  # local +y points away from the road
        if not builder.high.free(xy, yaw, np.array([0.5, 1.6]), margin=0.0):
            continue
        z0 = float(builder.sidewalk_z(xy[None])[0]) - 0.05
        h = rng.uniform(6.0, 9.0)
        arm = rng.uniform(1.2, 2.5)
        T = se3(rot_z(yaw), np.array([xy[0], xy[1], z0]))
        builder.mesh.add(cylinder(r, 0.0, h + 0.05, n=10, bottom=False), pole, T)
        # arm towards the road (local -y), then a lamp head
        v, f = cylinder(0.05, 0.0, arm, n=8)
        builder.mesh.add((v, f), pole, T @ se3(rot_x(math.pi / 2.0), np.array([0.0, 0.0, h - 0.1])))
        builder.mesh.add(box((-0.15, -arm - 0.5, h - 0.3), (0.15, -arm + 0.05, h - 0.1)), pole, T)
        builder.low.mark(xy, 0.0, half)
        builder.high.mark(xy, yaw, np.array([0.4, 0.4]))
        builder.objects.append(SceneObject("street_light", (float(xy[0]), float(xy[1])), yaw, (r, r), (z0, z0 + h)))
        placed += 1


def place_signs(builder: SceneBuilder) -> None:
    """Up to ``n_signs`` traffic signs (rectangle, disc or triangle plate on a pole) on the sidewalks."""
    cfg, rng = builder.cfg, builder.rng
    s_lo, s_hi = builder.s_range(margin=1.5)
    placed, attempts = 0, 0
    while placed < cfg.n_signs and attempts < 30 * max(cfg.n_signs, 1):
        attempts += 1
        side = 1 if rng.random() < 0.5 else -1
        s = rng.uniform(s_lo, s_hi)
        d = side * (builder.half_road + min(0.45, cfg.sidewalk_width_m / 2.0))
        r = 0.04
        if not _place_on_sidewalk(builder, s, d, np.array([0.4, 0.4]), margin=0.3):
            continue
        xy, yaw = builder.frame(s, d, side)
        if not builder.high.free(xy, yaw, np.array([0.5, 0.5])):
            continue
        z0 = float(builder.sidewalk_z(xy[None])[0]) - 0.05
        h = rng.uniform(2.0, 2.8)
        T = se3(rot_z(yaw), np.array([xy[0], xy[1], z0]))
        builder.mesh.add(cylinder(r, 0.0, h + 0.05, n=8, bottom=False), CLASS_IDS["pole"], T)
        # plate faces along the road (its normal is local x); shapes: rectangle, disc, triangle
        shape = int(rng.integers(0, 3))
        Tp = T @ se3(rot_y(math.pi / 2.0), np.array([0.06, 0.0, h - 0.3]))  # plate plane = local y-z
        if shape == 0:
            a, b = rng.uniform(0.25, 0.4), rng.uniform(0.25, 0.4)
            v, f = prism(np.array([[-a, -b], [a, -b], [a, b], [-a, b]]), -0.015, 0.015)
        elif shape == 1:
            v, f = prism(circle(rng.uniform(0.3, 0.4), 14), -0.015, 0.015)
        else:
            e = rng.uniform(0.35, 0.45)
            v, f = prism(circle(e, 3) @ rot_z(math.pi)[:2, :2].T, -0.015, 0.015)
        builder.mesh.add((v, f), CLASS_IDS["traffic_sign"], Tp)
        builder.low.mark(xy, 0.0, np.array([r, r]))
        builder.high.mark(xy, yaw, np.array([0.45, 0.45]))
        builder.objects.append(SceneObject("sign", (float(xy[0]), float(xy[1])), yaw, (r, r), (z0, z0 + h + 0.1)))
        placed += 1

