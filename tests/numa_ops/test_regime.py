from __future__ import annotations

import pytest
from numa_ops.regime import COMPUTE_BOUND, LAUNCH_BOUND, TRANSFER_BOUND, classify, launch_share


@pytest.mark.parametrize(
    ("h2d", "fwd", "fwd_gpu", "d2h", "expected"),
    [
        # the plan's small ViTs on an H100 in eager mode: GPU waits on the launching CPU
        pytest.param(0.12, 1.11, 0.32, 0.02, LAUNCH_BOUND, id="launch-d2"),
        pytest.param(0.12, 6.16, 0.74, 0.02, LAUNCH_BOUND, id="launch-d6"),
        # same model replayed as a graph: copies now dominate
        pytest.param(0.30, 0.32, 0.32, 0.02, TRANSFER_BOUND, id="transfer"),
        pytest.param(0.12, 9.5, 9.4, 0.02, COMPUTE_BOUND, id="compute"),
        # borders
        pytest.param(0.10, 2.0, 1.0, 0.0, LAUNCH_BOUND, id="share-exactly-half"),
        pytest.param(0.10, 2.0, 1.0001, 0.0, COMPUTE_BOUND, id="share-just-below-half"),
        pytest.param(0.60, 2.0, 1.0, 0.40, LAUNCH_BOUND, id="overhead-equals-copies"),
        pytest.param(0.60, 2.0, 1.0, 0.41, TRANSFER_BOUND, id="copies-exceed-overhead"),
        pytest.param(0.50, 1.0, 1.0, 0.50, TRANSFER_BOUND, id="copies-equal-compute"),
        pytest.param(0.50, 1.0, 1.0, 0.49, COMPUTE_BOUND, id="copies-just-below-compute"),
        pytest.param(0.10, 1.0, 1.2, 0.0, COMPUTE_BOUND, id="graph-slower-than-eager"),
    ],
)
def test_classify(h2d, fwd, fwd_gpu, d2h, expected):
    assert classify(h2d, fwd, fwd_gpu, d2h) == expected


def test_launch_share():
    assert launch_share(1.11, 0.32) == pytest.approx(0.7117, abs=1e-4)
    assert launch_share(1.0, 1.5) == 0.0


@pytest.mark.parametrize("bad", [None, -1.0], ids=["none", "negative"])
def test_refuses_missing_times(bad):
    with pytest.raises(ValueError):
        classify(bad, 1.0, 1.0, 0.0)
