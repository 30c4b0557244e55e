"""What every ``gen3d`` subcommand shares: the user-error type, output checks and device checks."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

EXIT_USAGE = 2


class UsageError(Exception):
    """A mistake of the user: printed as ``gen3d <command>: <message>``, exit code 2."""


def prepare(path: Path | None, args: argparse.Namespace, *, inputs: Sequence = (), others: Sequence = (),
            what: str = "output") -> Path | None:
    """Check an output of a command before it computes anything (see :func:`gen3d_ros.outputs.prepare_output`):
    not an input, writable, replaced only with --force and only when gen3d_ros wrote it."""
    if path is None:
        return None
    from gen3d_ros.outputs import prepare_output

    return prepare_output(path, inputs=inputs, others=others, force=getattr(args, "force", False), what=what)


def check_device_arg(name: str) -> str:
    """``--device``, checked before any work (a CUDA request on a machine without CUDA is a user error)."""
    from gen3d_ros.devices import check_device

    return check_device(name)


def set_threads(threads: int) -> None:
    """``--threads``: torch's CPU threads; 0 keeps torch's default."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
