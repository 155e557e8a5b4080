"""Out of accelerator memory: halve the work and go on.

`run_halving_on_oom(process, items)` calls `process(items)`; where that runs out of GPU memory it empties
torch's CUDA cache and processes each half of the items in turn, halving again where a half does not fit,
down to one item. No number changes: effbench computes each example on its own (the perturbation engine
runs each example's inputs in chunks of their own), so how the items are cut into calls does not matter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from effbench.errors import EffbenchError, warn

Item = TypeVar("Item")
Result = TypeVar("Result")

_warned = False  # the halving warning is printed once per process


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is torch's out-of-memory error (raised by CUDA's allocator, among others)."""
    import torch

    # torch.OutOfMemoryError from torch 2.5 on; torch.cuda's name for it exists in every torch effbench supports
    return isinstance(error, torch.cuda.OutOfMemoryError)


def run_halving_on_oom(process: Callable[[Sequence[Item]], Sequence[Result]], items: Sequence[Item], *,
                       what: str = "examples") -> list[Result]:
    """`process(items)`, as a list; on torch.OutOfMemoryError, the results of each half of `items`, in order.

    `items` is sliced (`items[:half]`), so a list, a tuple or a range serves; `process` returns one
    sequence per call (one result per item, or none at all for work done for its side effects). Where a
    single item still runs out of memory, a one-line EffbenchError says so.
    """
    try:
        return list(process(items))
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    # outside the except block, so that the failed call's frames, and the tensors they hold, are freed first
    _empty_cache()
    if len(items) <= 1:
        raise EffbenchError(f"out of memory on one of the {what} alone ({message}); free memory on the device, "
                            "or run with --dtype bfloat16 or on another --device")
    half = len(items) // 2
    global _warned
    if not _warned:
        _warned = True
        warn(f"out of memory on {len(items)} {what}: processing them in halves (down to one at a time where "
             "needed); no number depends on how the work is cut. This warning is printed once.")
    return (run_halving_on_oom(process, items[:half], what=what)
            + run_halving_on_oom(process, items[half:], what=what))


def _empty_cache() -> None:
    import gc

    import torch

    gc.collect()  # tensors held only through reference cycles
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()
