"""Reading gen3d_ros checkpoint files: one place for "does it exist, is it ours, which format"."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Collection, Mapping


def read_checkpoint(source: str | Path | Mapping, what: str, formats: Collection[str]) -> tuple[dict, str]:
    """``(checkpoint dict, name for messages)`` of a file or of an already-loaded dict (a bundle's part).

    ``what`` names the kind in errors ("GCA", "cGCA autoencoder"); ``formats``: accepted ``format`` values.
    FileNotFoundError for a missing file, ValueError for anything that is not one of ``formats``.
    """
    if isinstance(source, Mapping):  # a checkpoint nested in a bundle
        ckpt: Any = dict(source)
        name = "<bundle>"
    else:
        import torch

        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{what} checkpoint {path} does not exist")
        ckpt, name = torch.load(path, map_location="cpu", weights_only=False), str(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") not in formats:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{name} is not a {what} checkpoint: format {found!r}, expected "
                         f"{' or '.join(repr(f) for f in formats)}")
    return ckpt, name
