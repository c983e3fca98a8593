"""Hand-made run records for tests of the layers below the worker (store, report, results)."""

from __future__ import annotations

from typing import Any

from numa_ops.record import RunRecord


def record(run_id: str, folder: str = "f1", success: bool = True, samples_per_s: float = 100.0,
           **extra: Any) -> dict[str, Any]:
    rec = {
        "schema": 1,
        "run_id": run_id,
        "folder": folder,
        "experiment": "tiny",
        "sweep_point": 0,
        "lane": "cpu-cpu0-mem0",
        "gpu_id": None,
        "numa_node": 0,
        "cpu_node": 0,
        "mem_node": 0,
        "placement": "cpu",
        "device": "cpu",
        "model": {"name": run_id.split(".")[-1], "patch_size": 8, "depth": 1, "heads": 2, "dim": 32, "mlp_dim": 64},
        "test": {"num_samples": 16, "batch_size": 4, "tensor_shape": [3, 32, 32], "memory_size_mb": 1,
                 "compile_model": False},
        "success": success,
        "error": None if success else "boom",
        "duration": 1.0,
        "started_at": "2026-11-27T00:00:00+00:00",
        "finished_at": "2026-11-27T00:00:01+00:00",
        "metrics": ({"samples_per_s": samples_per_s, "forward_ms": {"median": 3.0}, "batch_ms": {"median": 3.0}}
                    if success else None),
    }
    rec.update(extra)
    return rec


def typed(records: list[dict[str, Any]]) -> list[RunRecord]:
    """Hand-made records as the readers get them: validated through the record model."""
    return [RunRecord.model_validate(r) for r in records]
