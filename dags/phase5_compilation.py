"""Airflow DAG for Phase 5 (see include/configs/phases.yaml)."""

from numa_ops.dag_factory import build_phase_dag

dag = build_phase_dag("phase5_compilation")
