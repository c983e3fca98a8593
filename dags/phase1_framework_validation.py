"""Airflow DAG for Phase 1: framework validation and baseline (see include/configs/phases.yaml)."""

from numa_ops.dag_factory import build_phase_dag

dag = build_phase_dag("phase1_framework_validation")
