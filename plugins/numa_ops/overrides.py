"""The seed plan's override grammar: ``experiment.test.num_samples=500``, sweeps ``a=1,2,3``.

Values are parsed by Hydra's override grammar (never evaluated). Keys are dotted paths with
optional list indices (``experiment.vit_configs[0].depth``), parsed here because Hydra's key
grammar has no indices.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf

ROOT = "experiment"
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[\d+\])*(\.[A-Za-z_][A-Za-z0-9_]*(\[\d+\])*)*$")
_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")
_PARSER = OverridesParser.create()

PathPart = str | int


class OverrideError(ValueError):
    """An override string that cannot be understood."""


@dataclass(frozen=True)
class Override:
    """One parsed ``key=value`` (or ``key=v1,v2`` sweep) override."""

    text: str
    key: str
    path: tuple[PathPart, ...]
    values: tuple[Any, ...]
    is_sweep: bool

    @property
    def value(self) -> Any:
        """The single value of a non-sweep override."""
        if self.is_sweep:
            raise OverrideError(f"{self.key} is a sweep over {len(self.values)} values, not one value")
        return self.values[0]


def _plain(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=False)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _parse_path(key: str) -> tuple[PathPart, ...]:
    if not _KEY.match(key):
        raise OverrideError(
            f"malformed key {key!r}: expected a dotted path such as experiment.test.batch_size "
            "or experiment.vit_configs[0].depth"
        )
    return tuple(name if name else int(idx) for name, idx in _PART.findall(key))


def _parse_value(key: str, raw: str, text: str) -> tuple[tuple[Any, ...], bool]:
    try:
        parsed = _PARSER.parse_override(f"value={raw}")
    except HydraException as exc:
        raise OverrideError(f"malformed value in {text!r}: {exc}".rstrip()) from None
    if parsed.is_sweep_override():
        try:
            values = tuple(_plain(v) for v in parsed.sweep_iterator())
        except HydraException as exc:
            raise OverrideError(f"unsupported sweep in {text!r}: {exc}") from None
        return values, True
    value = _plain(parsed.value())
    # A sweep or list quoted for the shell, e.g. tensor_shape="[3,224,224],[3,384,384]".
    quoted = len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\""
    if quoted and isinstance(value, str) and value[:1] in "[{":
        return _parse_value(key, value, text)
    return (value,), False


def parse_override(text: str) -> Override:
    """Parse one override string; raise :class:`OverrideError` naming what is wrong."""
    if not isinstance(text, str) or "=" not in text:
        raise OverrideError(f"malformed override {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    path = _parse_path(key)
    if path[0] != ROOT:
        raise OverrideError(f"unknown key {key!r}: overrides start with '{ROOT}.' or are '{ROOT}=<name>'")
    if raw.strip() == "":
        raise OverrideError(f"malformed override {text!r}: the value is empty")
    values, is_sweep = _parse_value(key, raw.strip(), text)
    return Override(text=text, key=key, path=path[1:], values=values, is_sweep=is_sweep)


def parse_overrides(texts: list[str]) -> list[Override]:
    """Parse a list of override strings, keeping their order."""
    return [parse_override(t) for t in texts]


def _single(o: Override, value: Any) -> Override:
    return Override(o.text, o.key, o.path, (value,), False)


def expand_sweeps(overrides: list[Override], zip_keys: list[list[str]] | None = None) -> list[list[Override]]:
    """Sweep points: the cartesian product of sweeps (as Hydra's ``-m``), one point if none sweep.

    Keys named together in ``zip_keys`` are paired element by element instead (the plan's
    "larger images with smaller batches"); their sweeps must have the same length.
    """
    groups = [list(g) for g in (zip_keys or [])]
    by_key = {o.key: o for o in overrides}
    zipped: set[str] = set()
    axes: list[list[list[Override]]] = []
    for group in groups:
        missing = [k for k in group if k not in by_key]
        if missing:
            raise OverrideError(f"zip names {missing}, which no override sets")
        members = [by_key[k] for k in group]
        lengths = {len(o.values) for o in members}
        if len(lengths) != 1:
            raise OverrideError(f"zip {group}: the sweeps have different lengths {[len(o.values) for o in members]}")
        axes.append([[_single(o, o.values[i]) for o in members] for i in range(lengths.pop())])
        zipped.update(group)
    for o in overrides:
        if o.key not in zipped:
            axes.append([[_single(o, v)] for v in o.values] if o.is_sweep else [[o]])
    points = []
    for combo in itertools.product(*axes):
        chosen = {o.key: o for part in combo for o in part}
        points.append([chosen[o.key] for o in overrides])  # keep the overrides' own order
    return points
