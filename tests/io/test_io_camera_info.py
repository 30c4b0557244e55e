"""CameraInfo <-> CameraIntrinsics in both message worlds."""

from __future__ import annotations

import numpy as np
import pytest

from gen3d_ros.io.camera_info import CameraIntrinsics, camera_info_to_intrinsics, intrinsics_to_camera_info
from gen3d_ros.io.messages import rclpy_factory, rosbags_factory
from gen3d_ros.io.typestore import get_gen3d_typestore


@pytest.fixture(params=[rosbags_factory, rclpy_factory], ids=["rosbags", "rclpy"])
def factory(request):
    return request.param()


K = np.array([[525.0, 0.0, 319.5], [0.0, 520.0, 239.5], [0.0, 0.0, 1.0]])
D = np.array([0.1, -0.25, 0.001, -0.002, 0.05])


def project(K: np.ndarray, points: np.ndarray) -> np.ndarray:
    uvw = points @ K.T
    return uvw[:, :2] / uvw[:, 2:]


def test_intrinsics_round_trip_through_camera_info(factory):
    intr = CameraIntrinsics(K, D, 640, 480, "plumb_bob")
    msg = intrinsics_to_camera_info(intr, factory)
    assert (msg.width, msg.height, msg.distortion_model) == (640, 480, "plumb_bob")
    np.testing.assert_array_equal(np.asarray(msg.p).reshape(3, 4), np.hstack([K, np.zeros((3, 1))]))
    np.testing.assert_array_equal(np.asarray(msg.r), np.eye(3).reshape(9))

    back = camera_info_to_intrinsics(msg)
    np.testing.assert_array_equal(back.K, K)
    np.testing.assert_array_equal(back.D, D)
    assert (back.fx, back.fy, back.cx, back.cy) == (525.0, 520.0, 319.5, 239.5)
    assert (back.width, back.height, back.distortion_model) == (640, 480, "plumb_bob")


def test_rclpy_camera_info_is_real_and_serializes():
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import CameraInfo

    msg = intrinsics_to_camera_info(CameraIntrinsics(K, D, 640, 480), rclpy_factory())
    back = deserialize_message(serialize_message(msg), CameraInfo)
    np.testing.assert_array_equal(camera_info_to_intrinsics(back).D, D)


def test_rosbags_camera_info_survives_cdr():
    store = get_gen3d_typestore()
    msg = intrinsics_to_camera_info(CameraIntrinsics(K, D, 640, 480), rosbags_factory())
    back = store.deserialize_cdr(store.serialize_cdr(msg, "sensor_msgs/msg/CameraInfo"), "sensor_msgs/msg/CameraInfo")
    np.testing.assert_array_equal(camera_info_to_intrinsics(back).K, K)


def test_uncalibrated_camera_info_is_rejected(factory):
    with pytest.raises(ValueError, match=r"fx=0.0, fy=0.0.*calibrate"):
        camera_info_to_intrinsics(factory.new("sensor_msgs/msg/CameraInfo", width=640, height=480))
    with pytest.raises(ValueError, match=r"image size 0x480"):
        camera_info_to_intrinsics(factory.new("sensor_msgs/msg/CameraInfo", width=0, height=480))


def test_scaled_intrinsics_project_where_resized_pixels_are():
    intr = CameraIntrinsics(K, D, 640, 480)
    half = intr.scaled(0.5)
    assert (half.width, half.height) == (320, 240)
    assert (half.fx, half.fy) == (262.5, 260.0)
    assert (half.cx, half.cy) == ((319.5 + 0.5) * 0.5 - 0.5, (239.5 + 0.5) * 0.5 - 0.5)
    np.testing.assert_array_equal(half.D, D)

    # A point at pixel (u, v) lands at ((u + .5) s - .5, (v + .5) s - .5) in the resized image, as cv2.resize maps it.
    points = np.array([[0.3, -0.2, 2.0], [-1.0, 0.5, 4.0], [0.0, 0.0, 1.0]])
    for factor in (0.5, 0.25, 2.0):
        scaled = intr.scaled(factor)
        s = np.array([scaled.width / 640, scaled.height / 480])
        np.testing.assert_allclose(project(scaled.K, points), (project(K, points) + 0.5) * s - 0.5, atol=1e-9)
    with pytest.raises(ValueError, match="positive"):
        intr.scaled(0)


def test_binning_and_roi_describe_the_published_image(factory):
    msg = intrinsics_to_camera_info(CameraIntrinsics(K, D, 640, 480), factory)
    msg.binning_x, msg.binning_y = 2, 2
    msg.roi.x_offset, msg.roi.y_offset, msg.roi.width, msg.roi.height = 100, 40, 400, 300
    intr = camera_info_to_intrinsics(msg)
    assert (intr.width, intr.height) == (200, 150)
    assert (intr.fx, intr.fy) == (262.5, 260.0)
    assert (intr.cx, intr.cy) == ((319.5 - 100) / 2, (239.5 - 40) / 2)


def test_rectified_intrinsics_come_from_p(factory):
    msg = intrinsics_to_camera_info(CameraIntrinsics(K, D, 640, 480), factory)
    P = np.array([[500.0, 0, 320, -30.0], [0, 500.0, 240, 0], [0, 0, 1, 0]])
    msg.p = P.reshape(12)
    intr = camera_info_to_intrinsics(msg, rectified=True)
    np.testing.assert_array_equal(intr.K, P[:, :3])
    assert intr.D.size == 0


def test_intrinsics_validate_k_shape():
    with pytest.raises(ValueError, match=r"K must be 3x3, got shape \(2, 2\)"):
        CameraIntrinsics(np.eye(2), D, 10, 10)


# ---------------------------------------------------------------------------------------------- malformed CameraInfo


def valid_info(factory):
    return intrinsics_to_camera_info(CameraIntrinsics(K, D, 640, 480, "plumb_bob"), factory)


@pytest.mark.parametrize(
    ("field", "index", "value", "message"),
    [
        ("k", 2, np.nan, r"CameraInfo K has non-finite values \(k=\[525.0, 0.0, nan"),
        ("k", 4, np.inf, r"CameraInfo K has non-finite values"),
        ("k", 0, -525.0, r"fx=-525.0, fy=520.0 .*focal lengths must be > 0"),
        ("k", 8, 0.0, r"last row \[0.0, 0.0, 0.0\]; a pinhole camera matrix ends in \(0, 0, 1\)"),
        ("d", 1, np.nan, r"CameraInfo D has non-finite values \(d=\[0.1, nan"),
    ],
    ids=["nan-cx", "inf-fy", "negative-fx", "k-last-row", "nan-d"],
)
def test_corrupt_calibration_values_are_named(factory, field, index, value, message):
    msg = valid_info(factory)
    values = np.array(getattr(msg, field), dtype=np.float64)
    values[index] = value
    setattr(msg, field, values if factory.name == "rosbags" else values.tolist())
    with pytest.raises(ValueError, match=message):
        camera_info_to_intrinsics(msg)


def test_nan_in_p_only_matters_for_the_rectified_image(factory):
    msg = valid_info(factory)
    p = np.array(msg.p, dtype=np.float64)
    p[3] = np.nan
    msg.p = p if factory.name == "rosbags" else p.tolist()
    np.testing.assert_array_equal(camera_info_to_intrinsics(msg).K, K)  # the raw image does not use P
    with pytest.raises(ValueError, match=r"CameraInfo P has non-finite values"):
        camera_info_to_intrinsics(msg, rectified=True)


def test_wrong_number_of_values_and_bad_sizes_are_named():
    factory = rosbags_factory()  # rclpy's fixed-size arrays cannot even hold 5 values in k
    msg = valid_info(factory)
    msg.k = np.arange(5.0)
    with pytest.raises(ValueError, match=r"CameraInfo k has 5 values; it must have 9 \(3x3 row-major\)"):
        camera_info_to_intrinsics(msg)
    msg = valid_info(factory)
    msg.width = -640
    with pytest.raises(ValueError, match=r"CameraInfo has width=-640; it is a uint32"):
        camera_info_to_intrinsics(msg)


def test_roi_past_the_image_and_binning_that_leaves_no_pixel_are_rejected(factory):
    msg = valid_info(factory)
    msg.roi.x_offset, msg.roi.y_offset, msg.roi.width, msg.roi.height = 600, 0, 100, 100
    with pytest.raises(ValueError, match=r"roi \(x_offset=600, y_offset=0, width=100, height=100\) reaches past "
                                         r"the 640x480 image"):
        camera_info_to_intrinsics(msg)
    msg = valid_info(factory)
    msg.binning_x = 1000
    with pytest.raises(ValueError, match=r"binning_x=1000, binning_y=1 leaves no pixel of the 640x480 image"):
        camera_info_to_intrinsics(msg)
