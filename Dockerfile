# numa-lab on Airflow's official image: numactl, the pinned requirements (torch from PyPI is a CUDA
# build; the GPU driver comes from the host through the NVIDIA container toolkit) and numa-lab itself.
# docker-compose.yaml builds it; on its own:
#   docker build -t numa-lab:3.3.2 .
# The slim image carries Airflow and few providers, so the pinned set (constraints.txt) installs over it
# without other providers' requirements to break; `pip check` fails the build if anything conflicts.
ARG AIRFLOW_IMAGE=apache/airflow:slim-3.3.2-python3.12
FROM ${AIRFLOW_IMAGE}

USER root
# numactl binds each lane's worker to its CPU node and memory node (--membind needs cap SYS_NICE, given
# by docker-compose.yaml to the services that run tasks)
RUN apt-get update \
 && apt-get install -y --no-install-recommends numactl \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*
# Nsight Systems is not in the image: mount the host's install folder (the one holding bin/nsys) at
# /opt/nsys (docker-compose.yaml: NUMA_LAB_NSYS_DIR). Without it, profile.nsys=on runs unprofiled and
# says so in every record; profile.nsys=required fails the lane's runs with the reason.
RUN mkdir -p /opt/nsys /opt/airflow/outputs /opt/airflow/auth \
 && chown -R airflow:0 /opt/airflow/outputs /opt/airflow/auth
ENV NUMA_LAB_NSYS=/opt/nsys/bin/nsys \
    NUMA_LAB_OUTPUTS=/opt/airflow/outputs \
    NUMA_LAB_CONFIGS=/opt/airflow/include/configs \
    PYTHONPATH=/opt/airflow/plugins \
    CUDA_DEVICE_ORDER=PCI_BUS_ID

USER airflow
COPY --chown=airflow:0 requirements.txt constraints.txt /opt/numa-lab/
RUN pip install --no-cache-dir -r /opt/numa-lab/requirements.txt -c /opt/numa-lab/constraints.txt \
 && pip check
# the code as built; docker-compose.yaml mounts the working copies over these
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 include/ /opt/airflow/include/
# the SQL page's example queries (numa_ops.ui)
COPY --chown=airflow:0 docs/database.md /opt/airflow/docs/database.md
