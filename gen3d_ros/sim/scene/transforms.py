"""Rotation matrices and rigid transforms (numpy, float64) for placing mesh parts in the world frame."""

from __future__ import annotations

import math

import numpy as np


def rot_z(yaw: float) -> np.ndarray:
    """(3, 3) rotation by ``yaw`` radians about +z (anticlockwise seen from above)."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_x(angle: float) -> np.ndarray:
    """(3, 3) rotation by ``angle`` radians about +x."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(angle: float) -> np.ndarray:
    """(3, 3) rotation by ``angle`` radians about +y."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def align_z(n: np.ndarray) -> np.ndarray:
    """Smallest rotation taking +z onto the unit vector ``n`` (3,)."""
    n = np.asarray(n, dtype=np.float64) / np.linalg.norm(n)
    v = np.array([-n[1], n[0], 0.0])  # z x n
    c = float(n[2])
    if np.linalg.norm(v) < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    vx = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + vx + vx @ vx * (1.0 / (1.0 + c))


def se3(rot: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(4, 4) rigid transform from a rotation (3, 3) and a translation (3,) in metres."""
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = t
    return out


def transform_points(v: np.ndarray, T: np.ndarray | None) -> np.ndarray:
    """Points (V, 3) moved by the rigid transform ``T`` (4, 4); ``None`` returns them unchanged."""
    if T is None:
        return v
    return v @ T[:3, :3].T + T[:3, 3]

