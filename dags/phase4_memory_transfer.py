"""Airflow DAG for Phase 4 (see include/configs/phases.yaml)."""

from numa_ops.dag_factory import build_phase_dag

dag = build_phase_dag("phase4_memory_transfer")
