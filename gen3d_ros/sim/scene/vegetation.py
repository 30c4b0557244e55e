"""Vegetation: trees (trunk + ellipsoid crown) on the sidewalks and the terrain."""

from __future__ import annotations

import math

import numpy as np

from gen3d_ros.sim.scene.classes import CLASS_IDS
from gen3d_ros.sim.scene.model import SceneObject
from gen3d_ros.sim.scene.placement import SceneBuilder
from gen3d_ros.sim.scene.primitives import cylinder, ellipsoid
from gen3d_ros.sim.scene.transforms import rot_z, se3


def place_trees(builder: SceneBuilder) -> None:
    """Up to ``n_trees`` trees on the sidewalks (when wide enough) and on the terrain beyond them."""
    cfg, rng = builder.cfg, builder.rng
    s_lo, s_hi = builder.s_range(margin=1.0)
    placed, attempts = 0, 0
    sidewalk_ok = cfg.sidewalk_width_m >= 1.4
    while placed < cfg.n_trees and attempts < 40 * max(cfg.n_trees, 1):
        attempts += 1
        side = 1 if rng.random() < 0.5 else -1
        s = rng.uniform(s_lo, s_hi)
        on_sidewalk = sidewalk_ok and rng.random() < 0.6
        if on_sidewalk:
            d = side * (builder.corridor - 0.7)
        else:
            d = side * (builder.corridor + rng.uniform(1.0, 12.0))
        trunk_r = rng.uniform(0.12, 0.3)
        crown_r = rng.uniform(1.2, 2.5) if on_sidewalk else rng.uniform(1.5, 3.2)
        crown_rz = rng.uniform(1.2, 2.5)
        xy = builder.road.point(s)[0] + builder.road.normal(s)[0] * d
        if not builder.inside(xy[None], margin=crown_r * 0.5 + 0.5):
            continue
        if not builder.low.free(xy, 0.0, np.array([trunk_r, trunk_r]), margin=0.5):
            continue
        if not builder.high.free(xy, 0.0, np.array([crown_r, crown_r]) * 0.85):
            continue
        z0 = float(builder.terrain_z(xy[None])[0] if not on_sidewalk else builder.sidewalk_z(xy[None])[0]) - 0.05
        trunk_h = rng.uniform(2.8, 4.5)
        T = se3(rot_z(rng.uniform(0, 2 * math.pi)), np.array([xy[0], xy[1], z0]))
        builder.mesh.add(cylinder(trunk_r, 0.0, trunk_h + 0.05, n=10, bottom=False), CLASS_IDS["trunk"], T)
        # the trunk ends inside the crown; the crown's bottom sits about 0.3 crown heights below the trunk top
        cz = trunk_h + 0.7 * crown_rz
        builder.mesh.add(ellipsoid((crown_r, crown_r * rng.uniform(0.85, 1.0), crown_rz)), CLASS_IDS["vegetation"],
                         T @ se3(np.eye(3), np.array([0.0, 0.0, cz])))
        builder.low.mark(xy, 0.0, np.array([trunk_r, trunk_r]))
        builder.high.mark(xy, 0.0, np.array([crown_r, crown_r]) * 0.85)
        builder.objects.append(SceneObject("tree", (float(xy[0]), float(xy[1])), 0.0, (trunk_r, trunk_r),
                                           (z0, z0 + cz + crown_rz)))
        placed += 1

