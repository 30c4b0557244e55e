"""One optimisation step of a completion model: forward under autocast, backward, clip, Adam; data-parallel or not.

The loss functions of the completion models call several methods of the model (the planner and the kernel, the
encoder and the decoder, the candidates), not only ``forward``. ``DistributedDataParallel`` prepares its gradient
reduction in the wrapped module's ``forward``, so the whole loss function becomes that forward
(:class:`LossModule`): every parameter the step touches is reduced, whichever method used it.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from gen3d_ros.completion.training.distributed import DistributedContext
from gen3d_ros.completion.training.precision import Precision

#: ``loss_fn(model, *args) -> (loss graph, result)``.
LossFn = Callable[..., tuple[torch.Tensor, Any]]


class LossModule(torch.nn.Module):
    """``forward(*args) = loss_fn(model, *args)``: a model and its loss as one module (for DDP)."""

    def __init__(self, model: torch.nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, *args: Any) -> tuple[torch.Tensor, Any]:
        return self.loss_fn(self.model, *args)


class TrainStep:
    """Adam on ``model``'s parameters, driven by ``loss_fn``; call it with the loss function's arguments.

    Args:
        model: the network (trained in place; its parameters are what the optimiser and checkpoints see).
        loss_fn: ``loss_fn(model, *args) -> (loss, result)``.
        lr: Adam learning rate. grad_clip: max gradient norm (of the unscaled gradients).
        precision: autocast dtype and GradScaler (:class:`Precision`).
        dist: the data-parallel context: with several ranks the loss module is wrapped in DDP.
    """

    def __init__(self, model: torch.nn.Module, loss_fn: LossFn, *, lr: float, grad_clip: float,
                 precision: Precision, dist: DistributedContext) -> None:
        self.model = model
        self.module = dist.wrap(LossModule(model, loss_fn))
        self.optimiser = torch.optim.Adam(model.parameters(), lr=lr)
        self.grad_clip = float(grad_clip)
        self.precision = precision

    def __call__(self, *args: Any) -> tuple[torch.Tensor, Any]:
        """One step: returns the (detached) loss and the loss function's result."""
        self.model.train()
        with self.precision.autocast():
            loss, result = self.module(*args)
        self.optimiser.zero_grad(set_to_none=True)
        self.precision.backward_and_step(loss, self.optimiser, self.model.parameters(), self.grad_clip)
        return loss.detach(), result
