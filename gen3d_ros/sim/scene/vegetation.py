"""Vegetation: trees (trunk + crown) on the sidewalks and the terrain; hedges, bushes and grass verges.

Porous vegetation (``porous_canopies`` crowns, hedges, bushes, grass) is a cloud of small leaf clusters
(octahedra, 8 triangles each) filling its volume at a random density: beams pass between the clusters, so a
sweep sees into and through the canopy, and the ground truth is a porous volume rather than a closed shell.
"""

from __future__ import annotations

import math

import numpy as np

from gen3d_ros.sim.scene.classes import CLASS_IDS
from gen3d_ros.sim.scene.model import SceneObject
from gen3d_ros.sim.scene.placement import SceneBuilder
from gen3d_ros.sim.scene.primitives import Mesh, cylinder, ellipsoid
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
        radii = (crown_r, crown_r * rng.uniform(0.85, 1.0), crown_rz)
        crown = leaf_cloud(rng, radii, density_per_m=rng.uniform(0.3, 0.9)) if cfg.porous_canopies else ellipsoid(radii)
        builder.mesh.add(crown, CLASS_IDS["vegetation"], T @ se3(np.eye(3), np.array([0.0, 0.0, cz])))
        builder.low.mark(xy, 0.0, np.array([trunk_r, trunk_r]))
        builder.high.mark(xy, 0.0, np.array([crown_r, crown_r]) * 0.85)
        builder.objects.append(SceneObject("tree", (float(xy[0]), float(xy[1])), 0.0, (trunk_r, trunk_r),
                                           (z0, z0 + cz + crown_rz)))
        placed += 1



def leaf_cloud(rng: np.random.Generator, radii: tuple[float, float, float], *, density_per_m: float = 0.6,
               cluster_m: tuple[float, float] = (0.12, 0.3), shape: str = "ellipsoid",
               shell_bias: float = 2.0) -> Mesh:
    """Small leaf clusters (octahedra) filling an ellipsoid (semi-axes ``radii``) or a box (half sizes
    ``radii``) centred on the origin, metres.

    ``density_per_m``: expected clusters a ray meets per metre inside the volume (an extinction coefficient:
    a beam crossing ``l`` metres of it passes with probability ~exp(-density * l)). An octahedron of
    circumradius s shows on average sqrt(3) s^2 m^2 to a ray. ``shell_bias`` > 1 puts more clusters near the
    surface, as foliage grows towards the light. At most 2500 clusters.
    """
    radii_a = np.asarray(radii, dtype=np.float64)
    volume = (4.0 / 3.0 * math.pi if shape == "ellipsoid" else 8.0) * float(np.prod(radii_a))
    size = rng.uniform(*cluster_m, 1)[0]
    n = int(min(2500, max(4, density_per_m * volume / (math.sqrt(3.0) * size**2))))
    if shape == "ellipsoid":
        d = rng.normal(size=(n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        centres = d * rng.random(n)[:, None] ** (1.0 / (3.0 * shell_bias)) * radii_a
    else:
        centres = rng.uniform(-1.0, 1.0, (n, 3)) * radii_a
    sizes = size * rng.uniform(0.6, 1.4, n)
    # one octahedron per cluster, randomly turned about z: vertices +-x, +-y, +-z
    ang = rng.uniform(0.0, math.pi, n)
    c, s_ = np.cos(ang), np.sin(ang)
    ex = np.stack([c, s_, np.zeros(n)], 1)
    ey = np.stack([-s_, c, np.zeros(n)], 1)
    ez = np.tile([0.0, 0.0, 1.0], (n, 1))
    offs = np.stack([ex, -ex, ey, -ey, ez, -ez], 1) * sizes[:, None, None]
    verts = (centres[:, None, :] + offs).reshape(-1, 3)
    base = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    faces = (base[None] + 6 * np.arange(n)[:, None, None]).reshape(-1, 3)
    return verts, faces.astype(np.int64)


def place_hedges(builder: SceneBuilder) -> None:
    """Up to ``n_hedges`` hedges (porous boxes 0.6-1.2 m wide, 0.8-2 m tall) behind the sidewalks, along the road."""
    cfg, rng = builder.cfg, builder.rng
    s_lo, s_hi = builder.s_range(margin=1.0)
    placed, attempts = 0, 0
    while placed < cfg.n_hedges and attempts < 40 * max(cfg.n_hedges, 1):
        attempts += 1
        side = 1 if rng.random() < 0.5 else -1
        length, width, height = rng.uniform(3.0, 12.0), rng.uniform(0.6, 1.2), rng.uniform(0.8, 2.0)
        d = side * (builder.corridor + rng.uniform(0.2, 1.0) + width / 2.0)
        xy, yaw = builder.frame(rng.uniform(s_lo, s_hi), d, side)
        half = np.array([length / 2.0, width / 2.0])
        if not builder.inside(xy[None], margin=length / 2.0 + 0.5) or not builder.low.free(xy, yaw, half, margin=0.2):
            continue
        z0 = float(builder.terrain_z(xy[None])[0])
        T = se3(rot_z(yaw), np.array([xy[0], xy[1], z0 + height / 2.0]))
        cloud = leaf_cloud(rng, (length / 2.0, width / 2.0, height / 2.0), density_per_m=rng.uniform(1.0, 2.5),
                           cluster_m=(0.08, 0.18), shape="box")
        builder.mesh.add(cloud, CLASS_IDS["hedge"], T)
        builder.low.mark(xy, yaw, half)
        builder.objects.append(SceneObject("hedge", (float(xy[0]), float(xy[1])), yaw, (float(half[0]),
                                           float(half[1])), (z0, z0 + height)))
        placed += 1


def place_bushes(builder: SceneBuilder) -> None:
    """Up to ``n_bushes`` bushes (porous ellipsoids 0.4-1.2 m radius) on the terrain beyond the sidewalks."""
    cfg, rng = builder.cfg, builder.rng
    s_lo, s_hi = builder.s_range(margin=1.0)
    placed, attempts = 0, 0
    while placed < cfg.n_bushes and attempts < 40 * max(cfg.n_bushes, 1):
        attempts += 1
        side = 1 if rng.random() < 0.5 else -1
        r, rz = rng.uniform(0.4, 1.2), rng.uniform(0.35, 0.9)
        s = rng.uniform(s_lo, s_hi)
        xy = builder.road.point(s)[0] + builder.road.normal(s)[0] * side * (builder.corridor + rng.uniform(0.3, 10.0)
                                                                             + r)
        half = np.array([r, r])
        if not builder.inside(xy[None], margin=r + 0.5) or not builder.low.free(xy, 0.0, half, margin=0.2):
            continue
        z0 = float(builder.terrain_z(xy[None])[0])
        T = se3(rot_z(rng.uniform(0, 2 * math.pi)), np.array([xy[0], xy[1], z0 + 0.8 * rz]))
        builder.mesh.add(leaf_cloud(rng, (r, r * rng.uniform(0.8, 1.0), rz), density_per_m=rng.uniform(0.8, 2.0),
                                    cluster_m=(0.08, 0.16)), CLASS_IDS["bush"], T)
        builder.low.mark(xy, 0.0, half)
        builder.objects.append(SceneObject("bush", (float(xy[0]), float(xy[1])), 0.0, (r, r), (z0, z0 + 1.8 * rz)))
        placed += 1


def add_grass(builder: SceneBuilder) -> None:
    """Grass tufts (thin pyramids 0.1-0.35 m tall, ~3 per m^2) on the 2 m terrain strips just beyond both
    sidewalks, where nothing else stands."""
    rng = builder.rng
    s_lo, s_hi = builder.s_range(margin=0.5)
    n = int(3.0 * 2.0 * 2.0 * (s_hi - s_lo))
    s = rng.uniform(s_lo, s_hi, n)
    d = np.where(rng.random(n) < 0.5, 1.0, -1.0) * (builder.corridor + rng.uniform(0.05, 2.0, n))
    xy = builder.road.point(s) + builder.road.normal(s) * d[:, None]
    ok = np.all(np.abs(xy) <= builder.cfg.size_m / 2.0 - 0.2, axis=1)
    ok &= ~builder.low.occ[_cells(builder, xy)]
    xy = xy[ok]
    z = builder.terrain_z(xy)
    h = rng.uniform(0.1, 0.35, xy.shape[0])
    w = rng.uniform(0.05, 0.12, xy.shape[0])
    ang = rng.uniform(0, 2 * math.pi, xy.shape[0])
    corners = [np.stack([np.cos(ang + k * 2 * math.pi / 3), np.sin(ang + k * 2 * math.pi / 3)], 1) for k in range(3)]
    base = [np.column_stack([xy + w[:, None] * c, z - 0.02]) for c in corners]
    tip = np.column_stack([xy + rng.normal(0, 0.03, xy.shape), z + h])
    verts = np.stack([*base, tip], 1).reshape(-1, 3)
    faces = (np.array([[0, 1, 3], [1, 2, 3], [2, 0, 3]])[None] + 4 * np.arange(xy.shape[0])[:, None, None])
    builder.mesh.add((verts, faces.reshape(-1, 3)), CLASS_IDS["grass"])


def _cells(builder: SceneBuilder, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Occupancy-grid cell indices (ix, iy) of world points xy (N, 2)."""
    g = builder.low
    idx = np.clip(np.floor((xy + g.half) / g.cell).astype(int), 0, g.n - 1)
    return idx[:, 0], idx[:, 1]
