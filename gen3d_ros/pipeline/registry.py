"""The one list of gen3d stages: every host reads it, nothing else lists stages.

Each :class:`StageEntry` names a stage, its node (node name = params YAML section = ``ros2 launch`` node), the
``module:Class`` import paths of the :class:`~gen3d_ros.pipeline.base.Stage` and of its config dataclass (so
listing the registry imports neither torch nor the stages), the default topic of every input and output, and how a
node hosts it. Readers:

- the ROS nodes (:class:`gen3d_ros.ros.stage_node.StageNode`, one generic host): topics, latched outputs, quiet
  inputs, default worker; ``gen3d run`` and ``python -m gen3d_ros.ros.node_main NODE``: the node names;
- the launch files (:mod:`gen3d_ros.ros.launch_description`) and ``python -m gen3d_ros.ros.config_files``: the
  node names (one params section each);
- bag mode (:mod:`gen3d_ros.bagmode`): the same default topics as the nodes (an input topic a bag lacks is
  auto-detected when the bag has exactly one topic of its type), the stage and config classes, and
  ``gen3d bag --stages auto``'s choice (:attr:`StageEntry.auto_types`, :attr:`StageEntry.auto_any_input`);
- the CLI: the stage and node names in ``gen3d bag`` / ``gen3d run``.

A new stage is one module in ``pipeline/`` (a ``Stage`` subclass and its config dataclass with ``param(...)``
fields) and one entry in :data:`STAGES`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Mapping

#: Read-only settings every stage node declares besides its config and its ``<logical>_topic`` parameters
#: (:func:`gen3d_ros.ros.params.host_param_specs`); bag mode ignores them in a node's parameters.
NODE_SETTINGS = ("input_qos", "input_depth", "input_timeout", "worker")
#: Read-only TF settings of the nodes whose entry names a ``tf_input`` (:func:`gen3d_ros.ros.params.tf_param_specs`)
TF_SETTINGS = ("base_frame", "target_frame", "transform_timeout")
WORKERS = ("process", "thread")


def topic_param_name(logical: str) -> str:
    """``"cloud"`` -> ``"cloud_topic"``: the node parameter (and params-file key) naming an input's or output's
    topic."""
    return f"{logical}_topic"


def resolve_topic(topic: str, node: str, namespace: str = "/") -> str:
    """The absolute name rcl gives ``topic`` in node ``node`` of ``namespace`` (no remapping): ``points`` ->
    ``/<namespace>/points``, ``~/mesh`` -> ``/<namespace>/<node>/mesh``, ``/tf`` unchanged. Bag mode uses it to
    write outputs where a node at ``namespace`` would publish them. ValueError for an empty name or namespace
    that is not absolute."""
    if not topic:
        raise ValueError(f"empty topic name for node {node!r}")
    if not namespace.startswith("/"):
        raise ValueError(f"namespace {namespace!r} must be absolute (start with '/')")
    base = namespace.rstrip("/")
    if topic.startswith("/"):
        return topic
    if topic == "~" or topic.startswith("~/"):
        return f"{base}/{node}{topic[1:]}".rstrip("/")
    return f"{base}/{topic}"


def load_class(path: str) -> Any:
    """The object of a ``"module:Name"`` path (imports the module)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class StageEntry:
    """One stage and how it is hosted.

    ``name``: the ``Stage.name`` (``gen3d bag --stages``); ``node``: node name = params section = launch node;
    ``stage`` / ``config``: ``"module:Class"`` of the Stage and of its config dataclass; ``inputs`` / ``outputs``:
    default topic of every logical input / output of the Stage, a ROS name: relative (``points``, under the
    node's namespace) or private (``~/mesh``, under the node's name), so that ``__ns:=/car1`` and remapping move
    them (:func:`resolve_topic` expands them as rcl does);
    ``summary``: one line for help texts; ``latched``: outputs also published transient-local (rviz started
    later still gets the last one); ``quiet_inputs``: inputs that arrive now and then by nature (no
    ``input_timeout`` warning); ``worker``: default of the node's ``worker`` parameter (``"process"`` for stages
    whose native code holds the GIL for long); ``auto_types``: ``gen3d bag --stages auto`` runs the stage when
    the bag has a topic of each of these types and, if ``auto_any_input`` names inputs, one of them on its
    default topic; ``tf_input``: the input whose header frame the node looks up in TF at the message's stamp (its
    ``base_frame`` / ``target_frame`` parameters, :data:`TF_SETTINGS`).
    """

    name: str
    node: str
    stage: str
    config: str
    inputs: Mapping[str, str]
    outputs: Mapping[str, str]
    summary: str
    latched: frozenset[str] = frozenset()
    quiet_inputs: frozenset[str] = frozenset()
    worker: str = "thread"
    auto_types: tuple[str, ...] = ()
    auto_any_input: tuple[str, ...] = ()
    tf_input: str = ""

    @property
    def topics(self) -> dict[str, str]:
        """Default topic of every logical input and output name."""
        return {**self.inputs, **self.outputs}

    def stage_class(self) -> Any:
        """The Stage class (imports its module)."""
        return load_class(self.stage)

    def config_class(self) -> Any:
        """The config dataclass of the stage (imports its module)."""
        return load_class(self.config)


STAGES: tuple[StageEntry, ...] = (
    StageEntry(
        name="completion", node="completion_node",
        stage="gen3d_ros.pipeline.completion:CompletionStage",
        config="gen3d_ros.completion.processor:CompletionConfig",
        # relative input, private outputs: a namespace (__ns:=/car1) and remapping move them
        inputs={"cloud": "points"},
        outputs={"coarse_voxels": "~/coarse_voxels", "mesh_marker": "~/marker", "completed_mesh": "~/mesh",
                 "completed_voxels": "~/voxels"},
        summary="LiDAR PointCloud2 -> coarse voxels first (hgca), then the completed mesh (Marker, CompletedMesh) "
                "and completed voxels (PointCloud2)",
        latched=frozenset({"mesh_marker"}),
        # open3d's Poisson reconstruction holds the GIL for the whole call (seconds): run it in a child process.
        worker="process",
        auto_types=("sensor_msgs/msg/PointCloud2",),
        tf_input="cloud",
    ),
    StageEntry(
        name="robot_pose", node="robot_pose_node",
        stage="gen3d_ros.pipeline.robot_pose:RobotPoseStage",
        config="gen3d_ros.pipeline.robot_pose:RobotPoseStageConfig",
        # joint_readings: the robot driver's encoders (relative joint_states), used when fresh
        inputs={"image": "image", "camera_info": "camera_info", "joint_readings": "joint_states"},
        # joint_states private: not the robot driver's joint_states; tf absolute, as tf2 listeners expect
        outputs={"estimate": "~/estimate", "joint_states": "~/joint_states", "camera_pose": "~/camera_pose",
                 "camera_pose_with_covariance": "~/camera_pose_with_covariance", "tf": "/tf",
                 "calibration": "~/calibration", "tf_static": "/tf_static"},
        summary="Image + CameraInfo (+ the encoders' JointState) -> the robot's joints (JointState), the camera "
                "pose (PoseStamped, with covariance, /tf when asked), RobotPoseEstimate; mode calibrate: the static "
                "camera (/tf_static, PoseWithCovarianceStamped)",
        # calibrate mode publishes its result once: late tf2 listeners and consumers still get it
        latched=frozenset({"calibration", "tf_static"}),
        # a robot without encoders on the topic is normal: no input_timeout warning
        quiet_inputs=frozenset({"joint_readings"}),
        # the fitting loop is Python + torch: in the node's process it would keep the executor waiting for the GIL
        worker="process",
        auto_types=("sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo"),
    ),
    StageEntry(
        name="action", node="action_node",
        stage="gen3d_ros.pipeline.action:ActionStage",
        config="gen3d_ros.pipeline.action:ActionStageConfig",
        # joint_states: the robot driver's; camera_pose: robot_pose_node's output
        inputs={"goal_image": "goal_image", "goal_keypoints": "goal_keypoints", "joint_states": "joint_states",
                "camera_info": "camera_info", "camera_pose": "robot_pose_node/camera_pose"},
        outputs={"trajectory": "~/trajectory", "action": "~/action"},
        summary="a goal (Image or PolygonStamped keypoints) + JointState -> JointTrajectory, RobotAction",
        quiet_inputs=frozenset({"goal_image", "goal_keypoints"}),
        # the optimisation loop is Python + torch: keep it off the executor's process (GIL)
        worker="process",
        # a bag's camera Image is no goal: the goal must be on its own default topic
        auto_types=("sensor_msgs/msg/JointState",),
        auto_any_input=("goal_image", "goal_keypoints"),
    ),
)


def stage_names() -> list[str]:
    """Every stage name, in registry order."""
    return [entry.name for entry in STAGES]


def node_names() -> list[str]:
    """Every node name, in registry order (the order ``gen3d run`` and the all-in-one launch file start them)."""
    return [entry.node for entry in STAGES]


def stage_entry(name: str) -> StageEntry:
    """The entry of stage ``name``; KeyError listing the known stages."""
    for entry in STAGES:
        if entry.name == name:
            return entry
    raise KeyError(f"unknown stage {name!r}; known stages: {stage_names()}")


def node_entry(node: str) -> StageEntry:
    """The entry whose node is ``node``; KeyError listing the known nodes."""
    for entry in STAGES:
        if entry.node == node:
            return entry
    raise KeyError(f"unknown node {node!r}; known nodes: {node_names()}")
