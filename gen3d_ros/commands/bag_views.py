"""What ``gen3d bag`` can do with the messages of a run besides writing the output bag (the ``observe`` hook of
:func:`gen3d_ros.bagmode.run_bag`):

- ``--serve [PORT]``: a Foxglove WebSocket live view (:class:`gen3d_ros.viz.foxglove_live.FoxgloveLiveView`) of
  the input clouds, completed meshes and voxels, camera poses and TF as the run makes them; after the run it keeps
  serving (the last message of each topic goes to every new client) until Ctrl-C / SIGTERM;
- ``--meshes DIR`` + ``--mesh-format ply|obj|glb``: every completed mesh also as a file
  ``DIR/<topic>_<time ns>.<format>`` (the same mesh as the ``CompletedMesh`` in the bag; metres, the cloud's
  frame), written atomically through :mod:`gen3d_ros.outputs`.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("gen3d_ros.commands.bag_views")
MESH_FORMATS = ("ply", "obj", "glb")


class MeshFiles:
    """Writes each ``gen3d_ros/msg/CompletedMesh`` it sees to ``folder`` as ``<topic>_<time_ns>.<fmt>``."""

    def __init__(self, folder: Path, fmt: str) -> None:
        self.folder, self.fmt = Path(folder), fmt
        self.written: list[Path] = []

    def __call__(self, topic: str, msgtype: str, msg: Any, time_ns: int) -> None:
        if msgtype != "gen3d_ros/msg/CompletedMesh":
            return
        from gen3d_ros.pipeline.kept_result import KeptCompletion

        kept = KeptCompletion()
        kept.keep("completed_mesh", msg)
        path = self.folder / f"{topic.strip('/').replace('/', '_')}_{time_ns}.{self.fmt}"
        kept.write_mesh_file(path)
        self.written.append(path)


class BagObservers:
    """The observers a ``gen3d bag`` run asked for, as one ``observe`` callable; failures are logged, never
    raised (a view must not end a run)."""

    def __init__(self, serve_port: int | None = None, serve_host: str = "127.0.0.1",
                 meshes: MeshFiles | None = None) -> None:
        self.view = None
        if serve_port is not None:
            from gen3d_ros.viz.foxglove_live import FoxgloveLiveView

            self.view = FoxgloveLiveView(port=serve_port, host=serve_host)
            print(f"Foxglove live view on {self.view.url} (Foxglove app: Open connection -> Foxglove WebSocket)",
                  flush=True)
        self.meshes = meshes
        self.errors = 0

    def __call__(self, topic: str, msgtype: str, msg: Any, time_ns: int) -> None:
        for sink in (self._serve, self.meshes):
            if sink is None:
                continue
            try:
                sink(topic, msgtype, msg, time_ns)
            except Exception as exc:  # noqa: BLE001 - a view or a mesh file must not end the run
                self.errors += 1
                log.warning("%s of %s: %s: %s", "live view" if sink == self._serve else "mesh file", topic,
                            type(exc).__name__, exc)

    def _serve(self, topic: str, msgtype: str, msg: Any, time_ns: int) -> None:
        if self.view is not None:
            self.view.log_message(topic, msgtype, msg, time_ns)

    def linger(self) -> None:
        """After the run: keep serving until SIGINT / SIGTERM (then return)."""
        if self.view is None:
            return
        done = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: done.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        print(f"run finished; still serving the last messages on {self.view.url} (Ctrl-C to stop)", flush=True)
        try:
            while not done.wait(0.5):  # a timed wait: the signal handler runs between the waits
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def close(self) -> None:
        if self.view is not None:
            self.view.close()


def observers_from_args(args: Any, inputs: list) -> BagObservers | None:
    """``gen3d bag --serve`` / ``--meshes``: checked (the folder, the port) before the run; None when neither is
    asked. UsageError (exit 2) for a folder that cannot be written or a port that cannot be served."""
    if args.serve is None and args.meshes is None:
        return None
    from gen3d_ros.commands.common import UsageError
    from gen3d_ros.outputs import OutputError, prepare_run_folder

    meshes = None
    if args.meshes is not None:
        try:
            folder = prepare_run_folder(args.meshes, inputs=[*inputs, args.output], what="--meshes folder")
        except OutputError as exc:
            raise UsageError(str(exc)) from exc
        meshes = MeshFiles(folder, args.mesh_format)
    try:
        return BagObservers(args.serve, args.serve_host, meshes)
    except (OSError, RuntimeError) as exc:
        raise UsageError(f"--serve {args.serve}: cannot start the Foxglove server: {exc}") from exc
