"""Where numa-lab reads configs and writes outputs; every path from a user stays inside them."""

from __future__ import annotations

import re
from pathlib import Path

from numa_ops import settings

REPO_ROOT = settings.REPO_ROOT
SAFE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"  # a plain file name; also the form's folder field
_SAFE_NAME = re.compile(SAFE_NAME_PATTERN)


class UnsafePathError(ValueError):
    """A name or path from user input would leave the folder it belongs in."""


def configs_dir() -> Path:
    """Experiment YAML folder (``NUMA_LAB_CONFIGS`` or ``include/configs``)."""
    return settings.configs_dir()


def outputs_dir() -> Path:
    """Results folder (``NUMA_LAB_OUTPUTS`` or ``outputs/`` in the repository)."""
    return settings.outputs_dir()


def plugins_dir() -> Path:
    """The folder that holds the ``numa_ops`` package (put on a worker's PYTHONPATH)."""
    return Path(__file__).resolve().parents[1]


def safe_name(name: str, what: str = "name") -> str:
    """Return ``name`` if it is a plain file name (no separators, no leading dot), else raise."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise UnsafePathError(
            f"{what} {name!r} is not allowed: use letters, digits, '_', '-' and '.', "
            "starting with a letter or digit, at most 128 characters"
        )
    return name


def inside(base: Path, *parts: str) -> Path:
    """Join ``parts`` under ``base`` and refuse any result outside ``base``."""
    base = base.resolve()
    path = base.joinpath(*parts).resolve()
    if path != base and base not in path.parents:
        raise UnsafePathError(f"path {path} is outside {base}")
    return path
