"""The Vega, Vega-Lite and vega-embed JavaScript a report inlines, built once per vl-convert version.

``vl_convert.javascript_bundle`` bundles the libraries on every call (seconds); the bundle depends only on
vl-convert's version and the Vega-Lite version asked for, so it is kept in numa-lab's cache folder and read
from there. A cache that cannot be written is not an error: the bundle is then built in memory.
"""

from __future__ import annotations

import contextlib
from functools import cache
from pathlib import Path

from numa_ops import settings
from numa_ops.results import write_text_atomic


def bundle_path(vl_version: str, cache: Path | None = None) -> Path:
    """Where the bundle of this vl-convert and ``vl_version`` is kept."""
    import vl_convert

    return (cache or settings.cache_dir()) / f"vega-bundle-vlc{vl_convert.__version__}-vl{vl_version}.js"


@cache
def javascript_bundle(vl_version: str) -> str:
    """The bundle for ``vl_version`` (e.g. ``"6_1"``): from the cache folder, else built and kept there."""
    import vl_convert

    path = bundle_path(vl_version)
    with contextlib.suppress(OSError):
        return path.read_text(encoding="utf-8")
    bundle = vl_convert.javascript_bundle(vl_version=vl_version)
    with contextlib.suppress(OSError):
        write_text_atomic(path, bundle)
    return bundle
