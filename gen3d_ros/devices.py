"""Torch device names given by users (CLI flags, node parameters, configs), checked before any work starts."""

from __future__ import annotations


class DeviceError(ValueError):
    """A device name that torch does not know, or a device this machine does not have."""


def check_device(name: str) -> str:
    """Return ``name`` if torch can use it here (``cpu``, ``cuda``, ``cuda:1``, ``mps``…), else raise
    :class:`DeviceError` saying why (unknown name, no CUDA in this torch build or machine, index out of range)."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise DeviceError(f"device {name!r} is not a torch device name (cpu, cuda, cuda:N): {exc}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise DeviceError(f"device {name!r} asked for, but this machine has no usable CUDA GPU (torch "
                              f"{torch.__version__}, {build}); use device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(f"device {name!r} asked for, but this machine has {count} CUDA device(s) "
                              f"(cuda:0..cuda:{count - 1})")
    elif device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError(f"device {name!r} asked for, but MPS is not available here; use device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device {name!r} is not supported by gen3d_ros (cpu, cuda, cuda:N)")
    return name
