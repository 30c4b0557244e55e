"""The street-scene recipe: ground and road, then each object kind in a fixed order with its own random stream."""

from __future__ import annotations

import numpy as np

from gen3d_ros.sim.scene.barriers import place_barriers
from gen3d_ros.sim.scene.buildings import place_buildings
from gen3d_ros.sim.scene.classes import CLASS_NAMES
from gen3d_ros.sim.scene.config import SceneConfig
from gen3d_ros.sim.scene.model import RoadPolyline, Scene
from gen3d_ros.sim.scene.placement import OccupancyGrid, SceneBuilder
from gen3d_ros.sim.scene.primitives import MeshBuilder
from gen3d_ros.sim.scene.road import add_road, add_terrain, make_centerline, make_ground
from gen3d_ros.sim.scene.street_furniture import place_signs, place_street_lights
from gen3d_ros.sim.scene.vegetation import place_trees
from gen3d_ros.sim.scene.vehicles import place_vehicles


def generate_scene(config: SceneConfig, seed: int) -> Scene:
    """Generates a street scene, reproducibly from ``seed``.

    Args:
        config: what the scene contains.
        seed: seeds ``np.random.default_rng``; the same (config, seed) gives the same mesh and labels.

    Returns:
        The :class:`Scene` (world frame, metres, z up, square ``config.size_m`` centred on the origin).
    """
    import open3d as o3d

    rng = np.random.default_rng(seed)
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
    verts, faces, labels = builder.mesh.build()
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(verts), o3d.utility.Vector3iVector(faces))
    scene = Scene(mesh=mesh, labels=labels, class_names=list(CLASS_NAMES), config=config, seed=int(seed),
                  road_centerline=centerline, ground=ground, objects=builder.objects)
    scene._road = road  # the polyline is built once; Scene.road would rebuild it from road_centerline
    return scene

