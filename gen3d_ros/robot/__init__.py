"""Dr. Robot: differentiable robot rendering (URDF -> forward kinematics -> skinned Gaussians -> splatting).

Frames and units (REP-103 for the robot, OpenCV for cameras):

* ``base``: the URDF root link's frame. Metres, radians.
* Camera frames are OpenCV optical frames: x right, y down, z forward (into the scene); intrinsics are
  :class:`gen3d_ros.geometry.camera.PinholeCamera` (pixel centres at integer + 0.5).
* ``T_camera_base`` (4x4) maps points in the base frame to the camera frame: ``p_cam = T_camera_base @ p_base``.
* Images are ``[H, W, C]`` float32 in [0, 1] (``rgb``), ``[H, W]`` alpha/mask in [0, 1], ``[H, W]`` depth in metres
  along the optical axis (0 where nothing was hit).

Runtime (what a node loads; imports neither :mod:`gen3d_ros.sim` nor :mod:`.training`):

* :mod:`.urdf` (URDF parsing, mesh-path sandbox), :mod:`.description` (``load_robot``: a robot by name or path),
  :mod:`.meshes` (posed link meshes, surface samples), :mod:`.kinematics` (batched differentiable FK).
* :mod:`.gaussians` (``RobotGaussianModel``: canonical Gaussians, skinning, appearance; checkpoints),
  :mod:`.splatting` (one ``render_gaussians``: gsplat on CUDA, else the torch reference :mod:`.splatting_torch`),
  :mod:`.ssim`, :mod:`.parametrization` (joint limits and camera poses as free variables).
* :mod:`.pose` (pose estimation and tracking), :mod:`.actions` (visual MPC, actions from videos).

Training: :mod:`.training` (views, stages, presets; may import ``sim``). Nothing in this package imports rclpy.
"""
