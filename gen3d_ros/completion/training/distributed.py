"""Data-parallel training over several processes (``torchrun``), or none.

``torchrun --nproc_per_node N -m gen3d_ros train-completion ...`` starts N copies of the command with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` (and the rendezvous address) in their environment. :func:`init_from_environment`
joins them into one process group (NCCL on CUDA, gloo on the CPU); the training functions then read
:func:`current`:

* each rank trains on ``cuda:LOCAL_RANK`` when the run asks for ``cuda`` (:meth:`DistributedContext.device`);
* each rank draws its own scenes: its data and sampling seeds are the run's seed + ``RANK_SEED_OFFSET * rank``
  (:meth:`DistributedContext.seed`; rank 0 keeps the run's seed, so a one-process run is unchanged);
* the model is wrapped in ``DistributedDataParallel`` (:meth:`DistributedContext.wrap`): gradients are averaged
  over the ranks in every backward pass, parameters stay identical; each rank keeps its own replay buffer;
* rank 0 alone validates and writes run folders, checkpoints and logs (:attr:`DistributedContext.is_main`);
  the others wait for it at :meth:`DistributedContext.barrier`.

Without torchrun's variables nothing changes: :func:`current` is a one-process context whose methods do nothing.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

log = logging.getLogger("gen3d_ros.completion.training")

#: Rank r seeds its data draws, augmentation and chain sampling with ``seed + RANK_SEED_OFFSET * r``.
RANK_SEED_OFFSET = 100_003
_TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a data-parallel run (rank 0 of 1 when there is none)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """More than one process trains the model."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """This process writes outputs and validates."""
        return self.rank == 0

    def device(self, name: str) -> str:
        """The device this rank trains on: ``cuda`` becomes ``cuda:LOCAL_RANK`` in a multi-process run (one GPU a
        process); any other name is kept."""
        if self.active and name == "cuda":
            return f"cuda:{self.local_rank}"
        return name

    def seed(self, seed: int) -> int:
        """This rank's seed for data draws and sampling (rank 0: ``seed`` itself)."""
        return int(seed) + RANK_SEED_OFFSET * self.rank

    def barrier(self) -> None:
        """Wait until every rank gets here (nothing in a one-process run)."""
        if self.active:
            torch.distributed.barrier()

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` in ``DistributedDataParallel`` (gradients averaged over the ranks), or as is.

        Every parameter of the completion models gets a gradient in every step, so ``find_unused_parameters``
        stays off (it would traverse the autograd graph after every forward pass).
        """
        if not self.active:
            return module
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(module, device_ids=None, find_unused_parameters=False)


def torchrun_environment() -> bool:
    """True when this process was started by ``torchrun`` (its rank variables are set)."""
    return all(v in os.environ for v in _TORCHRUN_VARIABLES)


def current() -> DistributedContext:
    """The context of the initialised default process group, or a one-process context."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return DistributedContext()
    local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank)


def init_from_environment(device: str) -> DistributedContext:
    """Join torchrun's process group (NCCL when ``device`` is CUDA, else gloo) and pin this rank's GPU; without
    torchrun's variables, or when a group already exists, only return :func:`current`."""
    dist = torch.distributed
    if not torchrun_environment() or (dist.is_available() and dist.is_initialized()):
        return current()
    if not dist.is_available():
        raise RuntimeError("started by torchrun, but this torch build has no torch.distributed")
    cuda = torch.device(device).type == "cuda"
    local_rank = int(os.environ["LOCAL_RANK"])
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"torchrun started local rank {local_rank}, but this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s); use --nproc_per_node <= that")
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    context = current()
    log.info("rank %d of %d (local rank %d) on %s", context.rank, context.world_size, local_rank,
             context.device(device))
    return context


def shutdown() -> None:
    """Leave the process group, if this process is in one."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
