"""Reading gen3d_ros checkpoint files: one place for "does it exist, is it ours, which format, is it safe".

Checkpoints are ``torch.save`` zip archives of plain data (dicts, lists, numbers, strings, tensors). They are
loaded with ``weights_only=True``: the unpickler builds only those types, so a crafted file cannot run code.
The one extra type allowed is ``torch.torch_version.TorchVersion`` (a ``str`` subclass that older checkpoints
stored as ``torch_version``). Every failure is a :class:`CheckpointError` (a ``ValueError``) that names the file
and says what is wrong with it: missing, empty, too large, not a torch zip archive, truncated, holding types
other than plain data, or another format than the one asked for.
"""

from __future__ import annotations

import contextlib
import pickle
import zipfile
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Mapping, TypeVar

#: Largest checkpoint file read (bytes): far above any model of this package, far below a memory accident.
MAX_CHECKPOINT_BYTES = 4 * 1024**3
_ZIP_MAGIC = b"PK\x03\x04"

T = TypeVar("T")


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the text names the file and the problem."""


def _safe_globals() -> list:
    from torch.torch_version import TorchVersion

    return [TorchVersion]


def load_checkpoint_file(path: str | Path, what: str = "gen3d_ros") -> Any:
    """The object stored in checkpoint ``path``, loaded with ``weights_only=True`` onto the CPU.

    ``what`` names the expected kind in messages ("GCA", "Dr. Robot"). Raises FileNotFoundError for a missing
    file, :class:`CheckpointError` for anything else that makes it unusable.
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
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()
        detail = next((line.strip() for line in first if "Unsupported global" in line or "GLOBAL" in line),
                      first[-1].strip() if first else "")
        raise CheckpointError(f"{what} checkpoint {path} holds objects other than plain data and tensors, which "
                              f"are not loaded (they could run code): {detail}") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile,
            UnicodeDecodeError, AttributeError, IndexError, OverflowError, MemoryError) as exc:
        raise CheckpointError(f"{what} checkpoint {path} is truncated or corrupt: {type(exc).__name__}: "
                              f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from None


def read_checkpoint(source: str | Path | Mapping, what: str, formats: Collection[str]) -> tuple[dict, str]:
    """``(checkpoint dict, name for messages)`` of a file or of an already-loaded dict (a bundle's part).

    ``what`` names the kind in errors ("GCA", "cGCA autoencoder"); ``formats``: accepted ``format`` values.
    FileNotFoundError for a missing file, :class:`CheckpointError` for anything that is not one of ``formats``.
    """
    if isinstance(source, Mapping):  # a checkpoint nested in a bundle
        ckpt: Any = dict(source)
        name = "<bundle>"
    else:
        ckpt, name = load_checkpoint_file(source, what), str(source)
    if not isinstance(ckpt, dict) or ckpt.get("format") not in formats:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{name} is not a {what} checkpoint: format {found!r}, expected "
                              f"{' or '.join(repr(f) for f in formats)}")
    return ckpt, name


@contextlib.contextmanager
def checkpoint_contents(name: str, what: str) -> Iterator[None]:
    """Turn the errors of building models from a checkpoint dict (missing keys, wrong config fields, tensors of
    the wrong shape) into one :class:`CheckpointError` that names the file."""
    try:
        yield
    except CheckpointError:
        raise
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise CheckpointError(f"{name} is a {what} checkpoint with missing or malformed entries "
                              f"({type(exc).__name__}: {exc}); it was not written by this version of gen3d_ros "
                              "or was edited") from exc
    except (RuntimeError, ValueError) as exc:  # load_state_dict: missing/unexpected keys, shape mismatch
        text = str(exc).strip().splitlines()
        raise CheckpointError(f"{name} does not fit the {what} model it describes: "
                              f"{text[0] if text else type(exc).__name__}") from exc


def build_from_checkpoint(name: str, what: str, build: Callable[[], T]) -> T:
    """``build()`` under :func:`checkpoint_contents`."""
    with checkpoint_contents(name, what):
        return build()
