"""Row-parallel evaluation of a model's closed-form parts on a CPU.

Torch runs a batched LAPACK call (``cholesky_ex``, ``cholesky_inverse``, ``solve_ex``) on a CPU one
small matrix after another on a single core, whatever its thread count, and the per-window fits of
the experts are mostly such calls. :func:`map_row_chunks` cuts the rows into one contiguous chunk per
torch thread and runs the function on each chunk in its own Python thread (torch releases the GIL
inside its ops), so every core factors matrices. While the chunks run, torch's intra-op thread count is
1: each chunk already has a core, and intra-op threads on top of the chunk threads would oversubscribe
the cores (the README's benchmark section has the figures). The caller's count is restored when the
chunks are done; torch work that another thread of the caller runs meanwhile sees the count of 1.
Rows are independent in every function it is used
with, so a row's result does not depend on the split beyond the rounding of the GEMMs (whose
blocking may change with the row count); the split is a function of the row count and
``torch.get_num_threads()`` alone, so a run repeats bit for bit on the same machine.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch
from torch import Tensor

MIN_CHUNK_ROWS = 64  # below this many rows per chunk a thread costs more than it saves
_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}


def _pool(workers: int) -> ThreadPoolExecutor:
    """This process's pool of ``workers`` threads (a forked child, e.g. a DataLoader worker, makes its own:
    the parent's threads do not exist there)."""
    key = (os.getpid(), workers)
    if key not in _pools:
        _pools[key] = ThreadPoolExecutor(workers, thread_name_prefix="harmonic-rows")
    return _pools[key]


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with torch's intra-op thread count at ``count``, and restore the caller's afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def map_row_chunks(function: Callable[[Tensor], tuple[Tensor, ...]], rows: Tensor) -> tuple[Tensor, ...]:
    """``function(rows)``, computed chunk by chunk in parallel threads on a CPU and concatenated along dim 0.

    ``function`` maps ``[B, ...]`` to a tuple of tensors whose first dimension is ``B``, row by row. On a
    CPU with ``torch.get_num_threads() > 1`` and at least :data:`MIN_CHUNK_ROWS` rows per chunk, the rows
    are split into that many contiguous chunks; otherwise (and on any other device, where kernels are
    asynchronous already) ``function`` is called once. The caller's grad mode holds in every thread.
    An exception in any chunk is raised here.
    """
    chunks = min(torch.get_num_threads(), len(rows) // MIN_CHUNK_ROWS)
    if rows.device.type != "cpu" or chunks < 2:
        return function(rows)
    grad = torch.is_grad_enabled()

    def run(chunk: Tensor) -> tuple[Tensor, ...]:
        with torch.set_grad_enabled(grad):
            return function(chunk)

    with torch_threads(1):  # a chunk per core; a pool thread takes this count at its first parallel op
        parts = list(_pool(chunks).map(run, rows.chunk(chunks)))
    return tuple(torch.cat(values) for values in zip(*parts, strict=True))
