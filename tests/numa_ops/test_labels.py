"""The words for a run's host memory, as every page and table says them."""

from __future__ import annotations

import pandas as pd
import pytest
from numa_ops.labels import host_memory


@pytest.mark.parametrize(
    ("pinned", "word"),
    [(True, "pinned"), (False, "pageable"), (None, "pinned"), (float("nan"), "pinned"), (pd.NA, "pinned"), (1, "pinned"),
     (0, "pageable")],
    ids=["true", "false", "missing", "nan-from-pandas", "na-from-pandas", "one-from-sql", "zero-from-sql"],
)
def test_host_memory_is_said_one_way(pinned, word):
    assert host_memory(pinned) == word
