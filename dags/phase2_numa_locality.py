"""Airflow DAG for Phase 2 (see include/configs/phases.yaml)."""

from numa_ops.dag_factory import build_phase_dag

dag = build_phase_dag("phase2_numa_locality")
