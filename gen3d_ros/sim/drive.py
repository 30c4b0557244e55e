"""A synthetic drive: a LiDAR on a car moving along the road centreline at constant speed.

    sweeps = simulate_drive(scene, LidarConfig.preset("demo"), n_sweeps=20, seed=0)
    for sw in sweeps:
        sw.stamp_s, sw.scan.points, sw.T_world_lidar
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gen3d_ros.sim.lidar import LidarConfig, LidarScan, simulate_scan
from gen3d_ros.sim.scene import Scene


@dataclass
class Sweep:
    """One sweep of a drive.

    Attributes:
        stamp_s: time of the start of the sweep, seconds since the start of the drive (plus ``start_stamp_s``).
        scan: the sweep, points in the sensor frame at ``stamp_s``.
        T_world_lidar: (4, 4) float64 sensor pose at ``stamp_s`` (same as ``scan.T_world_lidar``).
    """

    stamp_s: float
    scan: LidarScan
    T_world_lidar: np.ndarray


def drive_extent_m(n_sweeps: int, speed_mps: float, rate_hz: float) -> float:
    """Distance travelled between the first and the last sweep start, metres."""
    return speed_mps * max(n_sweeps - 1, 0) / rate_hz


def simulate_drive(
    scene: Scene,
    lidar: LidarConfig,
    *,
    n_sweeps: int,
    speed_mps: float = 8.0,
    rate_hz: float = 10.0,
    sensor_height_m: float = 1.8,
    seed: int,
    lateral_offset_m: float = 0.0,
    start_s_m: float | None = None,
    start_stamp_s: float = 0.0,
    motion_distortion: bool = False,
    margin_m: float = 3.0,
) -> list[Sweep]:
    """Drives along the road centreline, heading along the road, and scans ``rate_hz`` times a second.

    The sensor sits ``sensor_height_m`` above the road, pitched/rolled with the ground under it. The start is
    drawn from ``seed`` so that the whole drive stays on the part of the road inside the scene (``margin_m`` from
    its border), unless ``start_s_m`` (arc length, metres) is given.

    Args:
        scene: a generated scene with a road.
        lidar: the sensor model; its ``rotation_rate_hz`` is set to ``rate_hz`` for the drive.
        n_sweeps: number of sweeps.
        speed_mps: constant speed, metres per second.
        rate_hz: sweeps per second.
        sensor_height_m: sensor height above the road surface, metres.
        seed: seeds the start position and each sweep's noise.
        lateral_offset_m: offset from the centreline, metres, positive to the left.
        start_s_m: arc length of the first pose along the centreline; drawn from ``seed`` when ``None``.
        start_stamp_s: ``stamp_s`` of the first sweep.
        motion_distortion: move the sensor during each sweep (raw, un-deskewed points).
        margin_m: distance kept from the ends of the road inside the scene.

    Returns:
        ``n_sweeps`` :class:`Sweep` objects in time order.

    Raises:
        ValueError: if the drive does not fit on the road inside the scene.
    """
    if n_sweeps < 1:
        raise ValueError(f"n_sweeps must be >= 1, got {n_sweeps}")
    if speed_mps < 0 or rate_hz <= 0:
        raise ValueError(f"need speed_mps >= 0 and rate_hz > 0, got {speed_mps}, {rate_hz}")
    rng = np.random.default_rng(seed)
    road = scene.road
    half = scene.config.size_m / 2.0 - margin_m
    inside = np.all(np.abs(road.xy) <= half, axis=1)
    if not inside.any():
        raise ValueError("the road never comes within the scene; nothing to drive on")
    s_lo, s_hi = float(road.s[inside].min()), float(road.s[inside].max())
    extent = drive_extent_m(n_sweeps, speed_mps, rate_hz) + speed_mps / rate_hz
    if start_s_m is None:
        if extent > s_hi - s_lo:
            raise ValueError(
                f"a drive of {n_sweeps} sweeps at {speed_mps} m/s and {rate_hz} Hz covers {extent:.1f} m but the "
                f"road inside the scene is {s_hi - s_lo:.1f} m long; use fewer sweeps, a lower speed or a larger "
                "scene (SceneConfig.size_m)"
            )
        start = float(rng.uniform(s_lo, s_hi - extent))
    else:
        start = float(start_s_m)
    cfg = lidar if lidar.rotation_rate_hz == rate_hz else lidar.with_(rotation_rate_hz=rate_hz)
    sweep_seeds = rng.spawn(n_sweeps)
    sweeps: list[Sweep] = []
    for i in range(n_sweeps):
        s = start + speed_mps * i / rate_hz
        T = scene.road_pose(s, lateral_offset_m=lateral_offset_m, height_m=sensor_height_m)
        T_end = None
        if motion_distortion:
            T_end = scene.road_pose(s + speed_mps / rate_hz, lateral_offset_m=lateral_offset_m,
                                    height_m=sensor_height_m)
        scan = simulate_scan(scene, cfg, T, sweep_seeds[i], T_world_lidar_end=T_end)
        sweeps.append(Sweep(stamp_s=start_stamp_s + i / rate_hz, scan=scan, T_world_lidar=T.copy()))
    return sweeps
