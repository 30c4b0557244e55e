"""Barriers beyond the sidewalks: walls and fences (posts with rails or a mesh panel)."""

from __future__ import annotations

import math

import numpy as np

from gen3d_ros.sim.scene.classes import CLASS_IDS
from gen3d_ros.sim.scene.footprints import rect_samples
from gen3d_ros.sim.scene.model import SceneObject
from gen3d_ros.sim.scene.placement import SceneBuilder
from gen3d_ros.sim.scene.primitives import box
from gen3d_ros.sim.scene.transforms import rot_z, se3


def place_barriers(builder: SceneBuilder, kind: str, count: int) -> None:
    """Fences (posts + rails or panels) and walls beyond the sidewalks, parallel or perpendicular to the road."""
    rng = builder.rng
    s_lo, s_hi = builder.s_range(margin=1.0)
    placed, attempts = 0, 0
    while placed < count and attempts < 40 * max(count, 1):
        attempts += 1
        side = 1 if rng.random() < 0.5 else -1
        s = rng.uniform(s_lo, s_hi)
        length = rng.uniform(4.0, 14.0)
        thick = rng.uniform(0.2, 0.4) if kind == "wall" else 0.08
        height = rng.uniform(0.6, 2.5) if kind == "wall" else rng.uniform(1.0, 1.8)
        if rng.random() < 0.7:  # parallel to the road, just behind the sidewalk
            d = side * (builder.corridor + rng.uniform(0.3, 1.2) + thick / 2.0)
            xy, yaw = builder.frame(s, d, side)
            half = np.array([length / 2.0, thick / 2.0])
        else:  # perpendicular, starting at the sidewalk edge
            d = side * (builder.corridor + 0.3 + length / 2.0)
            xy, yaw = builder.frame(s, d, side)
            yaw += math.pi / 2.0
            half = np.array([length / 2.0, thick / 2.0])
        samples = rect_samples(xy, yaw, half, 7)
        _, ds = builder.road.project(samples)
        if not builder.inside(samples) or np.any(np.abs(ds) < builder.corridor + 0.1):
            continue
        if not builder.low.free(xy, yaw, half, margin=0.3):
            continue
        zt = builder.terrain_z(samples)
        z0, ztop = float(zt.min()) - 0.05, float(zt.max()) + height
        T = se3(rot_z(yaw), np.array([xy[0], xy[1], 0.0]))
        if kind == "wall":
            builder.mesh.add(box((-length / 2, -thick / 2, z0), (length / 2, thick / 2, ztop), bottom=False),
                             CLASS_IDS["wall"], T)
        else:
            lab = CLASS_IDS["fence"]
            n_posts = max(2, int(round(length / rng.uniform(2.0, 2.5))) + 1)
            for x in np.linspace(-length / 2 + 0.04, length / 2 - 0.04, n_posts):
                builder.mesh.add(box((x - 0.04, -0.04, z0), (x + 0.04, 0.04, ztop), bottom=False), lab, T)
            if rng.random() < 0.5:  # rails
                for zr in np.linspace(z0 + 0.3 + (ztop - height - z0), ztop - 0.1, int(rng.integers(2, 4))):
                    builder.mesh.add(box((-length / 2, -0.03, zr - 0.04), (length / 2, 0.03, zr + 0.04)), lab, T)
            else:  # mesh panel between bottom and top rails
                zb = z0 + 0.1 + (ztop - height - z0)
                builder.mesh.add(box((-length / 2, -0.015, zb), (length / 2, 0.015, ztop - 0.05)), lab, T)
        builder.low.mark(xy, yaw, half)
        builder.objects.append(SceneObject(kind, (float(xy[0]), float(xy[1])), yaw, (float(half[0]), float(half[1])),
                                           (z0, ztop)))
        placed += 1

