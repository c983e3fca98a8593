"""numa-lab: GPU-NUMA locality experiments for ViT inference, run through Airflow."""

__version__ = "0.1.0"
