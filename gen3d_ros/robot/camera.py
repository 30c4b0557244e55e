"""Pinhole cameras and camera placement around a robot (OpenCV optical frames, metres)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PinholeCamera:
    """Pinhole intrinsics of an undistorted image; pixel centres at integer + 0.5 (OpenCV convention).

    ``fx, fy, cx, cy`` in pixels; ``width, height`` in pixels.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera size must be positive, got {self.width}x{self.height}")
        if not (self.fx > 0 and self.fy > 0) or not all(map(math.isfinite, (self.fx, self.fy, self.cx, self.cy))):
            raise ValueError(f"focal lengths must be positive and finite, got fx={self.fx}, fy={self.fy}")

    @classmethod
    def from_fov(cls, width: int, height: int, fov_y_deg: float) -> "PinholeCamera":
        """Square pixels, principal point at the image centre, vertical field of view in degrees."""
        fy = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2.0)
        return cls(fx=fy, fy=fy, cx=width / 2.0, cy=height / 2.0, width=width, height=height)

    @property
    def K(self) -> np.ndarray:
        """3x3 intrinsic matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def scaled(self, factor: float) -> "PinholeCamera":
        """The same camera at ``factor`` times the resolution (for image pyramids)."""
        w, h = max(1, round(self.width * factor)), max(1, round(self.height * factor))
        sx, sy = w / self.width, h / self.height
        return PinholeCamera(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, w, h)


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """``T_camera_world`` (4x4) of an OpenCV camera at ``eye`` looking at ``target`` (metres, world frame)."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    z = target - eye
    if np.linalg.norm(z) < 1e-9:
        raise ValueError("eye and target coincide")
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-6:  # looking along `up`: any perpendicular will do
        x = np.cross(z, np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0]))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R_world_camera = np.stack([x, y, z], axis=1)
    T = np.eye(4)
    T[:3, :3] = R_world_camera.T
    T[:3, 3] = -R_world_camera.T @ eye
    return T


def sphere_camera(
    azimuth: float, elevation: float, distance: float, target: np.ndarray = np.zeros(3)
) -> np.ndarray:
    """``T_camera_base`` of a camera on a sphere around ``target`` looking at it.

    ``azimuth`` (radians) about +z from +x, ``elevation`` (radians) above the xy plane, ``distance`` in metres.
    """
    target = np.asarray(target, dtype=np.float64)
    eye = target + distance * np.array(
        [math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation)]
    )
    return look_at(eye, target)


def sample_sphere_cameras(
    n: int,
    rng: np.random.Generator,
    distance: tuple[float, float] = (1.2, 1.8),
    elevation_deg: tuple[float, float] = (5.0, 50.0),
    target: np.ndarray = np.zeros(3),
) -> np.ndarray:
    """``n`` random ``T_camera_base`` matrices [n, 4, 4]: azimuth uniform, elevation and distance in ranges."""
    out = np.empty((n, 4, 4))
    for i in range(n):
        out[i] = sphere_camera(
            rng.uniform(0.0, 2.0 * math.pi),
            math.radians(rng.uniform(*elevation_deg)),
            rng.uniform(*distance),
            target,
        )
    return out
