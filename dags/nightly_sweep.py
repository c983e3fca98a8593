"""Airflow DAG for the nightly regression sweep (see include/configs/phases.yaml)."""

from numa_ops.dag_factory import build_phase_dag

dag = build_phase_dag("nightly_sweep")
