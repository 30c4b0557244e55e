"""A stage in a child process: serialized (CDR) messages in, serialized messages out. No rclpy here.

Why: native code that holds the GIL for the whole call (open3d's Poisson reconstruction does, for seconds)
stalls every thread of the node's process, so with a worker *thread* the executor could not run subscription
callbacks, the diagnostics timer or parameter services until the frame is done. In a child process the node's
process only moves bytes: subscriptions are raw (``raw=True``), outputs are published raw, and the child works
in the rosbags message world (``rosbags_factory``), which every stage supports (bag mode uses it). A crash of
native code (a segfault on a weird cloud) kills the child, not the node: the frame counts as failed and the
child is restarted.

Protocol over a ``multiprocessing`` pipe (the child is started with ``spawn``: never fork a process that runs
DDS threads): ``("process", input_name, cdr, transforms)`` -> zero or more ``("early", [(output_name, cdr)])``,
one per output the stage emits before it is done (:meth:`gen3d_ros.pipeline.base.Stage.emit`: hGCA's coarse
voxels), sent the moment it exists, then ``("done", [(output_name, cdr), …], StageStats)``; the pipe keeps that order;
``("config", config)`` -> ``("configured", reason)``: the child builds a stage of the new config and swaps it in,
or keeps the old one and says why (``reason`` empty on success); ``("stop",)``. At start the child sends
``("ready", "")`` or ``("fatal", reason)`` (then exits). Every build's outcome goes to the parent's
``on_build(config, reason)`` callback, so a node can report (and undo) a configuration that does not build.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import signal
import threading
from typing import Any, Callable

from gen3d_ros.pipeline.base import Output, StageStats
from gen3d_ros.ros.logs import setup_stage_process_logging


class StageProcessError(RuntimeError):
    """The child could not build its stage, or died during a frame; the text says which and why."""


def class_path(cls: type) -> str:
    """``"module:QualName"`` of a class, to import it in the child."""
    return f"{cls.__module__}:{cls.__qualname__}"


def _import(path: str) -> Any:
    module, name = path.split(":")
    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def merge_child_stats(into: StageStats, child: StageStats) -> None:
    """Copy the child's counters into the node's ``StageStats``; ``dropped`` is the node's own (its queue)."""
    into.processed, into.rejected, into.failed = child.processed, child.rejected, child.failed
    into.last_latency_ms, into.total_latency_ms = child.last_latency_ms, child.total_latency_ms
    into.last_error = child.last_error or into.last_error
    into.extra.update(child.extra)


def _pack(stage: Any, typestore: Any, outputs: list[Output], log: logging.Logger) -> list[tuple[str, bytes]]:
    """``(name, CDR bytes)`` of each output; one its type cannot hold is counted as a failure and left out."""
    packed = []
    for output in outputs:
        try:
            packed.append((output.name, bytes(typestore.serialize_cdr(output.msg, stage.outputs[output.name]))))
        except Exception as exc:  # noqa: BLE001 - a stage produced a message its type cannot hold
            stage.stats.failed += 1
            stage.stats.last_error = f"cannot serialize output {output.name!r}: {type(exc).__name__}: {exc}"
            log.error(stage.stats.last_error)
    return packed


def _serve(conn: Any, stage_path: str, config: Any, stats: StageStats) -> None:
    """Child main loop: build the stage (counting on from ``stats``), answer requests until "stop" or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the parent decides
    setup_stage_process_logging()
    log = logging.getLogger("gen3d_ros.ros.stage_process")
    try:
        from gen3d_ros.io.messages import rosbags_factory

        stage_cls = _import(stage_path)
        factory = rosbags_factory()
        typestore = factory.typestore
        stage = stage_cls(config)
        stage.stats = stats
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which reports it in diagnostics
        conn.send(("fatal", f"cannot build {stage_path} in the stage process: {type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", ""))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        kind = request[0]
        if kind == "stop":
            return
        if kind == "config":
            try:
                new_stage = stage_cls(request[1])
            except Exception as exc:  # noqa: BLE001 - keep the old stage, say why
                reason = f"{type(exc).__name__}: {exc}"
                log.error("reconfiguration failed, kept the previous config: %s", reason)
                conn.send(("configured", reason))
            else:
                new_stage.stats = stage.stats
                stage = new_stage
                conn.send(("configured", ""))
            continue
        _, input_name, data, transforms = request
        try:
            msg = typestore.deserialize_cdr(data, stage.inputs[input_name])
        except Exception as exc:  # noqa: BLE001 - not a valid message of the input's type
            stage.stats.rejected += 1
            stage.stats.last_error = f"rejected: cannot deserialize a {input_name} message: {exc}"
            conn.send(("done", [], stage.stats))
            continue
        # Early outputs go to the parent while the stage works on: a send blocks only while the pipe is full.
        def send_early(output: Output, stage: Any = stage) -> None:
            conn.send(("early", _pack(stage, typestore, [output], log)))

        # never raises for bad data
        outputs = stage.process(input_name, msg, factory, emit=send_early, transforms=transforms)
        conn.send(("done", _pack(stage, typestore, outputs, log), stage.stats))


class StageProcess:
    """Parent side: one child process running ``stage_cls(config)``. :meth:`process` and :meth:`ensure_ready` are
    called from one thread (the node's worker), :meth:`reconfigure` and :meth:`stop` from any. ``stats``: the
    node's counters, kept up to date from the child's (a restarted child counts on from them).

    ``config`` is the configuration the child's stage was built from (a restarted child builds it again); a
    :meth:`reconfigure` d one replaces it only once the child has built it. ``on_build(config, reason)`` is
    called (from the worker thread) after every build in the child: at start, after a restart, after a
    reconfiguration; ``reason`` is "" on success, else why it failed (then :attr:`has_stage` says whether the
    previous stage still runs).
    """

    def __init__(self, stage_cls: type, config: Any, stats: StageStats, *, name: str = "gen3d_stage",
                 on_build: Callable[[Any, str], None] | None = None) -> None:
        self.stage_path = class_path(stage_cls)
        self.config = config
        self.stats = stats
        self.name = name
        self.on_build = on_build
        self._fatal = ""
        self.restarts = 0
        self._ctx = multiprocessing.get_context("spawn")
        self._proc: Any = None
        self._conn: Any = None
        self._ready = False
        self._pending_config: Any = None
        self._lock = threading.Lock()  # guards sends, the process handle and the pending config
        self._stopped = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def has_stage(self) -> bool:
        """Whether the child is up with a built stage (False before it is ready, after a fatal build, after
        it died)."""
        return self._ready and not self._fatal and self._proc is not None

    def start(self) -> None:
        """Start the child (returns at once; it imports and builds its stage in the background)."""
        with self._lock:
            if self._stopped:
                raise StageProcessError("stage process stopped")
            parent, child = self._ctx.Pipe()
            self._proc = self._ctx.Process(target=_serve, args=(child, self.stage_path, self.config, self.stats),
                                           name=self.name, daemon=True)
            self._proc.start()
            child.close()
            self._conn, self._ready = parent, False

    def reconfigure(self, config: Any) -> None:
        """Build ``config`` in the child at the next :meth:`ensure_ready` (before the next frame); until it is
        built, the previous stage keeps running. A child whose stage could not be built at all starts over with
        ``config``."""
        with self._lock:
            if self._fatal:  # nothing runs: the new config is the one to start with
                self.config, self._pending_config, self._fatal = config, None, ""
            else:
                self._pending_config = config

    def _notify(self, config: Any, reason: str) -> None:
        if self.on_build is not None:
            self.on_build(config, reason)

    def _child_died(self, during: str, exc: BaseException) -> StageProcessError:
        """Reap a child that died ``during`` something; the error to raise (it is restarted on next use)."""
        code = self._proc.exitcode if self._proc is not None else None
        if self._proc is not None:
            self._proc.join(1.0)
            code = self._proc.exitcode if code is None else code
        self._proc, self._ready = None, False
        self.restarts += 1
        self.stats.extra["stage_process_restarts"] = float(self.restarts)
        return StageProcessError(f"stage process died during {during} (exit code {code}); restarting it")

    def ensure_ready(self) -> None:
        """Start (or restart) the child if it is not running, wait until its stage is built, then build a
        pending configuration. Raises StageProcessError when no stage can run: the configuration does not
        build (every later call fails with that reason until :meth:`reconfigure`) or the child died."""
        if self._fatal:
            raise StageProcessError(self._fatal)
        if self._proc is None or not self._proc.is_alive():  # died while idle: restart, lose nothing
            if self._proc is not None:
                self.restarts += 1
                self.stats.extra["stage_process_restarts"] = float(self.restarts)
            self.start()
        if not self._ready:
            try:
                kind, reason = self._conn.recv()
            except (EOFError, OSError) as exc:
                raise self._child_died("the start of its stage", exc) from exc
            if kind != "ready":
                self._fatal = reason
                self._notify(self.config, reason)
                raise StageProcessError(reason)
            self._ready = True
            self._notify(self.config, "")
        with self._lock:
            config, self._pending_config = self._pending_config, None
            if config is not None:
                self._conn.send(("config", config))
        if config is None:
            return
        try:
            _, reason = self._conn.recv()
        except (EOFError, OSError) as exc:
            error = self._child_died("a reconfiguration", exc)
            self._notify(config, f"{error}; it restarts with the previous config")
            raise error from exc
        if not reason:
            self.config = config
        self._notify(config, reason)

    def process(self, input_name: str, data: bytes, on_output: Callable[[str, bytes], None] | None = None, *,
                transforms: dict[str, Any] | None = None) -> list[tuple[str, bytes]]:
        """Run one serialized message through the child; its serialized final outputs. Updates ``stats``.

        ``on_output(name, cdr)``: called (in this thread) with each early output the moment the child sends it,
        before this returns; without it, early outputs are returned first. ``transforms``: the host's TF lookups
        for the message (:attr:`gen3d_ros.pipeline.base.Stage.transforms`), sent along. Should ``on_output``
        raise, the rest of the frame is still read (the pipe stays in step) and the error is raised afterwards.

        Raises StageProcessError when the child died during the frame (it is restarted for the next one; early
        outputs already handed to ``on_output`` stay delivered) or cannot build its stage (then every frame fails
        with that reason until :meth:`reconfigure`).
        """
        self.ensure_ready()
        early: list[tuple[str, bytes]] = []
        error: BaseException | None = None
        try:
            with self._lock:
                self._conn.send(("process", input_name, data, transforms or {}))
            reply = self._conn.recv()
            while reply[0] == "early":
                if on_output is None:
                    early.extend(reply[1])
                else:
                    for name, cdr in reply[1]:
                        try:
                            on_output(name, cdr)
                        except Exception as exc:  # noqa: BLE001 - raised once the frame is read
                            error = error or exc
                reply = self._conn.recv()
            _, outputs, child_stats = reply
        except (EOFError, OSError) as exc:
            raise self._child_died(f"a {input_name} message", exc) from exc
        merge_child_stats(self.stats, child_stats)
        self.stats.extra["stage_process_restarts"] = float(self.restarts)
        if error is not None:
            raise error
        return early + outputs

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the child to exit; terminate it after ``timeout`` s (a frame in progress is abandoned)."""
        with self._lock:
            self._stopped = True
            proc, conn = self._proc, self._conn
            if proc is None:
                return
            try:
                conn.send(("stop",))
            except (OSError, ValueError):
                pass
        proc.join(timeout)
        if proc.is_alive():
            proc.terminate()
            proc.join(2.0)
        if proc.is_alive():
            proc.kill()
            proc.join(1.0)
        conn.close()
