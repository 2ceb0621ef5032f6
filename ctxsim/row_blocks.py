"""Large inputs cut into consecutive row blocks, predicted in threads (the native code and numpy release the
GIL), so each block's features stay in the CPU cache: building and converting the features of a whole
chunk costs more memory traffic than the trees themselves."""
from __future__ import annotations

import os

import numpy as np

#: Rows per block of :func:`in_blocks`: a block's features (float64) stay in the CPU cache.
BLOCK_ROWS = 8192
#: Fewer rows than this are predicted on one thread (a block is; a thread pool costs more than it saves).
MIN_ROWS_PER_THREAD = 4 * BLOCK_ROWS


def prediction_threads() -> int:
    """Threads for prediction: ``OMP_NUM_THREADS`` when set (Ray sets it per task), else every core."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else os.cpu_count() or 1


def in_blocks(n: int, predict, block_rows: int = BLOCK_ROWS, threads: int | None = None) -> np.ndarray:
    """``predict(rows)`` over consecutive row blocks of ``range(n)``, concatenated, in ``threads`` threads
    (default: :func:`prediction_threads`). Each row's answer does not depend on its block."""
    if n <= block_rows:
        return predict(np.arange(n))
    from concurrent.futures import ThreadPoolExecutor

    blocks = [np.arange(start, min(start + block_rows, n)) for start in range(0, n, block_rows)]
    with ThreadPoolExecutor(threads or prediction_threads()) as pool:
        return np.concatenate(list(pool.map(predict, blocks)))


def each_block(n: int, work, block_rows: int = BLOCK_ROWS, threads: int | None = None) -> None:
    """``work(start, stop)`` for consecutive row blocks of ``range(n)``, in ``threads`` threads (results
    written in place by ``work``)."""
    if n <= block_rows or (threads or prediction_threads()) == 1:
        for start in range(0, n, block_rows):
            work(start, min(start + block_rows, n))
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads or prediction_threads()) as pool:
        list(pool.map(lambda start: work(start, min(start + block_rows, n)), range(0, n, block_rows)))
