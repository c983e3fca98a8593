"""The regime of a run: the one of the stage that bounds its pipelined rate."""

from __future__ import annotations

import pytest
from numa_ops.regime import COMPUTE_BOUND, LAUNCH_BOUND, TRANSFER_BOUND, of_binding


@pytest.mark.parametrize(
    ("stage", "expected"),
    [("cpu_issue", LAUNCH_BOUND), ("h2d", TRANSFER_BOUND), ("d2h", TRANSFER_BOUND), ("forward", COMPUTE_BOUND)],
    ids=["cpu-issue", "h2d", "d2h", "forward"],
)
def test_of_binding(stage, expected):
    assert of_binding(stage) == expected


def test_an_unknown_stage_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="cpu_issue"):
        of_binding("batch")
