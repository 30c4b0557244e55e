"""Which node class hosts each stage of the registry: :class:`~gen3d_ros.ros.stage_node.StageNode`, or a subclass
that adds node behaviour (services, an action server), and its lifecycle (managed) variant. Every place that starts
nodes (``stage_node NODE``, ``gen3d run``, the tests) asks here.
"""

from __future__ import annotations

from typing import Any

from gen3d_ros.pipeline.registry import StageEntry, load_class, node_entry

#: Nodes whose host adds node behaviour to ``StageNode``: ``"module:Class"``, imported when used.
HOSTS = {
    "completion_node": "gen3d_ros.ros.completion_services:CompletionNode",
    "action_node": "gen3d_ros.ros.action_server:ActionNode",
}


def host_class(entry: StageEntry) -> type:
    """The node class that hosts ``entry``: its :data:`HOSTS` class, else ``StageNode``."""
    path = HOSTS.get(entry.node, "gen3d_ros.ros.stage_node:StageNode")
    return load_class(path)


def create_node(node: str, *, lifecycle: bool = False, **node_kwargs: Any) -> Any:
    """A node of the registry's node ``node`` (KeyError listing the known nodes): started, or with ``lifecycle``
    a managed node in state unconfigured (:mod:`gen3d_ros.ros.lifecycle`); ``node_kwargs``: the node class's
    (``node_name``, ``context``, ``cli_args`` …)."""
    entry = node_entry(node)
    cls = host_class(entry)
    if lifecycle:
        from gen3d_ros.ros.lifecycle import lifecycle_class

        cls = lifecycle_class(cls)
    return cls(entry, **node_kwargs)


def bring_up(node: Any) -> str:
    """Drive a managed node from unconfigured to active (configure, activate); "" on success, else which
    transition failed (the node logged why)."""
    from rclpy.lifecycle import TransitionCallbackReturn

    for name in ("configure", "activate"):
        if getattr(node, f"trigger_{name}")() != TransitionCallbackReturn.SUCCESS:
            return f"{node.get_name()}: {name} failed"
    return ""
