"""Shared bookkeeping of the property-based (hypothesis) fuzz tests of malformed inputs.

Every fuzz test runs each generated input through :func:`expect_clean_failure`, which

- calls the real converter/loader (``fn(*args)``),
- accepts a normal return (the input happened to be valid) or one of the ``allowed`` exception types (the
  documented, clear error of that API),
- counts anything else as a **crash** and re-raises it (the test fails with the offending input),
- checks the peak Python/numpy allocation of the call (``tracemalloc``) against ``max_mb``: a malformed header
  must never make a loader allocate what it claims.

``CASES`` / ``CRASHES`` count per target; ``bench/reliability.py`` runs the same tests at a larger scale
(``GEN3D_FUZZ_SCALE``) and reads the counts.
"""

from __future__ import annotations

import collections
import os
import tracemalloc
from typing import Any, Callable

CASES: collections.Counter = collections.Counter()
CRASHES: collections.Counter = collections.Counter()
OVER_MEMORY: collections.Counter = collections.Counter()


def examples(n: int) -> int:
    """``n`` hypothesis examples scaled by ``GEN3D_FUZZ_SCALE`` (default 1: what ``make test`` runs)."""
    return max(1, int(round(n * float(os.environ.get("GEN3D_FUZZ_SCALE", "1")))))


def expect_clean_failure(target: str, fn: Callable[..., Any], *args: Any,
                         allowed: tuple[type[BaseException], ...] = (ValueError,), max_mb: float = 64.0,
                         **kwargs: Any) -> Any:
    """Run ``fn(*args, **kwargs)`` on a (probably) malformed input; see the module docstring. Returns what
    ``fn`` returned, or the allowed exception it raised."""
    CASES[target] += 1
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        result: Any = fn(*args, **kwargs)
    except allowed as exc:
        result = exc
    except BaseException:
        CRASHES[target] += 1
        raise
    finally:
        _, peak = tracemalloc.get_traced_memory()
        if started:
            tracemalloc.stop()
    if peak > max_mb * 1024 * 1024:
        OVER_MEMORY[target] += 1
        CRASHES[target] += 1
        raise AssertionError(f"{target}: {peak / 2**20:.0f} MB allocated for one malformed input "
                             f"(limit {max_mb} MB)")
    return result


def totals() -> dict[str, int]:
    """``{"fuzz_cases": …, "fuzz_crashes": …}`` over every target so far."""
    return {"fuzz_cases": int(sum(CASES.values())), "fuzz_crashes": int(sum(CRASHES.values()))}
