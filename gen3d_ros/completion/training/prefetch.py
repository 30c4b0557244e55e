"""Training data made ahead in worker processes, so a GPU step does not wait for the CPU simulator.

On a GPU host the autoencoder and fine stages spent ~78 % of their time simulating scenes and sweeps on one
core (``bench/results/performance.json``, ``train.*``). A :class:`Prefetcher` keeps ``depth`` work items in flight
on a pool of ``workers`` processes and hands back their results *in submission order*, so a run's data depend on
its seed only, not on the number of workers (``workers=0`` computes each item in-process, same results).

Each worker builds its state once (``factory(*args)``, e.g. a :class:`~gen3d_ros.sim.dataset.CompletionDataset`
from a config dict) and then runs ``work(state, task)`` per task. Tasks (small: a dataset index and a seed) come
from an iterator the trainer owns, so the random draws stay in the training process. Workers are *spawned*
(not forked): the training process may hold a CUDA context, which a forked child must not touch.

    pf = Prefetcher(make_dataset, (data_dict,), completion_sample, tasks(rng), workers=8)
    sample = next(pf)        # CompletionSample, in task order
    pf.close()
"""

from __future__ import annotations

import multiprocessing as mp
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from gen3d_ros.sim.dataset import CompletionDataset, CompletionDatasetConfig

_STATE: Any = None  # the worker's state, built once by _init


def _init(factory: Callable[..., Any], args: tuple) -> None:
    global _STATE
    try:  # one intra-op thread per worker: the pool is the parallelism
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency of training
        pass
    _STATE = factory(*args)


def _run(work: Callable[[Any, Any], Any], task: Any) -> Any:
    return work(_STATE, task)


class Prefetcher:
    """``next()`` returns ``work(state, task)`` for the tasks of ``tasks`` in order, computed ahead by workers."""

    def __init__(self, factory: Callable[..., Any], args: tuple, work: Callable[[Any, Any], Any],
                 tasks: Iterator[Any], *, workers: int, depth: int | None = None, timeout_s: float = 300.0) -> None:
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self._work, self._tasks = work, tasks
        self.workers, self.timeout_s = workers, timeout_s
        self._pool = None
        self._state = None
        self._pending: deque = deque()
        if workers == 0:
            self._state = factory(*args)
            return
        self._pool = mp.get_context("spawn").Pool(workers, initializer=_init, initargs=(factory, args))
        self._finalizer = weakref.finalize(self, self._pool.terminate)
        for _ in range(depth if depth is not None else 2 * workers):
            self._submit()

    def _submit(self) -> None:
        self._pending.append(self._pool.apply_async(_run, (self._work, next(self._tasks))))

    def __iter__(self) -> Prefetcher:
        return self

    def __next__(self) -> Any:
        if self._pool is None:
            return self._work(self._state, next(self._tasks))
        result = self._pending.popleft()
        self._submit()
        try:
            return result.get(timeout=self.timeout_s)
        except mp.TimeoutError:
            self.close()
            raise RuntimeError(f"no training data from the {self.workers} data workers in {self.timeout_s:.0f} s: "
                               "they may fail to start (a spawned worker re-imports the main module: run from a "
                               "file or `python -m`, not stdin) -- see their errors above, or set data_workers=0")

    def close(self) -> None:
        """Stops the workers (also done when the prefetcher is garbage-collected)."""
        if self._pool is not None:
            self._finalizer()
            self._pool = None


def make_dataset(data: Mapping[str, Any]) -> CompletionDataset:
    """A worker's dataset from a :class:`CompletionDatasetConfig` dict (picklable across processes)."""
    return CompletionDataset(CompletionDatasetConfig.from_dict(data))


def sample_tasks(rng: np.random.Generator, length: int, augment: bool) -> Iterator[tuple[int, int | None]]:
    """Endless (dataset index, augmentation seed or None) draws from ``rng``."""
    while True:
        index = int(rng.integers(length))
        yield index, (int(rng.integers(2**63)) if augment else None)


def completion_sample(dataset: CompletionDataset, task: tuple[int, int | None]):
    """``dataset.sample(index, augmentation rng)`` of a :func:`sample_tasks` task."""
    index, aug_seed = task
    return dataset.sample(index, None if aug_seed is None else np.random.default_rng(aug_seed))
