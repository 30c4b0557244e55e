"""Dr. Robot: differentiable robot rendering (URDF -> forward kinematics -> skinned Gaussians -> splatting).

Frames and units (REP-103 for the robot, OpenCV for cameras):

* ``base``: the URDF root link's frame. Metres, radians.
* Camera frames are OpenCV optical frames: x right, y down, z forward (into the scene).
* ``T_camera_base`` (4x4) maps points in the base frame to the camera frame: ``p_cam = T_camera_base @ p_base``.
* Images are ``[H, W, C]`` float32 in [0, 1] (``rgb``), ``[H, W]`` alpha/mask in [0, 1], ``[H, W]`` depth in metres
  along the optical axis (0 where nothing was hit).

Nothing in this package imports rclpy.
"""
