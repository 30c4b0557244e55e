"""Action stage: a visual goal + the robot's current joint state -> a joint trajectory that reaches it, optimised
through the Dr. Robot renderer (:class:`gen3d_ros.robot.actions.ActionProcessor`).

Inputs (a goal triggers planning; the others are kept, latest only):

- ``goal_image`` ``sensor_msgs/Image``: how the robot should look, seen by the camera of ``camera_info`` /
  ``camera_pose`` (any colour encoding of :mod:`gen3d_ros.io.image`; same size as the CameraInfo);
- ``goal_keypoints`` ``geometry_msgs/PolygonStamped``: 2D pixel keypoints of the goal pose in that camera's image,
  ``x = u`` (column), ``y = v`` (row), ROS/OpenCV pixel convention (the top-left pixel's centre is (0, 0)); ``z`` is
  ignored; point ``i`` is the goal pixel of the origin of link ``keypoint_links[i]`` (parameter, default the test arm's
  ``tool_tip``); ``header.frame_id`` the camera frame;
- ``joint_states`` ``sensor_msgs/JointState``: the current joints (every actuated joint of the URDF; unknown names
  are rejected);
- ``camera_info`` ``sensor_msgs/CameraInfo``: intrinsics of the goal's camera (rectified image: P is used when
  ``rectified``);
- ``camera_pose`` ``geometry_msgs/PoseStamped``: the camera optical frame in the base frame (``T_base_camera``),
  e.g. ``robot_pose_node``'s ``camera_pose`` output; with ``known_camera`` the ``camera_in_base`` parameter is used.

Outputs, with the goal's stamp: ``trajectory`` ``trajectory_msgs/JointTrajectory`` (``time_from_start`` strictly
increasing from the first waypoint after the current state) and ``action`` ``gen3d_ros/RobotAction`` (the same
trajectory, the objective's name, initial/final cost, iterations, latency).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from gen3d_ros.config import param, section, validate
from gen3d_ros.io.image import image_to_rgb
from gen3d_ros.io.joint_state import joint_positions, joint_trajectory_msg
from gen3d_ros.io.messages import MessageFactory, make_header
from gen3d_ros.io.transforms import invert_rigid, pose_to_matrix
from gen3d_ros.pipeline.base import InputRejected, Output, Stage
from gen3d_ros.pipeline.robot_model import check_robot_resources
from gen3d_ros.pipeline.robot_pose import camera_in_base_matrix, pinhole_from_camera_info
from gen3d_ros.robot.mpc_config import VisualMPCConfig
from gen3d_ros.robot.splat_backends import BACKEND_CHOICES

log = logging.getLogger("gen3d_ros.pipeline.action")


@dataclass
class ActionStageConfig:
    """Knobs of the action stage; every field is also a ROS parameter of ``action_node``, and every field of the
    planner's :class:`~gen3d_ros.robot.actions.VisualMPCConfig` one named ``mpc.<field>`` (``mpc.iterations``) but
    ``device`` and ``backend``, which it shares with the stage."""

    urdf: str = param("", "robot description: a URDF path, 'test_arm' or an example-robot-data name; empty: the "
                          "packaged test arm")
    checkpoint: str = param("", "Dr. Robot model; empty: the packaged model of the robot if one exists, else an "
                                "untrained model built from the URDF (logged warning)")
    n_gaussians: int = param(2000, "Gaussians of the untrained fallback model", lo=100, hi=1_000_000)
    device: str = param("cpu", "torch device of the renderer (cpu, cuda, cuda:1)")
    backend: str = param("auto", "splatting backend: auto, torch, gsplat", choices=BACKEND_CHOICES)
    threads: int = param(1, "torch CPU threads; 0: torch's default", lo=0, hi=256)
    mpc: VisualMPCConfig = section(VisualMPCConfig, "the visual MPC planner (waypoints, Adam, cost weights)",
                                   shared=("device", "backend"))
    keypoint_links: list = param(["tool_tip"], "goal_keypoints: the link whose origin each polygon point is the "
                                               "goal pixel of, in order")
    max_image_side: int = param(160, "goal images with a longer side are downsampled to it; 0: full resolution",
                                unit="px", lo=0, hi=8192)
    known_camera: bool = param(False, "use camera_in_base instead of the camera_pose input")
    camera_in_base: list = param([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
                                 "known_camera: pose of the camera optical frame in the base frame, "
                                 "[x, y, z, qx, qy, qz, qw] (m, unit quaternion)")
    rectified: bool = param(False, "goal images are rectified: use CameraInfo P, ignore D")
    max_state_age: float = param(0.0, "reject a goal when the latest JointState is older than this (by stamp); "
                                      "0: any age", unit="s", lo=0.0, hi=1e6)
    seed: int = param(0, "random seed (untrained model)", lo=0, hi=2**31 - 1)

    def __post_init__(self) -> None:
        self.camera_in_base = [float(v) for v in self.camera_in_base]
        self.keypoint_links = [str(v) for v in self.keypoint_links]
        validate(self)
        if not self.keypoint_links:
            raise ValueError("ActionStageConfig.keypoint_links needs at least one link name")
        self.T_base_camera_known()

    def T_base_camera_known(self) -> np.ndarray:
        """``camera_in_base`` as a 4x4 ``T_base_camera`` (camera optical frame -> base frame, metres)."""
        return camera_in_base_matrix(self.camera_in_base, "ActionStageConfig")

    def check_resources(self) -> None:
        """Without building the model: the URDF parses, the checkpoint (when given) is a Dr. Robot model of that
        URDF, the device exists (:func:`~gen3d_ros.pipeline.robot_model.check_robot_resources`). ValueError naming
        the field and the path otherwise."""
        check_robot_resources(self, "ActionStageConfig")


def polygon_to_pixels(msg: Any) -> np.ndarray:
    """``geometry_msgs/PolygonStamped`` -> (K, 2) float64 pixel keypoints (u, v) in the ``PinholeCamera``
    convention (pixel centres at integer + 0.5: ROS coordinates + 0.5). ValueError when empty or not finite."""
    pts = np.array([[float(p.x), float(p.y)] for p in msg.polygon.points], dtype=np.float64).reshape(-1, 2)
    if pts.shape[0] == 0:
        raise ValueError("goal PolygonStamped has no points")
    if not np.isfinite(pts).all():
        raise ValueError(f"goal keypoints are not finite: {pts.tolist()}")
    return pts + 0.5


class ActionStage(Stage):
    name = "action"
    inputs = {
        "goal_image": "sensor_msgs/msg/Image",
        "goal_keypoints": "geometry_msgs/msg/PolygonStamped",
        "joint_states": "sensor_msgs/msg/JointState",
        "camera_info": "sensor_msgs/msg/CameraInfo",
        "camera_pose": "geometry_msgs/msg/PoseStamped",
    }
    outputs = {"trajectory": "trajectory_msgs/msg/JointTrajectory", "action": "gen3d_ros/msg/RobotAction"}
    # A run needs one goal kind; the camera pose may come from the known_camera parameter instead.
    optional_inputs = frozenset({"goal_image", "goal_keypoints", "camera_pose"})

    def __init__(self, config: ActionStageConfig | None = None) -> None:
        super().__init__()
        from gen3d_ros.pipeline.robot_model import load_stage_robot_model
        from gen3d_ros.robot.actions import ActionProcessor

        self.config = config or ActionStageConfig()
        c = self.config
        loaded = load_stage_robot_model(c)
        self.robot, self.model_id = loaded.robot, loaded.model_id
        unknown = [name for name in c.keypoint_links if name not in loaded.model.fk.link_names]
        if unknown:
            raise ValueError(f"keypoint_links {unknown} are not links of robot {self.robot.name!r}: "
                             f"{loaded.model.fk.link_names}")
        self.processor = ActionProcessor(loaded.model, c.mpc)
        self.joint_names: list[str] = self.processor.joint_names
        self._known_joints = [j.name for j in self.robot.joints]
        self._q: np.ndarray | None = None
        self._q_stamp: Any = None
        self._info: Any = None
        self._T_base_camera: np.ndarray | None = c.T_base_camera_known() if c.known_camera else None

    def handle(self, input_name: str, msg: Any, factory: MessageFactory) -> list[Output]:
        if input_name == "joint_states":
            try:
                self._q = joint_positions(msg, self.joint_names, known=self._known_joints)
            except ValueError as exc:
                raise InputRejected(str(exc)) from exc
            self._q_stamp = msg.header.stamp
            return []
        if input_name == "camera_info":
            self._info = msg
            return []
        if input_name == "camera_pose":
            if not self.config.known_camera:
                try:
                    self._T_base_camera = pose_to_matrix(msg.pose)
                except ValueError as exc:
                    raise InputRejected(f"camera_pose: {exc}") from exc
            return []
        return self._plan(input_name, msg, factory)

    def _camera(self) -> Any:
        if self._info is None:
            raise InputRejected("no CameraInfo received yet: the goal's camera intrinsics are unknown")
        try:
            return pinhole_from_camera_info(self._info, rectified=self.config.rectified)
        except ValueError as exc:
            raise InputRejected(f"unusable CameraInfo: {exc}") from exc

    def plan_goal(self, input_name: str, goal: Any, factory: MessageFactory, *, mpc: Any = None,
                  on_iteration: Any = None) -> list[Output]:
        """Plan for a goal message now (``input_name`` ``goal_image`` or ``goal_keypoints``), as a goal input
        does, with this plan's planner settings ``mpc`` (a ``VisualMPCConfig``; default the stage's) and
        ``on_iteration(i, cost, best_cost) -> stop`` (:meth:`gen3d_ros.robot.actions.VisualMPC.plan`): the action
        node's ``~/plan_trajectory``. Raises :class:`InputRejected` with the reason (no state yet, bad goal)
        instead of counting it: the caller reports it."""
        if input_name not in ("goal_image", "goal_keypoints"):
            raise KeyError(f"{input_name!r} is not a goal input")
        return self._plan(input_name, goal, factory, config=mpc, on_iteration=on_iteration)

    def _plan(self, input_name: str, goal: Any, factory: MessageFactory, **plan_kwargs: Any) -> list[Output]:
        c = self.config
        if self._q is None:
            raise InputRejected("no JointState received yet: the current joint state is unknown")
        if self._T_base_camera is None:
            raise InputRejected("no camera_pose received yet (and known_camera is off): the goal's camera is unknown")
        if c.max_state_age > 0:
            from gen3d_ros.io.messages import stamp_to_seconds

            age = stamp_to_seconds(goal.header.stamp) - stamp_to_seconds(self._q_stamp)
            if age > c.max_state_age:
                raise InputRejected(f"latest JointState is {age:.3f} s older than the goal (max_state_age "
                                    f"{c.max_state_age} s)")
        camera = self._camera()
        T_camera_base = invert_rigid(self._T_base_camera)
        if input_name == "goal_image":
            if (int(goal.width), int(goal.height)) != (camera.width, camera.height):
                raise InputRejected(f"goal Image is {goal.width}x{goal.height} but the CameraInfo describes "
                                    f"{camera.width}x{camera.height}")
            try:
                rgb = image_to_rgb(goal)
            except ValueError as exc:
                raise InputRejected(f"unusable goal Image: {exc}") from exc
            from gen3d_ros.pipeline.robot_pose import resize_for_fitting

            rgb, camera = resize_for_fitting(rgb, camera, c.max_image_side)
            plan = self.processor.plan(rgb, self._q, T_camera_base, camera, **plan_kwargs)
        else:
            try:
                pixels = polygon_to_pixels(goal)
            except ValueError as exc:
                raise InputRejected(str(exc)) from exc
            if pixels.shape[0] != len(c.keypoint_links):
                raise InputRejected(f"goal has {pixels.shape[0]} keypoints but keypoint_links names "
                                    f"{len(c.keypoint_links)} links {c.keypoint_links}")
            plan = self.processor.plan({"pixels": pixels, "links": c.keypoint_links}, self._q, T_camera_base,
                                       camera, **plan_kwargs)
        return self._outputs(plan, goal, factory)

    def _outputs(self, plan: Any, goal: Any, factory: MessageFactory) -> list[Output]:
        traj = plan.trajectory
        positions = np.asarray(traj.positions, dtype=np.float64)
        times = np.asarray(traj.times_from_start, dtype=np.float64)
        if not (np.isfinite(positions).all() and np.isfinite(times).all()):
            raise RuntimeError("planned trajectory is not finite")
        header = make_header(factory, goal.header)
        trajectory = joint_trajectory_msg(traj.joint_names, positions, times, factory, header=header)
        self.stats.extra["final_cost"] = float(plan.final_cost)
        self.stats.extra["goal_distance_final"] = float(plan.goal_distance_final)
        return [
            Output("trajectory", trajectory),
            Output("action", factory.new(
                "gen3d_ros/msg/RobotAction", header=make_header(factory, goal.header), trajectory=trajectory,
                objective=str(plan.objective), initial_cost=float(plan.initial_cost),
                final_cost=float(plan.final_cost), iterations=int(plan.iterations),
                latency_ms=float(plan.seconds * 1e3))),
        ]
