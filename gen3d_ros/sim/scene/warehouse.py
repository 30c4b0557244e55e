"""The indoor scene type (``SceneConfig.kind = "warehouse"``): a hall for mobile robots.

A flat floor (class ``floor``) in a closed hall of ``size_m`` (walls and a roof, class ``wall``), a central
aisle along the hall's x axis (the scene's "road": sensor poses ride on it), rows of pallet racks on both sides
(uprights, beams and shelves, class ``rack``) with crates (``crate``) and pallets (``pallet``) on them, loose
pallets and stacks of crates on the floor, roof columns (``pole``) and ``n_pedestrians`` people in the aisles.
"""

from __future__ import annotations

import math

import numpy as np

from gen3d_ros.sim.scene.classes import CLASS_IDS
from gen3d_ros.sim.scene.config import SceneConfig
from gen3d_ros.sim.scene.model import GroundModel, SceneObject
from gen3d_ros.sim.scene.people import person
from gen3d_ros.sim.scene.primitives import MeshBuilder, box
from gen3d_ros.sim.scene.transforms import rot_z, se3


def build_warehouse(cfg: SceneConfig, rng: np.random.Generator) -> tuple[MeshBuilder, np.ndarray, GroundModel,
                                                                          list[SceneObject]]:
    """The hall's labelled mesh, aisle centreline (K, 2) world xy, flat ground and placed objects."""
    mesh, objects = MeshBuilder(), []
    half = cfg.size_m / 2.0
    height = rng.uniform(7.0, 12.0)
    L = CLASS_IDS
    mesh.add(box((-half, -half, -0.2), (half, half, 0.0), bottom=False), L["floor"])
    t = 0.3
    for lo, hi in (((-half - t, -half - t, 0.0), (half + t, -half, height)),
                   ((-half - t, half, 0.0), (half + t, half + t, height)),
                   ((-half - t, -half, 0.0), (-half, half, height)), ((half, -half, 0.0), (half + t, half, height)),
                   ((-half, -half, height), (half, half, height + 0.3))):
        mesh.add(box(lo, hi), L["wall"])
    aisle_y = rng.uniform(-2.0, 2.0)
    aisle_half = rng.uniform(1.6, 2.6)
    centerline = np.column_stack([np.linspace(-half * 1.6, half * 1.6, 200), np.full(200, aisle_y)])
    for side in (1, -1):
        y = aisle_y + side * aisle_half
        while abs(y) < half - 2.0:
            depth = rng.uniform(0.9, 1.3)
            y_in, y_out = (y, y + side * depth)
            if abs(y_out) > half - 0.5:
                break
            _rack_row(mesh, rng, (min(y_in, y_out), max(y_in, y_out)), half, objects)
            y = y_out + side * (rng.uniform(0.1, 0.3) if rng.random() < 0.5 else rng.uniform(2.5, 3.5))
    _floor_clutter(mesh, rng, aisle_y, aisle_half, half, objects)
    for k in range(cfg.n_pedestrians if "pedestrian" not in cfg.exclude_classes else 0):
        xy = np.array([rng.uniform(-half + 2, half - 2), aisle_y + rng.uniform(-aisle_half + 0.4, aisle_half - 0.4)])
        if abs(xy[0]) < 3.0:  # leave the middle of the aisle to the sensor
            continue
        h = rng.uniform(1.55, 1.95)
        mesh.add(person(rng, h), L["pedestrian"], se3(rot_z(rng.uniform(0, 2 * math.pi)), np.array([*xy, 0.0])))
        objects.append(SceneObject("pedestrian", (float(xy[0]), float(xy[1])), 0.0, (0.3, 0.3), (0.0, h)))
    for x in np.arange(-half + 6.0, half - 3.0, rng.uniform(8.0, 14.0)):  # roof columns along the walls
        for y in (-half + 0.6, half - 0.6):
            mesh.add(box((x - 0.2, y - 0.2, 0.0), (x + 0.2, y + 0.2, height)), L["pole"])
    return mesh, centerline, GroundModel.flat(), objects


def _rack_row(mesh: MeshBuilder, rng: np.random.Generator, y_range: tuple[float, float], half: float,
              objects: list[SceneObject]) -> None:
    """One row of pallet racks along x between ``y_range`` (metres), with cross aisles every few bays."""
    L = CLASS_IDS
    y0, y1 = y_range
    levels = int(rng.integers(2, 5))
    level_h = rng.uniform(1.2, 1.8)
    bay = rng.uniform(2.4, 3.0)
    x = -half + rng.uniform(1.5, 3.0)
    while x + bay < half - 1.5:
        n_bays = int(rng.integers(3, 8))
        x_end = min(x + n_bays * bay, half - 1.5)
        top = levels * level_h + 0.2
        for xu in np.arange(x, x_end + 1e-6, bay):  # uprights at both faces
            for yu in (y0, y1 - 0.08):
                mesh.add(box((xu, yu, 0.0), (xu + 0.08, yu + 0.08, top)), L["rack"])
        for k in range(1, levels + 1):  # beams + a shelf deck per level
            z = k * level_h
            mesh.add(box((x, y0, z - 0.12), (x_end, y1, z)), L["rack"])
        for xb in np.arange(x, x_end - bay + 1e-6, bay):  # loads: a pallet + crates, per bay and level
            for k in range(0, levels):
                if rng.random() < 0.3:
                    continue
                z = k * level_h
                px0, px1 = xb + 0.15, xb + bay - 0.15
                mesh.add(box((px0, y0 + 0.05, z), (px1, y1 - 0.05, z + 0.14)), L["pallet"])
                ch = rng.uniform(0.4, level_h - 0.35)
                mesh.add(box((px0 + rng.uniform(0, 0.2), y0 + 0.1, z + 0.14), (px1 - rng.uniform(0, 0.2), y1 - 0.1,
                                                                                z + 0.14 + ch)), L["crate"])
        objects.append(SceneObject("rack", ((x + x_end) / 2, (y0 + y1) / 2), 0.0, ((x_end - x) / 2, (y1 - y0) / 2),
                                   (0.0, top)))
        x = x_end + rng.uniform(2.5, 4.0)


def _floor_clutter(mesh: MeshBuilder, rng: np.random.Generator, aisle_y: float, aisle_half: float, half: float,
                   objects: list[SceneObject]) -> None:
    """Loose pallets and crate stacks along the aisle's edges."""
    L = CLASS_IDS
    for _ in range(int(rng.integers(4, 12))):
        x = rng.uniform(-half + 2.0, half - 2.0)
        if abs(x) < 3.0:
            continue
        side = 1 if rng.random() < 0.5 else -1
        y = aisle_y + side * (aisle_half - rng.uniform(0.5, 0.8))
        yaw = rng.uniform(-0.2, 0.2)
        T = se3(rot_z(yaw), np.array([x, y, 0.0]))
        mesh.add(box((-0.6, -0.4, 0.0), (0.6, 0.4, 0.14)), L["pallet"], T)
        h = 0.14
        for _ in range(int(rng.integers(0, 4))):
            ch = rng.uniform(0.3, 0.6)
            mesh.add(box((-0.55, -0.35, h), (0.55, 0.35, h + ch)), L["crate"], T)
            h += ch
        objects.append(SceneObject("pallet", (float(x), float(y)), yaw, (0.6, 0.4), (0.0, h)))
