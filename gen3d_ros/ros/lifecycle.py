"""Lifecycle (managed) variants of the stage nodes (``rclpy.lifecycle``; ``gen3d run --lifecycle``, the launch files'
``lifecycle:=true``, ``stage_node NODE --lifecycle true``). The plain nodes stay the default.

A managed node does nothing at construction (state ``unconfigured``) but offer the standard lifecycle services
(``~/change_state``, ``~/get_state`` …), so a lifecycle manager (nav2's, ``ros2 lifecycle set``) drives it:

- **configure** (the parameters, with a params file's values, are declared at construction): checks the files
  they name, builds the stage (loads the models; with the process worker the child builds them), creates the
  publishers, the node's services / action server and /diagnostics; FAILURE with the reason logged when a check
  or a build fails (the node stays unconfigured);
- **activate**: subscribes to the inputs: processing starts;
- **deactivate**: drops the input subscriptions (pause; nothing new arrives, outputs of a frame in progress are
  dropped); the stage, its models and the kept results stay;
- **cleanup**: stops the worker and the stage process and destroys everything configure created (the models
  are freed); parameters keep their values for the next configure;
- **shutdown**: cleanup from any state.

:func:`lifecycle_class` puts :class:`ManagedStage` in front of a host class (``StageNode`` or a subclass with
services) and ``rclpy.lifecycle.LifecycleNode`` behind it, so the host's own code runs unchanged in configure.
"""

from __future__ import annotations

from typing import Any

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from gen3d_ros.ros.params import coerce_value

_ENTITY_LISTS = ("publishers", "subscriptions", "services", "clients", "timers", "guards", "waitables")


class ManagedStage:
    """Lifecycle behaviour for a stage host (see the module docstring); only used through
    :func:`lifecycle_class`."""

    _configuring = False
    _active = False
    _configured = False
    stage: Any = None
    config: Any = None

    # --- hooks into StageNode ------------------------------------------------------------------------------

    def _setup(self) -> None:
        if self._configuring:  # on_configure: the host's whole setup
            super()._setup()  # type: ignore[misc]
            return
        # At construction only the parameters, so they can be read and set while unconfigured (nothing is
        # checked or built until configure).
        from gen3d_ros.ros.params import declared_params

        self._declare(declared_params(self.entry))  # type: ignore[attr-defined]

    def _declare(self, params: Any) -> dict[str, Any]:
        """Declare the parameters not declared yet (a configure after a cleanup keeps the values set since)."""
        fresh = [p for p in params if not self.has_parameter(p.spec.name)]  # type: ignore[attr-defined]
        values = super()._declare(fresh)  # type: ignore[misc]
        for p in params:
            if p.spec.name not in values:
                values[p.spec.name] = coerce_value(p.spec, self.get_parameter(p.spec.name).value)  # type: ignore
        return values

    def _subscribe(self, inp: Any, reliability: str) -> None:
        """Subscribe only while active; otherwise remember the reliability for :meth:`on_activate`."""
        if self._active:
            super()._subscribe(inp, reliability)  # type: ignore[misc]
        else:
            inp.reliability = reliability

    def _publish(self, name: str, msg: Any) -> None:
        if self._active:
            super()._publish(name, msg)  # type: ignore[misc]

    # --- transitions ---------------------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._before = {kind: set(map(id, getattr(self, kind))) for kind in _ENTITY_LISTS}
        self._configuring, self._shutting_down = True, False
        try:
            self._setup()
        except Exception as exc:  # noqa: BLE001 - a configuration that cannot run fails the transition
            self.get_logger().error(f"configure failed: {type(exc).__name__}: {exc}")  # type: ignore[attr-defined]
            self._teardown()
            return TransitionCallbackReturn.FAILURE
        finally:
            self._configuring = False
        self._configured = True
        self.get_logger().info("configured (inactive: inputs not subscribed)")  # type: ignore[attr-defined]
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = True
        for inp in self._inputs.values():  # type: ignore[attr-defined]
            self._subscribe(inp, inp.reliability)
        self.get_logger().info("active: subscribed to "  # type: ignore[attr-defined]
                               f"{sorted(i.topic for i in self._inputs.values())}")  # type: ignore[attr-defined]
        return super().on_activate(state)  # type: ignore[misc]

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unsubscribe()
        self.get_logger().info("inactive: input subscriptions dropped")  # type: ignore[attr-defined]
        return super().on_deactivate(state)  # type: ignore[misc]

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        self.get_logger().info("cleaned up (unconfigured)")  # type: ignore[attr-defined]
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    # --- helpers -------------------------------------------------------------------------------------------

    def _unsubscribe(self) -> None:
        self._active = False
        for inp in getattr(self, "_inputs", {}).values():
            if inp.subscription is not None:
                self.destroy_subscription(inp.subscription)  # type: ignore[attr-defined]
                inp.subscription = None

    def _teardown(self) -> None:
        """Undo configure: stop the worker and stage process, destroy what configure created."""
        self._unsubscribe()
        self._stop_processing()  # type: ignore[attr-defined]
        if getattr(self, "_on_set_parameters", None) is not None and self._configured:
            self.remove_on_set_parameters_callback(self._on_set_parameters)  # type: ignore[attr-defined]
        before = getattr(self, "_before", None) or {kind: set() for kind in _ENTITY_LISTS}
        for kind, destroy in (("publishers", "destroy_publisher"), ("subscriptions", "destroy_subscription"),
                              ("services", "destroy_service"), ("clients", "destroy_client"),
                              ("timers", "destroy_timer"), ("guards", "destroy_guard_condition")):
            for entity in [e for e in getattr(self, kind) if id(e) not in before[kind]]:
                getattr(self, destroy)(entity)
        for waitable in [w for w in self.waitables if id(w) not in before["waitables"]]:  # type: ignore[attr-defined]
            destroy = getattr(waitable, "destroy", None)  # an action server
            destroy() if callable(destroy) else self.remove_waitable(waitable)  # type: ignore[attr-defined]
        self.stage, self._stage_process, self._worker, self._queue = None, None, None, None
        self._configured = False


def lifecycle_class(host: type) -> type:
    """The managed variant of the stage host class ``host`` (``StageNode`` or a subclass)."""
    return type(f"Lifecycle{host.__name__}", (ManagedStage, host, LifecycleNode),
                {"__doc__": f"Managed (lifecycle) {host.__name__}: see :mod:`gen3d_ros.ros.lifecycle`."})
