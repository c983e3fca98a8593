"""The words numa-lab shows for a run's settings, in one place: the report's charts, page and guide, the
analysis tables and the comparison of run folders all say them the same way."""

from __future__ import annotations

import math

PINNED, PAGEABLE = "pinned", "pageable"


def host_memory(pinned: object) -> str:
    """``pinned`` or ``pageable``: how a run's host pool was allocated (missing, NaN or pandas' NA: pinned, the
    default)."""
    if pinned is None or (isinstance(pinned, float) and math.isnan(pinned)):
        return PINNED
    try:
        return PINNED if bool(pinned) else PAGEABLE
    except TypeError:  # pandas.NA: a missing value that refuses to be a bool
        return PINNED
