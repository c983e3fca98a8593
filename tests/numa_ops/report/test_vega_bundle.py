"""The inlined Vega bundle: built by vl-convert once, then read from the cache folder."""

from __future__ import annotations

import pytest
import vl_convert
from numa_ops.report import vega_bundle
from numa_ops.report.page import VL_VERSION


@pytest.fixture(autouse=True)
def _forget_the_bundle():
    """A bundle remembered by a test (a planted one too) must not be what a later test's page inlines."""
    vega_bundle.javascript_bundle.cache_clear()
    yield
    vega_bundle.javascript_bundle.cache_clear()


def _fresh(monkeypatch, cache):
    monkeypatch.setenv("NUMA_LAB_CACHE", str(cache))
    vega_bundle.javascript_bundle.cache_clear()


def test_the_bundle_is_built_once_and_kept(tmp_path, monkeypatch):
    _fresh(monkeypatch, tmp_path / "cache")
    built = vega_bundle.javascript_bundle(VL_VERSION)
    path = vega_bundle.bundle_path(VL_VERSION)
    assert path.parent == tmp_path / "cache" and vl_convert.__version__ in path.name
    assert path.read_text(encoding="utf-8") == built and "vegaEmbed" in built
    calls = []
    monkeypatch.setattr(vl_convert, "javascript_bundle", lambda **kw: calls.append(kw) or "rebuilt")
    vega_bundle.javascript_bundle.cache_clear()
    assert vega_bundle.javascript_bundle(VL_VERSION) == built and calls == []  # read back, not rebuilt


def test_an_unwritable_cache_still_gives_the_bundle(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    _fresh(monkeypatch, blocked / "cache")
    monkeypatch.setattr(vl_convert, "javascript_bundle", lambda **kw: f"bundle {kw['vl_version']}")
    assert vega_bundle.javascript_bundle(VL_VERSION) == f"bundle {VL_VERSION}"
    assert not list(tmp_path.glob("**/vega-bundle-*"))
