"""Simulated data without downloads: procedural street scenes, a ray-cast spinning LiDAR, synthetic drives and
scene-completion training pairs. Never imports rclpy.

    from gen3d_ros.sim import SceneConfig, generate_scene, LidarConfig, simulate_scan
    scene = generate_scene(SceneConfig(), seed=0)
    scan = simulate_scan(scene, LidarConfig.preset("hdl64"), scene.road_pose(20.0), seed=0)
"""

from gen3d_ros.sim.dataset import CompletionDataset, CompletionDatasetConfig, CompletionSample, collate_sparse
from gen3d_ros.sim.drive import Sweep, simulate_drive
from gen3d_ros.sim.lidar import DEFAULT_REFLECTIVITY, LidarConfig, LidarScan, simulate_scan
from gen3d_ros.sim.scene import (
    CLASS_IDS,
    CLASS_NAMES,
    GroundModel,
    RoadPolyline,
    Scene,
    SceneConfig,
    SceneObject,
    generate_scene,
    sample_surface,
    triangle_areas,
)

__all__ = [
    "CLASS_IDS",
    "CLASS_NAMES",
    "DEFAULT_REFLECTIVITY",
    "CompletionDataset",
    "CompletionDatasetConfig",
    "CompletionSample",
    "GroundModel",
    "LidarConfig",
    "LidarScan",
    "RoadPolyline",
    "Scene",
    "SceneConfig",
    "SceneObject",
    "Sweep",
    "collate_sparse",
    "generate_scene",
    "sample_surface",
    "simulate_drive",
    "simulate_scan",
    "triangle_areas",
]
