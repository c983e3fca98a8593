"""GPU hosts of a Celery deployment (``NUMA_LAB_HOSTS``): each host is a Celery queue of the same name.

With no hosts configured every task runs on the default queue, as on one host with the LocalExecutor.
With hosts, a phase discovers, plans and measures on each host through its queue; a study may be
pinned to some of the hosts (``hosts:`` in phases.yaml).
"""

from __future__ import annotations

import re

from numa_ops import settings
from numa_ops.config import ConfigError

HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


def check_host_name(name: str, where: str = "NUMA_LAB_HOSTS") -> str:
    """``name`` if it can name a Celery queue, an Airflow task group and a folder suffix, else raise."""
    if not isinstance(name, str) or not HOST_NAME.match(name):
        raise ConfigError(
            f"{where}: host {name!r} is not allowed: use letters, digits, '_' and '-', "
            "starting with a letter or digit, at most 63 characters"
        )
    return name


def configured_hosts() -> list[str]:
    """The hosts of ``NUMA_LAB_HOSTS`` (comma-separated), in order; empty when unset."""
    names = settings.hosts()
    for name in names:
        check_host_name(name)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"NUMA_LAB_HOSTS names {repeated} more than once")
    return names
