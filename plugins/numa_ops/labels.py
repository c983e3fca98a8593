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


def memory_words(pinned: object, *, always: bool = False) -> str:
    """``, pageable host memory`` for a pageable pool; ``, pinned host memory`` too when ``always`` (a table or
    answer where both were measured); empty for pinned, the default, otherwise."""
    said = host_memory(pinned)
    return f", {said} host memory" if always or said == PAGEABLE else ""


def shape(execution: object, image: object, batch: object) -> str:
    """A run's shape: ``eager, 224 px, batch 8`` (``image``: a side in pixels, or ``HxW``)."""
    return f"{execution}, {image} px, batch {batch}"


def settings(execution: object, image: object, batch: object, pinned: object = None, *,
             name_memory: bool = False) -> str:
    """A run's shape and its host memory: ``eager, 224 px, batch 8, pageable host memory`` (pinned said only with
    ``name_memory``)."""
    return shape(execution, image, batch) + memory_words(pinned, always=name_memory)


def configuration(model: object, execution: object, image: object, batch: object, pinned: object = None,
                  *, name_memory: bool = False) -> str:
    """A configuration in words: ``small (eager, 224 px, batch 8)``, ``..., pageable host memory)`` for a pageable
    pool (and ``pinned host memory`` too with ``name_memory``)."""
    return f"{model} ({settings(execution, image, batch, pinned, name_memory=name_memory)})"
