"""``action_node``'s ROS 2 action ``~/plan_trajectory`` (``gen3d_ros/action/PlanTrajectory``), next to its topic
interface: a goal image or goal keypoints (+ horizon and iterations) -> feedback after every Adam iteration
(iteration, cost, best cost) -> result ``trajectory_msgs/JointTrajectory`` + costs; a cancel ends the
optimisation at the next iteration and the goal ends CANCELED with the best trajectory so far.

The planner runs in this process, in the action's own thread (a ``MultiThreadedExecutor`` runs the node, so
cancel requests, feedback and the topic interface go on meanwhile), on its own
:class:`~gen3d_ros.pipeline.action.ActionStage` of the running configuration (built at the first goal and after a
parameter change). It plans from the latest ``joint_states``, ``camera_info`` and ``camera_pose`` the node
received on its inputs (or ``known_camera``), like the topic interface. One goal at a time: a goal that arrives
while one runs is rejected, and so is any goal while a managed (lifecycle) node is not active.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from gen3d_ros.ros.stage_node import StageNode

#: the inputs whose latest message a plan starts from
STATE_INPUTS = ("joint_states", "camera_info", "camera_pose")


class ActionNode(StageNode):
    """The action stage's host with the ``~/plan_trajectory`` action server."""

    #: node_main spins this node with a MultiThreadedExecutor (a running goal must not block cancel requests)
    needs_threads = True

    def _setup(self) -> None:
        from rclpy.action import ActionServer
        from rclpy.callback_groups import ReentrantCallbackGroup

        from gen3d_ros.action import PlanTrajectory

        self._latest: dict[str, Any] = {}
        self._planner: Any = None
        self._planner_config: Any = None
        self._goal_lock = threading.Lock()
        self._busy = False
        super()._setup()
        self._action_server = ActionServer(
            self, PlanTrajectory, "~/plan_trajectory", execute_callback=self._execute,
            goal_callback=self._on_goal, cancel_callback=self._on_cancel,
            callback_group=ReentrantCallbackGroup())
        self.get_logger().info(f"action: {self.resolve_topic_name('~/plan_trajectory')} (PlanTrajectory)")

    def _on_input(self, name: str, msg: Any) -> None:
        if name in STATE_INPUTS:
            self._latest[name] = msg  # bytes with the process worker: deserialized when a goal needs it
        super()._on_input(name, msg)

    # --- action callbacks ----------------------------------------------------------------------------------

    def _on_goal(self, goal: Any) -> Any:
        from rclpy.action import GoalResponse

        if not getattr(self, "_active", True):  # a managed node that is not active plans nothing
            self.get_logger().warning("~/plan_trajectory: rejected a goal: the node is not active")
            return GoalResponse.REJECT
        kinds = int(len(goal.goal_image.data) > 0) + int(len(goal.goal_keypoints) > 0)
        if kinds != 1:
            self.get_logger().warning(f"~/plan_trajectory: rejected a goal with {kinds} goal kinds (need exactly "
                                      "one of goal_image, goal_keypoints)")
            return GoalResponse.REJECT
        with self._goal_lock:
            if self._busy:
                self.get_logger().warning("~/plan_trajectory: rejected a goal: another one is being planned")
                return GoalResponse.REJECT
            self._busy = True
        return GoalResponse.ACCEPT

    def _on_cancel(self, goal_handle: Any) -> Any:
        from rclpy.action import CancelResponse

        return CancelResponse.ACCEPT

    def _execute(self, goal_handle: Any) -> Any:
        from gen3d_ros.action import PlanTrajectory

        result = PlanTrajectory.Result()
        try:
            self._plan(goal_handle, result)
        except Exception as exc:  # noqa: BLE001 - a goal that cannot be planned aborts; the node stays up
            result.message = f"{type(exc).__name__}: {exc}" if not _is_rejection(exc) else str(exc)
            self.get_logger().warning(f"~/plan_trajectory aborted: {result.message}")
            goal_handle.abort()
        finally:
            with self._goal_lock:
                self._busy = False
        return result

    def _plan(self, goal_handle: Any, result: Any) -> None:
        """Plan ``goal_handle``'s goal into ``result``; succeed, or end canceled (best trajectory so far)."""
        from gen3d_ros.action import PlanTrajectory

        goal = goal_handle.request
        planner = self._ensure_planner()
        for name in STATE_INPUTS:
            if name in self._latest:
                planner.process(name, self._message(name, self._latest[name]), self.factory)
        mpc = self.config.mpc
        changes = {k: int(v) for k, v in (("waypoints", goal.waypoints), ("iterations", goal.iterations)) if v}
        mpc = dataclasses.replace(mpc, **changes) if changes else mpc

        def on_iteration(i: int, cost: float, best: float) -> bool:
            goal_handle.publish_feedback(PlanTrajectory.Feedback(iteration=i, cost=cost, best_cost=best))
            return goal_handle.is_cancel_requested

        kind, msg = self._goal_message(goal)
        outputs = planner.plan_goal(kind, msg, self.factory, mpc=mpc, on_iteration=on_iteration)
        action = next(o.msg for o in outputs if o.name == "action")
        result.trajectory, result.initial_cost, result.final_cost = action.trajectory, action.initial_cost, \
            action.final_cost
        result.iterations = action.iterations
        if goal_handle.is_cancel_requested:
            result.message = f"canceled after {action.iterations} of {mpc.iterations} iterations"
            goal_handle.canceled()
        else:
            result.message = f"planned {mpc.waypoints} waypoints in {action.iterations} iterations"
            goal_handle.succeed()
        self.get_logger().info(f"~/plan_trajectory: {result.message}; cost {action.initial_cost:.4g} -> "
                               f"{action.final_cost:.4g}")

    # --- helpers -------------------------------------------------------------------------------------------

    def _ensure_planner(self) -> Any:
        """This node's own stage of the running configuration (rebuilt after a parameter change)."""
        if self._planner is None or self._planner_config is not self.config:
            config = self.config
            self._planner = self.stage_cls(config)
            self._planner_config = config
        return self._planner

    def _message(self, name: str, msg: Any) -> Any:
        if isinstance(msg, (bytes, bytearray, memoryview)):
            from rclpy.serialization import deserialize_message

            msg = deserialize_message(bytes(msg), self.factory.cls(self.stage_cls.inputs[name]))
        return msg

    def _goal_message(self, goal: Any) -> tuple[str, Any]:
        """The stage input of the goal: ``goal_image`` as is, keypoints as a ``PolygonStamped`` stamped now."""
        if len(goal.goal_image.data):
            return "goal_image", goal.goal_image
        polygon = self.factory.new("geometry_msgs/msg/PolygonStamped")
        polygon.header.stamp = self.get_clock().now().to_msg()
        polygon.polygon.points = list(goal.goal_keypoints)
        return "goal_keypoints", polygon


def _is_rejection(exc: BaseException) -> bool:
    from gen3d_ros.pipeline.base import InputRejected

    return isinstance(exc, InputRejected)
