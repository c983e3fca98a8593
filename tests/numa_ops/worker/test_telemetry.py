from __future__ import annotations

from numa_ops.worker.telemetry import FIELDS, Telemetry, empty, summarize


def test_no_gpu_gives_null_fields():
    with Telemetry(None) as t:
        pass
    summary = t.summary()
    assert summary["source"] is None and summary["samples"] == 0
    assert all(summary[f"{f}_mean"] is None and summary[f"{f}_max"] is None for f in FIELDS)


def test_no_nvml_driver_gives_null_fields_and_says_why():
    # pynvml is installed here but there is no driver: the sampler process cannot start
    with Telemetry(0) as t:
        pass
    summary = t.summary()
    assert summary["samples"] == 0 and summary["gpu_util_pct_mean"] is None
    assert summary.get("error")


def test_summarize():
    s = summarize([{"gpu_util_pct": 10.0, "power_w": None}, {"gpu_util_pct": 30.0, "power_w": 100.0}])
    assert s["gpu_util_pct_mean"] == 20.0 and s["gpu_util_pct_max"] == 30.0
    assert s["power_w_mean"] == 100.0 and s["temp_c_mean"] is None
    assert summarize([]) == empty()
