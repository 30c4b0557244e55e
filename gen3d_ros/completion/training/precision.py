"""Mixed precision of a training run: which autocast dtype, and a GradScaler when that dtype needs one.

``amp`` (a config field, ``--amp`` on the command line):

* ``"off"``: float32 throughout.
* ``"bf16"``: ``torch.autocast`` in bfloat16, on CUDA and on the CPU alike. bf16 has float32's exponent range,
  so gradients do not underflow and no GradScaler is needed. On the CPU it runs the same code path (tests, parity
  checks); it is usually *slower* than float32 there unless the processor has AMX / AVX512-BF16.
* ``"fp16"``: autocast in float16 plus a ``GradScaler`` (float16 gradients underflow without loss scaling).
  CUDA only: asking for it on another device is a configuration error, raised before any data is generated.

Parameters, optimiser state and the losses stay float32; the sparse convolutions run their GEMMs in the
autocast dtype and accumulate in float32 (:mod:`gen3d_ros.sparse.backends.torch_backend`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterable

import torch

AMP_CHOICES = ("off", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_amp(amp: str, device: str) -> str:
    """Return ``amp`` if it can run on ``device`` (a torch device name), else raise ``ValueError`` saying why."""
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp={amp!r} is not one of {AMP_CHOICES}")
    device_type = torch.device(device).type
    if amp == "fp16" and device_type != "cuda":
        raise ValueError(f"amp='fp16' needs a CUDA device (float16 autocast + GradScaler), but device is "
                         f"{device!r}; use amp='bf16' (autocast in bfloat16, also on the CPU) or amp='off'")
    if amp == "bf16" and device_type not in ("cpu", "cuda"):
        raise ValueError(f"amp='bf16' runs on cpu or cuda devices, not {device!r}; use amp='off'")
    return amp


@dataclass
class Precision:
    """Autocast dtype and GradScaler of one run on one device (:meth:`create` checks the combination)."""

    device_type: str
    dtype: torch.dtype | None
    """None: float32, no autocast."""
    scaler: torch.amp.GradScaler | None

    @classmethod
    def create(cls, amp: str, device: str) -> "Precision":
        check_amp(amp, device)
        device_type = torch.device(device).type
        dtype = _DTYPES.get(amp)
        scaler = torch.amp.GradScaler(device_type) if amp == "fp16" else None
        return cls(device_type, dtype, scaler)

    @property
    def name(self) -> str:
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.dtype, "off")

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward pass's context: ``torch.autocast`` in :attr:`dtype`, or nothing for float32."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward_and_step(self, loss: torch.Tensor, optimiser: torch.optim.Optimizer,
                          parameters: Iterable[torch.nn.Parameter], grad_clip: float) -> None:
        """Backward, clip the gradient norm at ``grad_clip`` (of the true, unscaled gradients) and step.

        With a GradScaler, a step whose gradients overflowed is skipped and the scale lowered (the scaler's rule).
        """
        parameters = list(parameters)
        if self.scaler is None:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
            optimiser.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimiser)
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
        self.scaler.step(optimiser)
        self.scaler.update()
