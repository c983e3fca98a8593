"""A phase DAG run's request, parsed once from its params (the trigger form, or a DAG run's conf) into a
frozen type: the tasks read fields, never the params mapping.

The form's schema (:mod:`numa_ops.trigger_params`) refuses bad values in the UI and the REST API; this
refuses what reaches a task anyway (a key the form does not have, a value of the wrong kind, no study and
no experiment), with one sentence, before anything is planned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from numa_ops.phases import Phase

FIELDS = ("studies", "experiment", "overrides", "sweeps", "num_samples", "update_asset", "folder")
HOSTS_FIELD = "hosts"


def form_fields(hosts: list[str] | None = None) -> list[str]:
    """The names the form (and a DAG run's conf) may hold: ``hosts`` only with GPU hosts configured."""
    return [*FIELDS, *([HOSTS_FIELD] if hosts else [])]


def _strings(name: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"field {name!r} must be a list of strings, not {value!r}")
    return tuple(value)


def _text(name: str, value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"field {name!r} must be a string or null, not {value!r}")
    return value or None


def _count(name: str, value: object) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"field {name!r} must be a whole number or null, not {value!r}")
    return value or None


@dataclass(frozen=True)
class TriggerRequest:
    """What one DAG run asks for. ``studies`` None: not given (an Asset-triggered run), the phase's studies;
    ``hosts`` None: the form has no hosts field (no GPU hosts configured), or it was left out."""

    studies: tuple[str, ...] | None = None
    experiment: str | None = None
    overrides: tuple[str, ...] = ()
    sweeps: tuple[str, ...] = ()
    num_samples: int | None = None
    update_asset: bool = False
    folder: str | None = None
    hosts: tuple[str, ...] | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, object] | None, hosts: list[str] | None = None) -> TriggerRequest:
        """Parse a DAG run's params; raise ValueError with one sentence on a key the form (with GPU hosts
        ``hosts`` configured) does not have, or a value of the wrong kind."""
        params = params or {}
        known = form_fields(hosts)
        unknown = sorted(k for k in set(params) - set(known) if not (k == HOSTS_FIELD and params[k] is None))
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))} in the DAG run's conf; the form's "
                             f"fields are: {', '.join(known)}")
        update_asset = params.get("update_asset", False)
        if not isinstance(update_asset, bool):
            raise ValueError(f"field 'update_asset' must be true or false, not {update_asset!r}")
        studies, chosen_hosts = params.get("studies"), params.get(HOSTS_FIELD)
        return cls(
            studies=None if studies is None else _strings("studies", studies),
            experiment=_text("experiment", params.get("experiment")),
            overrides=_strings("overrides", params.get("overrides") or []),
            sweeps=_strings("sweeps", params.get("sweeps") or []),
            num_samples=_count("num_samples", params.get("num_samples")),
            update_asset=update_asset,
            folder=_text("folder", params.get("folder")),
            hosts=None if chosen_hosts is None else _strings(HOSTS_FIELD, chosen_hosts),
        )

    def check_chosen(self) -> None:
        """Refuse a request that chose no study and no experiment (raises ValueError)."""
        if self.studies is not None and not self.studies and not self.experiment:
            raise ValueError("no study chosen: choose at least one of the phase's studies, or set an experiment")

    def chosen_studies(self, phase: Phase) -> list[str]:
        """The studies asked for: those chosen, or the phase's own where none were given."""
        return list(self.studies) if self.studies is not None else list(phase.studies)

    def all_overrides(self) -> list[str]:
        """The overrides and sweeps, and ``num_samples`` as the override it stands for."""
        samples = [f"experiment.test.num_samples={self.num_samples}"] if self.num_samples else []
        return [*self.overrides, *self.sweeps, *samples]

    def not_the_phase(self, phase: Phase, hosts: list[str] | None = None) -> list[str]:
        """How the request differs from ``phase`` as phases.yaml defines it, on GPU hosts ``hosts`` (empty: it is
        the phase; resuming a folder is the phase)."""
        reasons = []
        if hosts and self.hosts is not None and set(self.hosts) != set(hosts):
            reasons.append(f"hosts {', '.join(self.hosts) or 'none'} of {', '.join(hosts)}")
        if self.experiment:
            reasons.append(f"ad-hoc experiment {self.experiment}")
        if self.studies is not None and set(self.studies) != set(phase.studies):
            reasons.append(f"studies {', '.join(self.studies) or 'none'} of {', '.join(phase.studies)}")
        for key, values in (("overrides", self.overrides), ("sweeps", self.sweeps)):
            if values:
                reasons.append(f"{key} {' '.join(values)}")
        if self.num_samples:
            reasons.append(f"num_samples={self.num_samples}")
        return reasons

    def to_json(self) -> dict[str, object]:
        """The request as ``plan.json``'s ``params`` keeps it (the form's keys; ``hosts`` where given)."""
        out: dict[str, object] = {
            "studies": None if self.studies is None else list(self.studies), "experiment": self.experiment,
            "overrides": list(self.overrides), "sweeps": list(self.sweeps), "num_samples": self.num_samples,
            "update_asset": self.update_asset, "folder": self.folder,
        }
        if self.hosts is not None:
            out[HOSTS_FIELD] = list(self.hosts)
        return out
