"""Upright footprint rectangles in the world xy plane: centre (2,) metres, yaw radians, half sizes (2,) metres.

The rectangle's local x axis is (cos yaw, sin yaw).
"""

from __future__ import annotations

import math

import numpy as np


def rect_corners(center: np.ndarray, yaw: float, half: np.ndarray) -> np.ndarray:
    """(4, 2) corners of a rectangle, counter-clockwise."""
    c, s = math.cos(yaw), math.sin(yaw)
    ax, ay = np.array([c, s]) * half[0], np.array([-s, c]) * half[1]
    return np.array([center - ax - ay, center + ax - ay, center + ax + ay, center - ax + ay])


def rect_samples(center: np.ndarray, yaw: float, half: np.ndarray, n: int = 5) -> np.ndarray:
    """(n*n, 2) points on a grid over a rectangle (its border included)."""
    u = np.linspace(-1.0, 1.0, n)
    uu, vv = np.meshgrid(u, u)
    c, s = math.cos(yaw), math.sin(yaw)
    local = np.column_stack([uu.ravel() * half[0], vv.ravel() * half[1]])
    return center + local @ np.array([[c, s], [-s, c]])

