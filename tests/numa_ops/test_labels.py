"""The words for a run's host memory and its configuration, as every page, table and verdict says them."""

from __future__ import annotations

import pandas as pd
import pytest
from numa_ops.labels import configuration, host_memory
from numa_ops.report.format import configurations, shapes


@pytest.mark.parametrize(
    ("pinned", "word"),
    [(True, "pinned"), (False, "pageable"), (None, "pinned"), (float("nan"), "pinned"), (pd.NA, "pinned"),
     (1, "pinned"), (0, "pageable")],
    ids=["true", "false", "missing", "nan-from-pandas", "na-from-pandas", "one-from-sql", "zero-from-sql"],
)
def test_host_memory_is_said_one_way(pinned, word):
    assert host_memory(pinned) == word


@pytest.mark.parametrize(
    ("pinned", "name_memory", "said"),
    [
        pytest.param(True, False, "small (eager, 224 px, batch 8)", id="pinned-unsaid"),
        pytest.param(False, False, "small (eager, 224 px, batch 8, pageable host memory)", id="pageable-always-said"),
        pytest.param(None, True, "small (eager, 224 px, batch 8, pinned host memory)", id="both-measured-named"),
    ],
)
def test_a_configuration_is_said_one_way(pinned, name_memory, said):
    assert configuration("small", "eager", 224, 8, pinned, name_memory=name_memory) == said


def test_the_report_frames_say_configurations_as_labels_does():
    frame = pd.DataFrame({"model_name": ["a", "b"], "execution": ["eager", "cuda_graph"], "height": [32, 64],
                          "batch_size": [4, 16], "pinned_memory": [True, False]})
    assert list(configurations(frame)) == [configuration("a", "eager", 32, 4, True),
                                           configuration("b", "cuda_graph", 64, 16, False)]
    assert list(shapes(frame, memory=True)) == ["eager, 32 px, batch 4",
                                                "cuda_graph, 64 px, batch 16, pageable host memory"]
    assert list(configurations(frame.iloc[:0])) == []  # an empty frame: no rows, no error
