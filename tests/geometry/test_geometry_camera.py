"""The pinhole camera model (gen3d_ros.geometry.camera): the CameraInfo conversion and its half-pixel shift.

ROS CameraInfo / OpenCV put pixel centres at integer coordinates; PinholeCamera (and the renderers that use it)
at integer + 0.5. Measured with K = [[80, 0, 31.3], [0, 82, 24.6]], 64x48: a 2 mm Gaussian whose centre
cv2.projectPoints puts at (36.90, 20.50) renders with its alpha centroid at column 36.907, row 20.500 through
``from_camera_info`` (+0.5 px), and at 36.390, 20.000 when K is used as it is (half a pixel up and left).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from gen3d_ros.geometry.camera import PinholeCamera
from gen3d_ros.io.camera_info import CameraIntrinsics
from gen3d_ros.robot.splatting import render_gaussians

K_ROS = np.array([[80.0, 0.0, 31.3], [0.0, 82.0, 24.6], [0.0, 0.0, 1.0]])  # pixel centres at integers
WIDTH, HEIGHT = 64, 48


def _points(n: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.8, 2.0, n)
    return np.stack([rng.uniform(-0.3, 0.3, n) * z, rng.uniform(-0.2, 0.2, n) * z, z], axis=1)


def _opencv_pixels(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(u, v) of camera-frame points by cv2.projectPoints (identity pose, no distortion): pixel centres at integers."""
    uv, _ = cv2.projectPoints(points, np.zeros(3), np.zeros(3), K, None)
    return uv.reshape(-1, 2)


def _project(camera: PinholeCamera, points: np.ndarray) -> np.ndarray:
    return np.stack([camera.fx * points[:, 0] / points[:, 2] + camera.cx,
                     camera.fy * points[:, 1] / points[:, 2] + camera.cy], axis=1)


def _alpha_centroid(camera: PinholeCamera, point: np.ndarray) -> np.ndarray:
    """(column, row) index-weighted alpha centroid of a tiny (2 mm) Gaussian at ``point`` (camera frame)."""
    f64 = dict(dtype=torch.float64)
    out = render_gaussians(torch.tensor(point[None], **f64), torch.tensor([[1.0, 0.0, 0.0, 0.0]], **f64),
                           torch.full((1, 3), 0.002, **f64), torch.tensor([0.9], **f64), torch.ones(1, 3, **f64),
                           torch.eye(4, **f64), camera, backend="torch")
    alpha = out.alpha.numpy()
    rows, cols = np.mgrid[0:camera.height, 0:camera.width]
    return np.array([(alpha * cols).sum(), (alpha * rows).sum()]) / alpha.sum()


def test_from_camera_info_shifts_the_principal_point_by_half_a_pixel():
    cam = PinholeCamera.from_camera_info(K_ROS, WIDTH, HEIGHT)
    assert (cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height) == (80.0, 82.0, 31.8, 25.1, WIDTH, HEIGHT)
    assert PinholeCamera.from_camera_info(K_ROS.reshape(-1).tolist(), WIDTH, HEIGHT) == cam  # CameraInfo.k order
    pts = _points()
    # our coordinates minus 0.5 are OpenCV's pixel coordinates
    np.testing.assert_allclose(_project(cam, pts) - 0.5, _opencv_pixels(pts, K_ROS), atol=1e-9)
    np.testing.assert_allclose(cam.camera_info_K, K_ROS, atol=1e-12)  # and back, for CameraInfo messages
    np.testing.assert_allclose(_opencv_pixels(pts, cam.camera_info_K), _project(cam, pts) - 0.5, atol=1e-9)


def test_the_splatter_draws_a_point_on_the_pixel_opencv_projects_it_to():
    cam = PinholeCamera.from_camera_info(K_ROS, WIDTH, HEIGHT)
    unshifted = PinholeCamera(K_ROS[0, 0], K_ROS[1, 1], K_ROS[0, 2], K_ROS[1, 2], WIDTH, HEIGHT)
    pts = _points(6, seed=1)
    expected = _opencv_pixels(pts, K_ROS)  # in pixel indices: what an OpenCV user draws or measures
    for point, uv in zip(pts, expected):
        np.testing.assert_allclose(_alpha_centroid(cam, point), uv, atol=0.03)
        # K used as it is renders half a pixel up and left of where OpenCV (and the real camera) sees the point
        np.testing.assert_allclose(_alpha_centroid(unshifted, point), uv - 0.5, atol=0.03)


def test_the_ray_caster_shoots_through_the_pixel_centres_opencv_unprojects():
    from gen3d_ros.sim.robot_render import camera_rays

    cam = PinholeCamera.from_camera_info(K_ROS, WIDTH, HEIGHT)
    rays = camera_rays(cam)  # [H, W, 3], z = 1
    pixels = np.array([[0.0, 0.0], [WIDTH - 1.0, HEIGHT - 1.0], [17.0, 30.0]])  # OpenCV pixel centres
    normalised = cv2.undistortPoints(pixels[:, None], K_ROS, None).reshape(-1, 2)
    got = rays[pixels[:, 1].astype(int), pixels[:, 0].astype(int), :2]
    np.testing.assert_allclose(got, normalised, atol=1e-6)


def test_resized_images_scale_like_cameraintrinsics_scaled():
    # a 128x96 calibration used on a 64x48 image
    intr = CameraIntrinsics(K=np.array([[160.0, 0.0, 63.1], [0.0, 164.0, 49.7], [0.0, 0.0, 1.0]]), width=128,
                            height=96)
    direct = PinholeCamera.from_camera_info(intr.K, intr.width, intr.height, image_size=(WIDTH, HEIGHT))
    half = intr.scaled(0.5)  # the io layer's cv2.resize convention (pixel centres at integers)
    expected = PinholeCamera.from_camera_info(half.K, half.width, half.height)
    for name in ("fx", "fy", "cx", "cy", "width", "height"):
        assert getattr(direct, name) == pytest.approx(getattr(expected, name), abs=1e-12), name
    # the same size: nothing changes
    assert PinholeCamera.from_camera_info(K_ROS, WIDTH, HEIGHT, image_size=(WIDTH, HEIGHT)) == \
        PinholeCamera.from_camera_info(K_ROS, WIDTH, HEIGHT)


@pytest.mark.parametrize("K, message", [
    ([[80.0, 0.5, 31.3], [0.0, 82.0, 24.6], [0.0, 0.0, 1.0]], "skew 0.5"),
    ([[0.0, 0.0, 31.3], [0.0, 82.0, 24.6], [0.0, 0.0, 1.0]], "non-positive or non-finite focal"),
    ([[np.nan, 0.0, 31.3], [0.0, 82.0, 24.6], [0.0, 0.0, 1.0]], "non-positive or non-finite focal"),
    ([80.0, 0.0, 31.3, 0.0, 82.0, 24.6], "must have 9 values"),
])
def test_from_camera_info_rejects_what_the_renderer_cannot_model(K, message):
    with pytest.raises(ValueError, match=message):
        PinholeCamera.from_camera_info(K, WIDTH, HEIGHT)
