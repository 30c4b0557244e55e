"""Per-iteration records of a training loop, read from the device once per logging window, with the window's rate.

A GPU step is asynchronous: ``float(loss)`` after every step would make the host wait for the device each time.
The loops keep the step's values as 0-dim device tensors and :class:`LogWindow` reads them every ``log_every``
iterations in one transfer, records them in the run's ``history`` and measures the window's iterations per
second (``history["iters_per_s"]`` at ``history["log_iteration"]``).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Mapping

import numpy as np
import torch

log = logging.getLogger("gen3d_ros.completion.training")


def host_floats(values: list) -> list[float]:
    """Python floats of 0-dim tensors and numbers, with one read from the device for all the tensors."""
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    if not tensors:
        return [float(v) for v in values]
    device = tensors[0].device
    stacked = torch.stack([v.detach().float().reshape(()).to(device) if isinstance(v, torch.Tensor)
                           else torch.tensor(float(v), device=device) for v in values])
    return stacked.tolist()


class LogWindow:
    """The iterations since the last read; :meth:`flush` appends them to ``history[key]`` for every key given to
    :meth:`add` (plus ``history["iteration"]``) and returns a progress-bar postfix."""

    def __init__(self, history: dict[str, list]) -> None:
        self.history = history
        self.pending: list[tuple[int, Mapping[str, Any]]] = []
        self.restart()

    def restart(self) -> None:
        """Start timing a new window (after a pause that is not training, e.g. validation)."""
        self.start, self.steps = time.perf_counter(), 0

    def add(self, iteration: int, values: Mapping[str, Any]) -> None:
        """One iteration's values (floats or 0-dim tensors, still on the device)."""
        self.pending.append((iteration, values))
        self.steps += 1

    def flush(self) -> dict[str, str]:
        """Record the pending iterations; return the postfix: the last values and the window's ``it_s``."""
        if not self.pending:
            return {}
        h = self.history
        h["iteration"].extend(it for it, _ in self.pending)
        keys = list(self.pending[0][1])
        for key in keys:
            h[key].extend(host_floats([values[key] for _, values in self.pending]))
        # The read above waited for the device, so the window's time is the device's time too.
        rate = self.steps / max(time.perf_counter() - self.start, 1e-9)
        h["log_iteration"].append(h["iteration"][-1])
        h["iters_per_s"].append(rate)
        log.debug("iteration %d: %s, %.2f it/s", h["iteration"][-1],
                  ", ".join(f"{k} {h[k][-1]:.4g}" for k in keys), rate)
        self.pending = []
        self.restart()
        return {**{k: f"{h[k][-1]:.4f}" for k in keys}, "it_s": f"{rate:.2f}"}


def plot_moving_average(ax: Any, its: np.ndarray, values: np.ndarray, colour: str, *, label: str | None = None,
                        lw: float | None = 1.8) -> None:
    """Plot the moving average of a per-iteration curve on ``ax`` (window ``max(5, n // 50)``; nothing for fewer
    than 5 values). ``label`` defaults to ``"moving average (<window>)"``; ``lw`` None keeps matplotlib's."""
    if len(values) < 5:
        return
    w = max(5, len(values) // 50)
    smooth = np.convolve(values, np.ones(w) / w, mode="valid")
    style = {} if lw is None else {"lw": lw}
    ax.plot(its[w - 1:], smooth, color=colour, label=label or f"moving average ({w})", **style)
