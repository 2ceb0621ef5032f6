"""Row blocks in threads: every row once, in order, whatever the block size and thread count."""
from __future__ import annotations

import numpy as np
import pytest

from ctxsim.row_blocks import each_block, in_blocks


@pytest.mark.parametrize("n, block, threads", [(0, 4, 2), (3, 4, 2), (10, 4, 1), (10, 4, 2), (1001, 64, 3)])
def test_every_row_once_in_order(n, block, threads):
    np.testing.assert_array_equal(in_blocks(n, lambda rows: rows * 2, block, threads), np.arange(n) * 2)
    seen = np.zeros(n, int)

    def work(start, stop):
        seen[start:stop] += 1

    each_block(n, work, block, threads)
    assert (seen == 1).all()
