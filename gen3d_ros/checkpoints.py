"""Reading gen3d_ros checkpoint files: one place for "does it exist, is it ours, which format, is it safe".

Checkpoints are ``torch.save`` zip archives of plain data (dicts, lists, numbers, strings, tensors). They are
loaded with ``weights_only=True``: the unpickler builds only those types, so a crafted file cannot run code.
The one extra type allowed is ``torch.torch_version.TorchVersion`` (a ``str`` subclass that older checkpoints
stored as ``torch_version``). Before torch reads it, the archive is checked: a ``<name>/data.pkl`` member,
stored (not compressed) members, and every member's CRC-32 (torch does not check them, so a flipped bit in a
weight would load as a silently different model). Every failure is a :class:`CheckpointError` (a
``ValueError``) that names the file and says what is wrong with it: missing, empty, too large, not a torch zip
archive, truncated, damaged, holding types other than plain data, another format than the one asked for, or an
entry its loader reads (:data:`LAYOUTS`) missing or of the wrong type.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, TypeVar

#: Largest checkpoint file read (bytes): far above any model of this package, far below a memory accident.
MAX_CHECKPOINT_BYTES = 4 * 1024**3
_ZIP_MAGIC = b"PK\x03\x04"


def _number(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        return f"a finite number, not {value!r:.60}"
    return None


def _pair(value: Any) -> str | None:
    value = value.tolist() if hasattr(value, "tolist") else value  # a numpy array in a dict given directly
    if not isinstance(value, (list, tuple)) or len(value) != 2 or any(_number(v) for v in value):
        return f"two numbers, not {value!r:.60}"
    return None


def _positive(value: Any) -> str | None:
    return _number(value) or (None if value > 0 else f"a positive number, not {value!r}")


#: What the loaders read from each format, by dotted key (``?``: may be absent, the loader then uses its
#: default), with the type it must have: a class (or tuple of classes, ``type(None)`` allowing null) or a check
#: returning what is wrong. :func:`read_checkpoint` checks it, so a dict with the right ``format`` but a missing
#: or mistyped entry is one CheckpointError naming the entry, also where a loader reads it outside
#: :func:`checkpoint_contents` (the grid of ``train_config.data``, the parts of an hGCA bundle,
#: ``planner_config``). Deeper contents (config fields, tensor shapes) are the loaders' to check, under
#: :func:`checkpoint_contents`.
_GRID = {"train_config": Mapping, "train_config.data": Mapping, "train_config.data.voxel_size_m?": _positive,
         "train_config.data.half_extent_m?": _pair, "train_config.data.z_range_m?": _pair}
LAYOUTS: dict[str, dict[str, Any]] = {
    "gen3d_ros.gca/1": {"gca_config": Mapping, "state_dict": Mapping, "planner_config?": (type(None),), **_GRID},
    "gen3d_ros.hgca_coarse/1": {"gca_config": Mapping, "planner_config": Mapping, "state_dict": Mapping,
                                **_GRID},
    "gen3d_ros.cgca_ae/1": {"autoencoder_config": Mapping, "grid": Mapping, "grid.voxel_size": _positive,
                            "state_dict": Mapping, "train_config?": Mapping, "train_config.data?": Mapping},
    "gen3d_ros.cgca/1": {"cgca_config": Mapping, "autoencoder": Mapping, "state_dict": Mapping,
                         "train_config": Mapping, "train_config.data?": (Mapping, type(None))},
    "gen3d_ros.hgca/1": {"coarse": Mapping, "fine": Mapping},
    "gen3d_ros.drrobot/1": {"config": Mapping, "urdf_sha256": str, "robot_name": str, "state_dict": Mapping},
    "gen3d_ros.keypoints/1": {"net": Mapping, "keypoints": Mapping, "urdf_sha256": str, "robot_name": str,
                              "state_dict": Mapping},
}

T = TypeVar("T")


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the text names the file and the problem."""


def _safe_globals() -> list:
    from torch.torch_version import TorchVersion

    return [TorchVersion]


def load_checkpoint_file(path: str | Path, what: str = "gen3d_ros") -> Any:
    """The object stored in checkpoint ``path``, loaded with ``weights_only=True`` onto the CPU.

    ``what`` names the expected kind in messages ("GCA", "Dr. Robot"). Raises FileNotFoundError for a missing
    file, :class:`CheckpointError` for anything else that makes it unusable (see the module docstring; the
    archive's member CRCs are checked first, reading the file once more: a few ms for the packaged models).
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{what} checkpoint {path} is not a file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{what} checkpoint {path} is empty (0 bytes)")
    if size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{what} checkpoint {path} is {size / 1024**3:.1f} GiB, more than the "
                              f"{MAX_CHECKPOINT_BYTES / 1024**3:.0f} GiB a gen3d_ros checkpoint can be")
    with open(path, "rb") as stream:
        magic = stream.read(4)
    if magic != _ZIP_MAGIC:
        raise CheckpointError(f"{path} is not a {what} checkpoint: not a torch.save zip archive (it starts with "
                              f"{magic!r})")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{what} checkpoint {path} is truncated or corrupt: its zip directory is missing")
    _check_archive(path, what)
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()
        detail = next((line.strip() for line in first if "Unsupported global" in line or "GLOBAL" in line),
                      first[-1].strip() if first else "")
        raise CheckpointError(f"{what} checkpoint {path} holds objects other than plain data and tensors, which "
                              f"are not loaded (they could run code): {detail}") from None
    except (RuntimeError, EOFError, OSError, ValueError, LookupError, TypeError, zipfile.BadZipFile,
            AttributeError, ArithmeticError, MemoryError, RecursionError, AssertionError) as exc:
        raise CheckpointError(f"{what} checkpoint {path} is truncated or corrupt: {type(exc).__name__}: "
                              f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from None


def _check_archive(path: Path, what: str) -> None:
    """The zip archive is one ``torch.save`` wrote, undamaged: a ``<name>/data.pkl`` member, members stored
    uncompressed (as torch writes them; nothing to inflate), sizes within the file, and every member's CRC-32
    right. torch reads members without checking their CRCs, so a flipped bit in a weight would otherwise load
    as a silently different model."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if not any(m.filename.count("/") == 1 and m.filename.endswith("/data.pkl") for m in members):
                names = ", ".join(m.filename for m in members[:5]) or "none"
                raise CheckpointError(f"{path} is a zip archive but not a {what} checkpoint: torch.save writes a "
                                      f"<name>/data.pkl member, it has {names}{' ...' if len(members) > 5 else ''}")
            total, size = 0, os.path.getsize(path)
            for member in members:
                total += member.file_size
                if member.compress_type != zipfile.ZIP_STORED:
                    raise CheckpointError(f"{what} checkpoint {path}: member {member.filename!r} is compressed; "
                                          "torch.save stores members as they are, so it did not write this archive")
                if total > size:
                    raise CheckpointError(f"{what} checkpoint {path} is corrupt: its members claim more bytes "
                                          f"({total}) than the file has ({size})")
                if member.CRC == 0 or member.is_dir():
                    continue  # no CRC recorded ("not computed"): nothing to check
                with archive.open(member) as stream:  # zipfile compares the CRC-32 at the end of the member
                    while stream.read(1 << 20):
                        pass
    except CheckpointError:
        raise
    except zipfile.BadZipFile as exc:
        text = str(exc)
        what_wrong = ("damaged: the bytes of member " + text.split("file ")[-1] + " fail their CRC-32 check"
                      if "CRC" in text else f"corrupt: {text}")
        raise CheckpointError(f"{what} checkpoint {path} is {what_wrong}; copy it again or retrain") from None
    except (OSError, EOFError, ValueError, LookupError, TypeError, OverflowError, MemoryError,
            NotImplementedError) as exc:  # zipfile on a damaged directory
        raise CheckpointError(f"{what} checkpoint {path} is truncated or corrupt: {type(exc).__name__}: "
                              f"{str(exc).strip()[:200]}") from None


def read_checkpoint(source: str | Path | Mapping, what: str, formats: Collection[str]) -> tuple[dict, str]:
    """``(checkpoint dict, name for messages)`` of a file or of an already-loaded dict (a bundle's part).

    ``what`` names the kind in errors ("GCA", "cGCA autoencoder"); ``formats``: accepted ``format`` values.
    FileNotFoundError for a missing file, :class:`CheckpointError` for anything that is not one of ``formats``.
    """
    if isinstance(source, Mapping):  # a checkpoint nested in a bundle
        ckpt: Any = dict(source)
        name = "<bundle>"
    elif isinstance(source, (str, os.PathLike)):
        ckpt, name = load_checkpoint_file(source, what), str(source)
    else:
        raise CheckpointError(f"a {what} checkpoint must be a file path or a checkpoint dict, not a "
                              f"{type(source).__name__}")
    found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
    if not isinstance(ckpt, dict) or not isinstance(found, str) or found not in formats:
        raise CheckpointError(f"{name} is not a {what} checkpoint: format {found!r:.80}, expected "
                              f"{' or '.join(repr(f) for f in formats)}")
    _check_layout(ckpt, found, name, what)
    return ckpt, name


def _check_layout(ckpt: dict, fmt: str, name: str, what: str) -> None:
    """Raise CheckpointError when an entry :data:`LAYOUTS` lists for ``fmt`` is missing or of the wrong type."""
    for key, kind in LAYOUTS.get(fmt, {}).items():
        optional, key = key.endswith("?"), key.rstrip("?")
        value: Any = ckpt
        for part in key.split("."):
            if not isinstance(value, Mapping) or part not in value:
                value = _MISSING
                break
            value = value[part]
        if value is _MISSING:
            if optional:
                continue
            problem = "is missing"
        elif isinstance(kind, (type, tuple)):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            ok = isinstance(value, kinds) and not (bool not in kinds and isinstance(value, bool) and int in kinds)
            problem = None if ok else (f"is a {type(value).__name__}, not a "
                                       f"{' or '.join('null' if k is type(None) else k.__name__ for k in kinds)}")
        else:
            wrong = kind(value)
            problem = None if wrong is None else f"must be {wrong}"
        if problem:
            raise CheckpointError(f"{name} is a {what} checkpoint ({fmt}) whose entry {key!r} {problem}; it was "
                                  "not written by this version of gen3d_ros or was edited")


_MISSING = object()


@contextlib.contextmanager
def checkpoint_contents(name: str, what: str) -> Iterator[None]:
    """Turn the errors of building models from a checkpoint dict (missing keys, wrong config fields, tensors of
    the wrong shape) into one :class:`CheckpointError` that names the file."""
    try:
        yield
    except CheckpointError as exc:
        if name != "<bundle>" and "<bundle>" in str(exc):  # a nested part (autoencoder of a cGCA): say whose
            raise CheckpointError(str(exc).replace("<bundle>", f"a part of {name}")) from exc
        raise
    except (LookupError, TypeError, AttributeError, AssertionError, NotImplementedError) as exc:
        raise CheckpointError(f"{name} is a {what} checkpoint with missing or malformed entries "
                              f"({type(exc).__name__}: {exc}); it was not written by this version of gen3d_ros "
                              "or was edited") from exc
    except (RuntimeError, ValueError, ArithmeticError, MemoryError) as exc:
        # load_state_dict: missing/unexpected keys, shape mismatch; a config asking for an impossible size
        text = str(exc).strip().splitlines()
        raise CheckpointError(f"{name} does not fit the {what} model it describes: "
                              f"{text[0] if text else type(exc).__name__}") from exc


def build_from_checkpoint(name: str, what: str, build: Callable[[], T]) -> T:
    """``build()`` under :func:`checkpoint_contents`."""
    with checkpoint_contents(name, what):
        return build()


def load_model(name: str, what: str, build: Callable[[], T], state_dict: Mapping[str, Any]) -> T:
    """Build the model a checkpoint describes and load its weights, without trusting its config's sizes.

    ``build()`` runs first on torch's ``meta`` device (no memory), and the shapes of its parameters and buffers
    are compared with ``state_dict``'s tensors, which really are in the file. Only when they agree is the model
    built for real and loaded, so a config edited to ask for millions of channels fails in milliseconds instead
    of allocating gigabytes. Raises :class:`CheckpointError` naming the file and the first disagreement.
    """
    import torch

    with checkpoint_contents(name, what):
        if not isinstance(state_dict, Mapping) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
            raise CheckpointError(f"{name}: the {what} weights (state_dict) are not a mapping of tensors")
        with torch.device("meta"):
            skeleton = build()
        expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
        del skeleton
        stored = {k: tuple(v.shape) for k, v in state_dict.items()}
        missing = sorted(set(expected) - set(stored))
        unexpected = sorted(set(stored) - set(expected))
        wrong = [(k, expected[k], stored[k]) for k in sorted(set(expected) & set(stored)) if expected[k] != stored[k]]
        if missing or unexpected or wrong:
            parts = []
            if missing:
                parts.append(f"{len(missing)} missing weight(s) (e.g. {missing[0]!r})")
            if unexpected:
                parts.append(f"{len(unexpected)} unexpected weight(s) (e.g. {unexpected[0]!r})")
            if wrong:
                k, want, got = wrong[0]
                parts.append(f"{len(wrong)} weight(s) of the wrong shape (e.g. {k!r}: config gives {list(want)}, "
                             f"file has {list(got)})")
            raise CheckpointError(f"{name}: the {what} weights do not fit the model its config describes: "
                                  + "; ".join(parts))
        model = build()
        model.load_state_dict(state_dict)
    return model
