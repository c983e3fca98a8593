"""The numa-lab pages inside the Airflow UI: each DAG run's report, the run folders, and the results in SQL,
served by a FastAPI app in the API server to users Airflow has authenticated."""
