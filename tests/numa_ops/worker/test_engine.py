"""The engine on the CPU with the tiny model: what each pass leaves in its buffers and in its timings."""

from __future__ import annotations

import math

import pytest
import torch
from numa_ops.worker import flops
from numa_ops.worker.engine import SLOTS, STAGES, Engine
from numa_ops.worker.pool import HostPool

from tests.numa_ops.lanes import TINY_MODEL, TINY_TEST

CPU = torch.device("cpu")
D2H_MODES = ["outputs", "tokens"]


def _engine(**test: object) -> Engine:
    return Engine(TINY_MODEL, TINY_TEST.model_copy(update=test), CPU)


@pytest.fixture(params=D2H_MODES, ids=[f"d2h-{m}" for m in D2H_MODES])
def engine(request):
    built = _engine(d2h_mode=request.param)
    yield built
    built.close()


def test_the_outputs_and_their_bytes_follow_the_d2h_mode(engine):
    bs, dim, classes = TINY_TEST.batch_size, TINY_MODEL.dim, TINY_MODEL.num_classes
    tokens = (32 // TINY_MODEL.patch_size) ** 2 + 1  # the patches and the class token
    expected = [(bs, classes), (bs, dim)] + ([(bs, tokens, dim)] if engine.d2h_mode == "tokens" else [])
    assert engine.out_shapes == expected
    assert engine.d2h_bytes == sum(math.prod(s) for s in expected) * 4
    per_sample = flops.bytes_per_sample(TINY_MODEL, list(TINY_TEST.tensor_shape), engine.d2h_mode)
    assert engine.d2h_bytes == per_sample["d2h"] * bs
    assert [[tuple(t.shape) for t in slot] for slot in engine.host_out] == [expected] * SLOTS


def test_the_cpu_engine_is_eager_and_its_pool_is_never_pinned(engine):
    assert engine.execution == "eager" and not engine.cuda
    assert engine.pool.pinned is False  # test.pinned_memory is true: there is nothing to pin for on the CPU
    assert engine.parameters == sum(p.numel() for p in engine.model.parameters()) > 0
    assert engine.first_call_s is not None and engine.compile_s is None


def test_warmup_leaves_each_slot_holding_the_outputs_of_its_last_batch(engine):
    batches = 5
    engine.warmup(batches)
    with torch.inference_mode():
        for k in range(SLOTS):
            last = max(i for i in range(batches) if i % SLOTS == k)
            want = engine.model(engine.pool.batch(last).clone())
            for got, exp in zip(engine.host_out[k], want, strict=True):
                torch.testing.assert_close(got, exp)


def test_a_serial_pass_times_every_batch_and_copies_its_outputs_to_the_host(engine):
    engine.warmup(1)
    issue: dict[str, list[float]] = {k: [] for k in STAGES}
    control: list[float] = []
    seconds = engine.serial_pass(7, issue, control)
    assert seconds > 0
    assert {k: len(v) for k, v in issue.items()} == {k: 7 for k in STAGES}
    assert all(ms >= 0 for v in issue.values() for ms in v)
    assert control and all(rate > 0 for rate in control)  # the first batch always takes a control sample
    with torch.inference_mode():
        want = engine.model(engine.dev_in[0])
    for got, exp in zip(engine.host_out[0], want, strict=True):
        torch.testing.assert_close(got, exp)


def test_the_cpu_stage_pass_times_the_forward_alone(engine):
    engine.warmup(1)
    stages = engine.stage_pass(4)
    assert len(stages["gpu"]["forward"]) == 4 and all(ms > 0 for ms in stages["gpu"]["forward"])
    assert stages["gpu"]["h2d"] == [] and stages["gpu"]["d2h"] == []


def test_the_cpu_has_no_copy_to_measure(engine):
    assert engine.copy_bandwidth() == {"h2d_gbps": None, "d2h_gbps": None}


@pytest.mark.parametrize(
    ("execution", "refused"),
    [("eager", None), ("cuda_graph", "cuda_graph needs a CUDA device")],
    ids=["eager", "cuda-graph-refused"],
)
def test_an_execution_mode_runs_on_the_cpu_or_is_refused(execution, refused):
    if refused:
        with pytest.raises(ValueError, match=refused):
            _engine(execution=execution)
        return
    built = _engine(execution=execution)
    try:
        assert built.execution == execution
        assert built.serial_pass(2) > 0
    finally:
        built.close()


def test_a_paired_arm_switches_in_its_own_buffers(engine):
    other = HostPool(TINY_TEST.memory_size_mb, TINY_TEST.batch_size, list(TINY_TEST.tensor_shape), pinned=False)
    try:
        pages = {"source": None, "by_node": None, "intended_node": 0, "fraction_on_intended": None, "policy": None}
        engine.use_buffers(other, None, pages)
        assert engine.pool is other and engine.pool_pages is pages
        wrong = [[torch.empty(1)] for _ in range(SLOTS)]
        with pytest.raises(ValueError, match="D2H destinations"):
            engine.use_buffers(other, wrong, pages)
        smaller = HostPool(TINY_TEST.memory_size_mb, 2, list(TINY_TEST.tensor_shape), pinned=False)
        with pytest.raises(ValueError, match="cannot stand in"):
            engine.use_buffers(smaller, None, pages)
        smaller.close()
    finally:
        other.close()
