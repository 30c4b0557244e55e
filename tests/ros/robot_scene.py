"""The test arm seen by a small camera: ground-truth renders (RobotMeshRenderer) and the messages of a frame, for
the robot node and robot bag-mode tests. Importable without rclpy (messages come from a factory)."""

from __future__ import annotations

from typing import Any

import numpy as np

SIZE = 64  # px: small, so a CPU fit takes seconds on a busy machine
CAMERA_FRAME = "test_camera_optical"
Q_TRUE = np.array([0.2, 0.25, -0.3, 0.2, 0.1])  # radians; near neutral, so the neutral start is a good init


def scene() -> tuple[Any, Any, np.ndarray]:
    """``(robot, PinholeCamera, T_camera_base)`` of the test arm 1.1 m from a camera looking at its middle."""
    from gen3d_ros.geometry.camera import PinholeCamera, sphere_camera
    from gen3d_ros.robot.urdf import load_urdf, test_arm_urdf

    robot = load_urdf(test_arm_urdf())
    camera = PinholeCamera.from_fov(SIZE, SIZE, 50.0)
    return robot, camera, sphere_camera(0.6, 0.5, 1.1, target=np.array([0.0, 0.0, 0.3]))


def render_rgb8(q: np.ndarray = Q_TRUE) -> np.ndarray:
    """(SIZE, SIZE, 3) uint8 RGB of the arm at ``q`` on white (the GT mesh renderer, not the splatting model)."""
    from gen3d_ros.sim.robot_render import RobotMeshRenderer

    robot, camera, T = scene()
    return (RobotMeshRenderer(robot).render(q, T, camera).rgb * 255.0).round().astype(np.uint8)


def camera_in_base() -> list[float]:
    """The test camera's pose in the base frame as the ``camera_in_base`` parameter: [x, y, z, qx, qy, qz, qw]."""
    from gen3d_ros.io.transforms import invert_rigid, matrix_to_quaternion_xyzw

    T_base_camera = invert_rigid(scene()[2])
    return [*map(float, T_base_camera[:3, 3]), *map(float, matrix_to_quaternion_xyzw(T_base_camera[:3, :3]))]


def frame_messages(factory: Any, stamp_ns: int, *, rgb: np.ndarray | None = None, encoding: str = "rgb8") -> tuple:
    """``(Image, CameraInfo)`` of one frame with the same stamp; ``rgb`` default: :func:`render_rgb8`."""
    from gen3d_ros.io.camera_info import CameraIntrinsics, intrinsics_to_camera_info
    from gen3d_ros.io.image import array_to_image
    from gen3d_ros.io.messages import make_header

    _, camera, _ = scene()
    header = make_header(factory, frame_id=CAMERA_FRAME,
                         stamp=factory.time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9))
    pixels = render_rgb8() if rgb is None else rgb
    image = array_to_image(pixels, encoding, factory, header=header)
    info = intrinsics_to_camera_info(CameraIntrinsics(camera.camera_info_K, np.zeros(5), SIZE, SIZE), factory,
                                     header=header)
    return image, info


# The keypoint network's scene: 256 px, the arm filling a good part of the view on a plain background (the packaged
# network's training distribution; as in tests/robot/test_keypoints.py's calibrate-camera test).
KP_SIZE = 256
KP_FOV_DEG = 40.0


def kp_scene() -> tuple[Any, Any, np.ndarray]:
    """``(robot, PinholeCamera, T_camera_base)``: the test arm 1.3 m from a 256 px camera 25 deg above it."""
    import math

    from gen3d_ros.geometry.camera import PinholeCamera, sphere_camera
    from gen3d_ros.robot.urdf import load_urdf, test_arm_urdf

    robot = load_urdf(test_arm_urdf())
    camera = PinholeCamera.from_fov(KP_SIZE, KP_SIZE, KP_FOV_DEG)
    return robot, camera, sphere_camera(0.8, math.radians(25.0), 1.3, target=np.array([0.0, 0.0, 0.3]))


def kp_joints(seed: int) -> np.ndarray:
    """A seeded joint vector in the middle 40 % of each of the test arm's ranges (radians)."""
    from gen3d_ros.robot.urdf import load_urdf, test_arm_urdf

    robot = load_urdf(test_arm_urdf())
    rng = np.random.default_rng(seed)
    return robot.lower + (0.3 + 0.4 * rng.random(len(robot.lower))) * (robot.upper - robot.lower)


def kp_frame_messages(factory: Any, stamp_ns: int, q: np.ndarray) -> tuple:
    """``(Image, CameraInfo)`` of the arm at ``q`` in :func:`kp_scene` (mesh render on a green-grey background)."""
    from gen3d_ros.io.camera_info import CameraIntrinsics, intrinsics_to_camera_info
    from gen3d_ros.io.image import array_to_image
    from gen3d_ros.io.messages import make_header
    from gen3d_ros.sim.robot_render import RobotMeshRenderer

    robot, camera, T = kp_scene()
    rgb = RobotMeshRenderer(robot).render(q, T, camera, background=(0.3, 0.5, 0.4)).rgb
    header = make_header(factory, frame_id=CAMERA_FRAME,
                         stamp=factory.time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9))
    image = array_to_image((rgb * 255.0).round().astype(np.uint8), "rgb8", factory, header=header)
    info = intrinsics_to_camera_info(CameraIntrinsics(camera.camera_info_K, np.zeros(5), KP_SIZE, KP_SIZE), factory,
                                     header=header)
    return image, info


def joint_state(factory: Any, stamp_ns: int, names: list[str], q: Any) -> Any:
    """A ``sensor_msgs/JointState`` of ``names`` at ``q`` stamped ``stamp_ns`` (the encoders' reading)."""
    from gen3d_ros.io.joint_state import joint_state_msg
    from gen3d_ros.io.messages import make_header

    header = make_header(factory, stamp=factory.time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9))
    return joint_state_msg(names, q, factory, header=header)
