"""Every file gen3d_ros writes goes through here: checked before any work, written atomically, marked as ours.

Three rules, enforced in one place so that no command can break them by accident:

1. **No output replaces an input.** :func:`prepare_output` refuses an output path that is, contains or lies inside
   one of the command's inputs (after resolving links), and two outputs that collide.
2. **``--force`` only replaces what gen3d_ros wrote.** Every file and folder written here carries a marker
   (:func:`written_by_gen3d` reads it back): a ``generator`` key in JSON, a ``comment`` line in PLY/PCD/YAML
   headers, a ``Software`` text chunk in PNG, ``asset.generator`` in glTF, a comment in GIF, ``custom_data`` in rosbag2 metadata, a
   ``gen3d_ros.*`` ``format`` in checkpoints, a ``.gen3d_output`` file in folders. A file without one (a KITTI
   ``.bin`` has no place for it; a user's own file has none) is never replaced, forced or not.
3. **Nothing is half-written.** A file is written to a hidden temporary sibling (``.<name>.gen3d-tmp-<pid>-<id>``)
   and renamed over the destination only when complete; on an exception, SIGTERM (:func:`install_sigterm_handler`)
   or a kill, the destination keeps its old content. Temporaries left by a killed process are removed the next
   time an output is prepared in that folder (:func:`remove_stale_temporaries`).

Outputs are checked before the computation starts (:func:`prepare_output`): a read-only folder or an existing
output is reported at once, not after minutes of work.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from gen3d_ros import __version__

#: What our markers say; ``written_by_gen3d`` looks for this text.
GENERATOR = f"gen3d_ros {__version__}"
MARKER_WORD = "gen3d_ros"
#: File inside a folder written by gen3d_ros (demo output, training run, bag directory).
DIR_MARKER = ".gen3d_output"
_TEMP_TAG = ".gen3d-tmp-"
_TEMP_RE = re.compile(r"^\..+\.gen3d-tmp-(\d+)-[0-9a-f]+")


class OutputError(ValueError):
    """An output cannot be written as asked (it is an input, exists, is not ours, folder not writable)."""


class OutputExistsError(OutputError, FileExistsError):
    """The output exists and ``force`` was not given."""


# ---------------------------------------------------------------------------------------------- checks


def _resolved(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def overlaps(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` are the same path or one contains the other (links resolved)."""
    ra, rb = _resolved(a), _resolved(b)
    return ra == rb or ra in rb.parents or rb in ra.parents


def prepare_output(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike | None] = (),
                   others: Iterable[str | os.PathLike | None] = (), force: bool = False,
                   what: str = "output") -> Path:
    """Check that ``path`` may be written now, before any work is done; return it as a ``Path``.

    - it must not be, contain or lie inside any of ``inputs`` (None entries are skipped), nor collide with
      ``others`` (the command's other outputs);
    - its folder must exist or be creatable, and be writable (checked by creating a file there);
    - an existing ``path`` needs ``force``, and is replaced only when :func:`written_by_gen3d` says so.

    Stale temporaries of dead processes in the folder are removed on the way.
    Raises :class:`OutputError` (a ``ValueError``: the CLI exits 2) saying which rule and what to do.
    """
    path = Path(path)
    for source in inputs:
        if source is not None and overlaps(path, source):
            raise OutputError(f"{what} {path} would overwrite the input {source}; write it somewhere else")
    for other in others:
        if other is not None and overlaps(path, other):
            raise OutputError(f"{what} {path} collides with another output of the same command ({other})")
    if path.exists() or path.is_symlink():
        if not force:
            raise OutputExistsError(f"{what} {path} exists; pass --force to replace it")
        if path.is_symlink():
            raise OutputError(f"{what} {path} is a symbolic link; refusing to replace it, remove it yourself")
        if not written_by_gen3d(path):
            raise OutputError(f"{what} {path} exists and was not written by gen3d_ros; --force only replaces "
                              f"gen3d_ros outputs: remove it yourself or choose another path")
    folder = _resolved(path).parent
    check_writable_folder(folder)
    remove_stale_temporaries(folder)
    return path


def prepare_run_folder(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike | None] = (),
                       force: bool = False, product: str | None = None, what: str = "run folder",
                       create: bool = True) -> Path:
    """Check a folder that a command writes several files into (a training run), before any work; create and
    mark it (:data:`DIR_MARKER`) unless ``create`` is False (the caller creates it). Return it as a ``Path``.

    A new or empty folder is fine. An existing non-empty one must carry the gen3d marker (a folder of ours: its
    files are replaced one by one, finished stages are reused), and when it already holds ``product`` (e.g.
    ``model.pt``) ``force`` is needed. It must not overlap ``inputs``.
    """
    path = Path(path)
    for source in inputs:
        if source is not None and overlaps(path, source):
            raise OutputError(f"{what} {path} overlaps the input {source}; write it somewhere else")
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()):
        if not written_by_gen3d(path):
            raise OutputError(f"{what} {path} exists, is not empty and was not written by gen3d_ros; choose a new "
                              "or empty folder")
        if product is not None and (path / product).exists() and not force:
            raise OutputExistsError(f"{path / product} exists; pass --force to replace it (finished stages of "
                                    "the run are reused)")
    if not create:
        existing = next((p for p in [path, *path.parents] if p.exists()), None)
        if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
            raise OutputError(f"{what} {path} cannot be created: {existing} is not writable")
        return path
    check_writable_folder(path)
    if not (path / DIR_MARKER).is_file():
        mark_folder(path)
    remove_stale_temporaries(path)
    return path


def check_writable_folder(folder: Path) -> None:
    """Create ``folder`` if needed and prove it is writable by creating and removing a file in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder {folder}: {exc.strerror or exc}") from exc
    if not folder.is_dir():
        raise OutputError(f"output folder {folder} is not a folder")
    probe = folder / f".gen3d-write-probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        probe.touch(exist_ok=False)
    except OSError as exc:
        raise OutputError(f"output folder {folder} is not writable: {exc.strerror or exc}") from exc
    probe.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- temporaries


def temporary_sibling(path: Path, *, keep_suffix: bool = True) -> Path:
    """A fresh hidden name next to ``path`` (same folder, same file system, same suffix: open3d and PIL pick
    the format from it), tagged with this process id so a later run can tell a stale one."""
    suffix = "".join(path.suffixes[-2:]) if keep_suffix and path.name.count(".") else ""
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return path.with_name(f".{stem}{_TEMP_TAG}{os.getpid()}-{secrets.token_hex(4)}{suffix}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove temporaries (files or folders) left in ``folder`` by processes that no longer run; the removed."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_RE.match(entry.name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        _remove(entry)
        removed.append(entry)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; write the file there. On normal exit it is renamed onto
    ``path`` (atomic on POSIX); on any exception it is removed and ``path`` keeps its previous content.

        with atomic_path("mesh.ply") as tmp:
            o3d.io.write_triangle_mesh(str(tmp), mesh)
    """
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        if not tmp.exists():
            raise OSError(f"nothing was written for {path}")
        os.replace(tmp, path)
    finally:
        if tmp.exists() or tmp.is_symlink():
            _remove(tmp)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder next to ``path``; fill it. On normal exit it gets a :data:`DIR_MARKER` and
    replaces ``path`` (an existing folder is swapped out by two renames and removed); on an exception it is
    removed and ``path`` is left as it was. Check ``path`` with :func:`prepare_output` first."""
    path = Path(path)
    tmp = temporary_sibling(path, keep_suffix=False)
    tmp.mkdir()
    try:
        yield tmp
        mark_folder(tmp)
        replace_with(tmp, path)
    finally:
        if tmp.exists():
            _remove(tmp)


def replace_with(built: Path, dest: Path) -> None:
    """Move ``built`` (file or folder) onto ``dest``. A file replaces atomically; an existing folder (or a
    folder replacing a file) is parked under a temporary name first and removed after the swap."""
    if dest.exists() and (built.is_dir() or dest.is_dir()):
        parked = temporary_sibling(dest, keep_suffix=False)
        os.rename(dest, parked)
        try:
            os.rename(built, dest)
        except BaseException:
            os.rename(parked, dest)
            raise
        _remove(parked)
    else:
        os.replace(built, dest)


def mark_folder(folder: str | os.PathLike, **info: Any) -> Path:
    """Write the :data:`DIR_MARKER` file into ``folder`` (JSON: generator, command, extra ``info``)."""
    marker = Path(folder) / DIR_MARKER
    data = {"generator": GENERATOR, "command": " ".join(sys.argv), **info}
    write_text(marker, json.dumps(data, indent=2) + "\n")
    return marker


# ---------------------------------------------------------------------------------------------- writers


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (mark YAML files yourself with a ``# gen3d_ros`` comment)."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any, *, indent: int | None = 2, default: Any = None) -> Path:
    """Write ``data`` as JSON atomically; a top-level object gets ``"generator": "gen3d_ros <version>"`` first
    (the marker that lets ``--force`` replace it later)."""
    if isinstance(data, dict) and "generator" not in data:
        data = {"generator": GENERATOR, **data}
    return write_text(path, json.dumps(data, indent=indent, default=default) + "\n")


def save_image(image: Any, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Save a PIL image atomically with the gen3d_ros marker (PNG ``Software`` text chunk, GIF comment)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".png":
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_text("Software", GENERATOR)
        kwargs.setdefault("pnginfo", info)
    elif suffix == ".gif":
        kwargs.setdefault("comment", GENERATOR.encode())
    with atomic_path(path) as tmp:
        image.save(tmp, **kwargs)
    return path


def save_figure(fig: Any, path: str | os.PathLike, **kwargs: Any) -> Path:
    """``fig.savefig`` atomically, PNG marked with ``Software: gen3d_ros``."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        kwargs.setdefault("metadata", {"Software": GENERATOR})
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **kwargs)
    return path


def save_torch(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` atomically. Version objects are stored as plain strings so the file loads with
    ``weights_only=True`` (see :mod:`gen3d_ros.checkpoints`)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(_plain(obj), tmp)
    return Path(path)


def _plain(tree: Any) -> Any:
    import torch

    if isinstance(tree, torch.torch_version.TorchVersion):
        return str(tree)
    if isinstance(tree, dict):
        return {k: _plain(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_plain(v) for v in tree]
    if isinstance(tree, tuple):
        return tuple(_plain(v) for v in tree)
    return tree


# ---------------------------------------------------------------------------------------------- markers

_HEAD_BYTES = 64 * 1024


def _head(path: Path, size: int = _HEAD_BYTES) -> bytes:
    with open(path, "rb") as stream:
        return stream.read(size)


def _text_header_marked(path: Path, end: bytes) -> bool:
    head = _head(path)
    cut = head.find(end)
    header = head if cut < 0 else head[:cut]
    return MARKER_WORD.encode() in header


def _json_marked(path: Path) -> bool:
    if path.stat().st_size > 256 * 1024 * 1024:
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and str(data.get("generator", "")).startswith(MARKER_WORD)


def _glb_marked(path: Path) -> bool:
    """A binary glTF whose JSON chunk (the first, right after the 12-byte header) says ``asset.generator`` ours."""
    head = _head(path, 64 * 1024)
    if len(head) < 20 or head[:4] != b"glTF" or head[16:20] != b"JSON":
        return False
    length = int.from_bytes(head[12:16], "little")
    try:
        tree = json.loads(head[20:20 + length].decode("utf-8"))
    except ValueError:  # a JSON chunk longer than 64 KiB, or not JSON: not one of ours
        return False
    asset = tree.get("asset") if isinstance(tree, dict) else None
    return isinstance(asset, dict) and str(asset.get("generator", "")).startswith(MARKER_WORD)


def _png_marked(path: Path) -> bool:
    try:
        from PIL import Image

        with Image.open(path) as image:
            return str(getattr(image, "text", {}).get("Software", "")).startswith(MARKER_WORD)
    except Exception:  # noqa: BLE001 - not a readable PNG: not ours
        return False


def _gif_marked(path: Path) -> bool:
    try:
        from PIL import Image

        with Image.open(path) as image:
            comment = image.info.get("comment", b"")
    except Exception:  # noqa: BLE001
        return False
    return MARKER_WORD.encode() in (comment if isinstance(comment, bytes) else str(comment).encode())


def _checkpoint_marked(path: Path) -> bool:
    try:
        from gen3d_ros.checkpoints import load_checkpoint_file

        data = load_checkpoint_file(path, "gen3d_ros")
    except Exception:  # noqa: BLE001 - unreadable or foreign: not ours
        return False
    return isinstance(data, dict) and str(data.get("format", "")).startswith(MARKER_WORD + ".")


#: Readers of markers inside container formats this module does not parse itself (``"bag"``: rosbag2 custom_data,
#: registered by :mod:`gen3d_ros.io.bag_writer` when it is imported — every code path that writes a bag imports it).
#: The format modules depend on this module, never the reverse.
_MARKER_READERS: dict[str, Callable[[Path], bool]] = {}


def register_marker_reader(kind: str, read: Callable[[Path], bool]) -> None:
    """Let a format module recognise its own gen3d_ros outputs (``read(path) -> bool``, False when unreadable)."""
    _MARKER_READERS[kind] = read


def _bag_marked(path: Path) -> bool:
    read = _MARKER_READERS.get("bag")
    try:
        return bool(read is not None and read(path))
    except Exception:  # noqa: BLE001 - unreadable or foreign: not ours
        return False


_FILE_MARKERS = {
    ".json": _json_marked,
    ".ply": lambda p: _text_header_marked(p, b"end_header"),
    ".obj": lambda p: _text_header_marked(p, b"\nv "),
    ".glb": _glb_marked,
    ".pcd": lambda p: _text_header_marked(p, b"\nDATA"),
    ".yaml": lambda p: _text_header_marked(p, b"\n\n"),
    ".md": lambda p: _text_header_marked(p, b"\n\n"),
    ".png": _png_marked,
    ".gif": _gif_marked,
    ".pt": _checkpoint_marked,
    ".mcap": _bag_marked,
    ".db3": _bag_marked,
}


def written_by_gen3d(path: str | os.PathLike) -> bool:
    """Whether ``path`` carries a gen3d_ros marker (see module docstring); False for anything unreadable."""
    path = Path(path)
    if path.is_symlink():
        return False
    if path.is_dir():
        return (path / DIR_MARKER).is_file() or ((path / "metadata.yaml").is_file() and _bag_marked(path))
    if not path.is_file():
        return False
    check = _FILE_MARKERS.get(path.suffix.lower())
    try:
        return bool(check and check(path))
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------- signals


_terminated_by: int | None = None


def terminated_by() -> int | None:
    """The signal number that :func:`install_sigterm_handler`'s handler received, or None."""
    return _terminated_by


def install_sigterm_handler() -> None:
    """Turn SIGTERM into ``SystemExit(143)`` in the main thread, so ``finally`` blocks and the context managers
    above remove their temporaries when a process manager stops a command (Python's default kills at once).

    The exit can surface as another exception (raised inside an extension module's import it becomes an
    ImportError); callers check :func:`terminated_by` to tell a termination from a failure."""
    def _terminate(signum: int, frame: Any) -> None:  # noqa: ARG001
        global _terminated_by
        _terminated_by = signum
        raise SystemExit(128 + signum)

    with contextlib.suppress(ValueError):  # not the main thread: leave the default
        signal.signal(signal.SIGTERM, _terminate)
