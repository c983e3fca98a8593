"""The research plan's override grammar (docs/experiment_plan.md): ``experiment.test.num_samples=500``, sweeps
``a=1,2,3``.

Values are parsed by Hydra's override grammar (never evaluated). Keys are dotted paths with
optional list indices (``experiment.vit_configs[0].depth``), parsed here because Hydra's key
grammar has no indices.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

ROOT = "experiment"
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[\d+\])*(\.[A-Za-z_][A-Za-z0-9_]*(\[\d+\])*)*$")
_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


@cache
def _parser() -> Any:
    """Hydra's override parser, built on first use: a worker imports the config model, never the grammar."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()

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
    from omegaconf import DictConfig, ListConfig, OmegaConf

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
    from hydra.errors import HydraException

    try:
        parsed = _parser().parse_override(f"value={raw}")
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


def latest_per_key(overrides: list[Override]) -> list[Override]:
    """Drop every override that a later one of the same key replaces (as Hydra: the last one wins).

    Keys are compared by their parsed path, so ``experiment.vit_configs[0].depth`` matches however
    it is spelt. The overrides that stay keep their order, which is the order they apply in.
    """
    last = {o.path: i for i, o in enumerate(overrides)}
    return [o for i, o in enumerate(overrides) if last[o.path] == i]


def parse_overrides(texts: list[str]) -> list[Override]:
    """Parse a list of override strings, in order; a later override of a key replaces an earlier one.

    A phase's trigger form appends its overrides after the study's own, so the form's
    ``experiment.test.batch_size=16`` replaces the study's ``batch_size=4,8,16,32`` sweep.
    """
    return latest_per_key([parse_override(t) for t in texts])


def _single(o: Override, value: Any) -> Override:
    return Override(o.text, o.key, o.path, (value,), False)


def _zip_path(key: str) -> tuple[PathPart, ...] | None:
    try:
        path = _parse_path(key)
    except OverrideError:
        return None
    return path[1:] if path[0] == ROOT and len(path) > 1 else None


def expand_sweeps(overrides: list[Override], zip_keys: list[list[str]] | None = None) -> list[list[Override]]:
    """Sweep points: the cartesian product of sweeps (as Hydra's ``-m``), one point if none sweep.

    A later override of a key replaces an earlier one, so each key is one axis at most. Keys
    named together in ``zip_keys`` are paired element by element instead (the plan's "larger
    images with smaller batches"); their sweeps must have the same length. A zipped key set to a
    single value (a trigger form's ``batch_size=16`` over a study's zipped batch sweep) holds that
    value at every point of the zip.
    """
    overrides = latest_per_key(overrides)
    by_path = {o.path: o for o in overrides}
    zipped: set[tuple[PathPart, ...]] = set()
    axes: list[list[list[Override]]] = []
    for group in zip_keys or []:
        paths = [_zip_path(k) for k in group]
        missing = [k for k, p in zip(group, paths, strict=True) if p not in by_path]
        if missing:
            raise OverrideError(f"zip names {missing}, which no override sets")
        again = [k for k, p in zip(group, paths, strict=True) if p in zipped]
        if again:
            raise OverrideError(f"zip {list(group)}: {again} is already in another zip group")
        members = [by_path[p] for p in dict.fromkeys(paths)]
        sweeps = [o for o in members if o.is_sweep]  # the others are constants, added below
        lengths = {len(o.values) for o in sweeps}
        if len(lengths) > 1:
            raise OverrideError(
                f"zip {list(group)}: the sweeps have different lengths {[len(o.values) for o in sweeps]}"
            )
        if sweeps:
            axes.append([[_single(o, o.values[i]) for o in sweeps] for i in range(lengths.pop())])
        zipped.update(o.path for o in sweeps)
    for o in overrides:
        if o.path not in zipped:
            axes.append([[_single(o, v)] for v in o.values] if o.is_sweep else [[o]])
    points = []
    for combo in itertools.product(*axes):
        chosen = {o.path: o for part in combo for o in part}
        points.append([chosen[o.path] for o in overrides])  # keep the overrides' own order
    return points
