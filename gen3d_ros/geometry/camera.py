"""Pinhole cameras and camera placement (OpenCV optical frames: x right, y down, z forward; metres).

Pixel convention of :class:`PinholeCamera` (the renderers': the Gaussian splatter, gsplat, the ray caster of
:mod:`gen3d_ros.sim.robot_render`): continuous image coordinates in which pixel ``(row i, column j)`` covers
``[j, j + 1) x [i, i + 1)``, so its centre is at ``(j + 0.5, i + 0.5)``. A camera-frame point ``(x, y, z)`` lands
at ``u = fx x / z + cx``, ``v = fy y / z + cy`` in these coordinates.

ROS ``sensor_msgs/CameraInfo`` and OpenCV (``cv2.projectPoints``) put pixel centres at INTEGER coordinates instead,
so the same lens has a principal point 0.5 px smaller there: :meth:`PinholeCamera.from_camera_info` converts
(``tests/geometry/test_geometry_camera.py`` checks it against ``cv2.projectPoints`` and a rendered Gaussian).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class PinholeCamera:
    """Pinhole intrinsics of an undistorted image; pixel centres at integer + 0.5 (see the module docstring).

    ``fx, fy, cx, cy`` in pixels; ``width, height`` in pixels. A ROS CameraInfo / OpenCV ``K`` (pixel centres at
    integers) is converted by :meth:`from_camera_info`, never passed in directly.
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

    @classmethod
    def from_camera_info(
        cls, K: np.ndarray | Sequence[float], width: int, height: int, *,
        image_size: tuple[int, int] | None = None,
    ) -> "PinholeCamera":
        """The camera of a ROS ``CameraInfo`` / OpenCV camera matrix ``K`` (3x3, or its 9 values row-major).

        ``K`` has pixel centres at integer coordinates (the ROS and OpenCV convention), so the principal point
        moves by +0.5 px into this class's convention. ``width, height``: the image size ``K`` belongs to, pixels.
        ``image_size``: ``(width, height)`` of the image actually used when it was resized from that one (e.g. the
        K of a 1280x960 calibration for a 640x480 image): the intrinsics are scaled to it.

        Raises ValueError (with the values) for non-finite or non-positive focal lengths and for skew (the
        renderer models square-axis pinhole cameras only). Distortion is the caller's business: rectify first.
        """
        K = np.asarray(K, dtype=np.float64)
        if K.size != 9:
            raise ValueError(f"camera matrix K must have 9 values (3x3), got {K.size}: {K.reshape(-1).tolist()}")
        K = K.reshape(3, 3)
        if not np.isfinite(K).all() or not (K[0, 0] > 0 and K[1, 1] > 0):
            raise ValueError(f"camera matrix K has non-positive or non-finite focal lengths: {K.reshape(-1).tolist()}")
        if abs(K[0, 1]) > 1e-9 * abs(K[0, 0]):
            raise ValueError(f"camera matrix K has skew {K[0, 1]}; the renderer models square-axis pinhole cameras "
                             "only")
        camera = cls(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]) + 0.5, float(K[1, 2]) + 0.5, int(width),
                     int(height))
        if image_size is None or tuple(image_size) == (camera.width, camera.height):
            return camera
        w, h = (int(v) for v in image_size)
        if w <= 0 or h <= 0:
            raise ValueError(f"image_size must be positive, got {w}x{h}")
        sx, sy = w / camera.width, h / camera.height  # pixel edges at integers here: scaling is linear
        return cls(camera.fx * sx, camera.fy * sy, camera.cx * sx, camera.cy * sy, w, h)

    @property
    def K(self) -> np.ndarray:
        """3x3 intrinsic matrix in this class's convention (pixel centres at integer + 0.5; OpenCV's principal point
        is ``K[:2, 2] - 0.5``)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def camera_info_K(self) -> np.ndarray:
        """3x3 intrinsic matrix in the ROS CameraInfo / OpenCV convention (pixel centres at integers: the principal
        point 0.5 px smaller), for ``sensor_msgs/CameraInfo`` or ``cv2``; the inverse of :meth:`from_camera_info`."""
        K = self.K
        K[:2, 2] -= 0.5
        return K

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
