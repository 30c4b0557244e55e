"""The scene recipes: the street (ground and road, then each object kind in a fixed order with its own random
stream) and the warehouse (``warehouse.py``). Classes in ``SceneConfig.exclude_classes`` are never placed, and
any triangle of theirs left in a compound object is removed, so a held-out class is truly absent."""

from __future__ import annotations

import numpy as np

from gen3d_ros.sim.scene.barriers import place_barriers
from gen3d_ros.sim.scene.buildings import place_buildings
from gen3d_ros.sim.scene.classes import CLASS_IDS, CLASS_NAMES
from gen3d_ros.sim.scene.config import SceneConfig
from gen3d_ros.sim.scene.model import RoadPolyline, Scene
from gen3d_ros.sim.scene.placement import OccupancyGrid, SceneBuilder
from gen3d_ros.sim.scene.primitives import MeshBuilder
from gen3d_ros.sim.scene.road import add_road, add_terrain, make_centerline, make_ground
from gen3d_ros.sim.scene.people import place_cyclists, place_pedestrians
from gen3d_ros.sim.scene.street_furniture import place_signs, place_street_lights
from gen3d_ros.sim.scene.vegetation import add_grass, place_bushes, place_hedges, place_trees
from gen3d_ros.sim.scene.vehicles import place_parking_lot, place_vehicles
from gen3d_ros.sim.scene.warehouse import build_warehouse


def generate_scene(config: SceneConfig, seed: int) -> Scene:
    """Generates a street scene, reproducibly from ``seed``.

    Args:
        config: what the scene contains.
        seed: seeds ``np.random.default_rng``; the same (config, seed) gives the same mesh and labels.

    Returns:
        The :class:`Scene` (world frame, metres, z up, square ``config.size_m`` centred on the origin).
    """
    rng = np.random.default_rng(seed)
    if config.kind == "warehouse":
        mesh, centerline, ground, objects = build_warehouse(config, rng)
        return _scene(config, seed, mesh, centerline, ground, objects, None)
    ground = make_ground(config, rng)
    centerline = make_centerline(config, rng)
    road = RoadPolyline(centerline)
    builder = SceneBuilder(cfg=config, rng=rng, road=road, ground=ground, mesh=MeshBuilder(),
                           low=OccupancyGrid(config.size_m), high=OccupancyGrid(config.size_m), objects=[])
    # each placement stage gets its own stream, so changing one object count leaves the others in place
    streams = rng.spawn(7)
    add_road(builder)
    builder.rng = streams[0]
    building_rects = place_buildings(builder)
    add_terrain(builder, building_rects)
    builder.rng = streams[1]
    place_barriers(builder, "wall", config.n_walls)
    builder.rng = streams[2]
    place_barriers(builder, "fence", config.n_fences)
    builder.rng = streams[3]
    place_street_lights(builder)
    builder.rng = streams[4]
    place_signs(builder)
    builder.rng = streams[5]
    place_trees(builder)
    builder.rng = streams[6]
    place_vehicles(builder)
    _place_richer_world(builder, rng.spawn(6))
    return _scene(config, seed, builder.mesh, centerline, ground, builder.objects, road)


def _place_richer_world(builder: SceneBuilder, streams: list[np.random.Generator]) -> None:
    """The richer world's kinds, each on a stream spawned after the original seven (old scenes unchanged);
    kinds of excluded classes are skipped."""
    cfg = builder.cfg
    stages = [("pedestrian", cfg.n_pedestrians, place_pedestrians), ("cyclist", cfg.n_cyclists, place_cyclists),
              ("hedge", cfg.n_hedges, place_hedges), ("bush", cfg.n_bushes, place_bushes),
              ("car", cfg.parking_lot_probability > 0, place_parking_lot), ("grass", cfg.grass_verges, add_grass)]
    for stream, (cls, wanted, place) in zip(streams, stages):
        if wanted and cls not in cfg.exclude_classes:
            builder.rng = stream
            place(builder)


def _scene(config: SceneConfig, seed: int, mesh_builder: MeshBuilder, centerline: np.ndarray, ground, objects,
           road: RoadPolyline | None) -> Scene:
    """The :class:`Scene` of a built mesh, without the triangles of ``config.exclude_classes``."""
    import open3d as o3d

    verts, faces, labels = mesh_builder.build()
    if config.exclude_classes:
        keep = ~np.isin(labels, [CLASS_IDS[c] for c in config.exclude_classes])
        faces, labels = faces[keep], labels[keep]
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(verts), o3d.utility.Vector3iVector(faces))
    scene = Scene(mesh=mesh, labels=labels, class_names=list(CLASS_NAMES), config=config, seed=int(seed),
                  road_centerline=centerline, ground=ground, objects=objects)
    if road is not None:
        scene._road = road  # the polyline is built once; Scene.road would rebuild it from road_centerline
    return scene
