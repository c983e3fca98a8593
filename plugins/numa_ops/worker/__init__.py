"""The measured process: one bound worker runs a lane's runs one after another.

Nothing here is imported by the Airflow side; ``python -m numa_ops.worker`` is its entry point.
"""
