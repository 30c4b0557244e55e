"""The run folder of a training: created and marked, checked before anything is written, cleaned up on failure."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

from gen3d_ros.outputs import mark_folder, prepare_output

#: Files :func:`~gen3d_ros.robot.training.loop.train_robot` writes into the run folder (besides ``data/``).
RUN_FILES = ("config.json", "model.pt", "preview.png", "curves.png", "metrics.json")


@contextlib.contextmanager
def run_folder(out_dir: Path, inputs: list[Path | None]) -> Iterator[Path]:
    """Create (and mark) ``out_dir`` if needed and check that the run files may be written there; on an exception
    inside the block, remove what was created: the whole folder (and any parents) if this call made it, else the
    files and folders that were not there before."""
    top = _topmost_missing(out_dir)
    before = set() if top is not None else _tree(out_dir)
    try:
        for name in RUN_FILES:
            # force=True: replace an earlier run's files (callers such as the CLI ask for --force before), but only
            # those gen3d_ros wrote; a user's own config.json in the folder is never overwritten.
            prepare_output(out_dir / name, inputs=inputs, force=True, what="run file")
        if top is not None:
            mark_folder(out_dir)
        yield out_dir
    except BaseException:
        if top is not None:
            shutil.rmtree(top, ignore_errors=True)
        else:
            for path in sorted(_tree(out_dir) - before, key=lambda p: len(p.parts)):  # parents before children
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                elif path.exists() or path.is_symlink():
                    path.unlink(missing_ok=True)
        raise


def _topmost_missing(path: Path) -> Path | None:
    """The highest folder of ``path`` (itself included) that does not exist yet: what ``mkdir(parents=True)``
    creates; ``None`` if ``path`` exists."""
    top = None
    for candidate in [path.absolute(), *path.absolute().parents]:
        if candidate.exists() or candidate.is_symlink():
            break
        top = candidate
    return top


def _tree(folder: Path) -> set[Path]:
    """Every file and folder under ``folder`` (links not followed)."""
    out = set()
    for root, dirs, files in os.walk(folder, followlinks=False):
        out.update(Path(root) / name for name in dirs + files)
    return out


__all__ = ["RUN_FILES", "run_folder"]
