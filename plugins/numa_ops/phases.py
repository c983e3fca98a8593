"""Phases and their studies (``include/configs/phases.yaml``): every command block of the plan, by name."""

from __future__ import annotations

from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from numa_ops import paths
from numa_ops.config import ConfigError, ExperimentConfig, load_experiment, split_experiment
from numa_ops.hosts import check_host_name


class _Strict(BaseModel):
    """A phases.yaml section: unknown keys refused, immutable once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# a study's GPUs and nodes said as what they are for, resolved on the host it runs on (numa_ops.roles)
Role = Literal["every_gpu", "gpu_local_and_farthest", "gpus_alone_then_pairs", "gpu_paired_with_farthest"]


class Study(_Strict):
    """One command of the plan: an experiment, its overrides and sweeps, and keys to zip."""

    experiment: str
    overrides: list[str] = []
    zip: list[list[str]] = []
    # the hosts of NUMA_LAB_HOSTS this study runs on, each on its own GPUs (empty: every host);
    # without configured hosts there is one host and this is not used
    hosts: list[str] = []
    # instead of fixed GPU ids and nodes in the overrides: a role, resolved on the host (numa_ops.roles)
    role: Role | None = None


class Gate(_Strict):
    """What a phase's runs must meet before its Asset is updated: at most this share of failed or missing runs,
    and comparisons (paired, or local v remote between processes) whose MDE is at most ``max_mde`` (None: no
    MDE check)."""

    max_failure_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    max_mde: Annotated[float, Field(gt=0, lt=1)] | None = None


class Phase(_Strict):
    """One phase DAG."""

    title: str
    goal: str
    question: str
    tags: list[str] = []
    after: list[str] = []
    max_lanes: Annotated[int, Field(ge=1, le=256)] = 4
    # a plan estimated above this many GPU-hours (runs and worker starts) is refused before it starts; None: no limit
    max_gpu_hours: Annotated[float, Field(gt=0)] | None = None
    gate: Gate = Gate()
    studies: dict[str, Study]
    schedule: str | None = None  # a cron expression; phases with one do not wait for Assets
    baseline: str | None = None  # "last_accepted", or a run folder to compare every night with


def load_phases() -> dict[str, Phase]:
    """Every phase, validated; a bad file names the key."""
    with (paths.configs_dir() / "phases.yaml").open() as fh:
        raw = yaml.safe_load(fh)
    try:
        phases = {name: Phase.model_validate(body) for name, body in raw.items()}
    except ValidationError as exc:
        raise ConfigError(f"phases.yaml: {exc}") from None
    for name, phase in phases.items():
        for study_name, study in phase.studies.items():
            for host in study.hosts:
                check_host_name(host, f"phases.yaml: {name}.studies.{study_name}.hosts")
        unknown = [a for a in phase.after if a not in phases]
        if unknown:
            raise ConfigError(f"phases.yaml: {name}.after names unknown phases {unknown}")
    return phases


def study_configs(
    phase: Phase,
    studies: list[str] | None = None,
    extra_overrides: list[str] | None = None,
    experiment: str | None = None,
) -> dict[str, list[ExperimentConfig]]:
    """Sweep points per study; ``experiment`` (with the extra overrides) replaces the studies by one ad-hoc study."""
    extra = list(extra_overrides or [])
    if experiment:
        name, rest = split_experiment(extra, experiment)
        return {"adhoc": load_experiment(name, rest)}
    configs = {}
    for name in chosen_studies(phase, studies):
        if phase.studies[name].role:
            raise ConfigError(f"study {name}: its GPUs and nodes are a role ({phase.studies[name].role}), resolved on "
                              "a host: plan it with numa_ops.roles.resolve_studies")
        configs[name] = load_study(phase, name, extra)
    return configs


def chosen_studies(phase: Phase, studies: list[str] | None) -> list[str]:
    """The studies asked for (all of the phase's by default); an unknown name is refused, naming the phase's."""
    chosen = studies or list(phase.studies)
    unknown = [s for s in chosen if s not in phase.studies]
    if unknown:
        raise ConfigError(f"unknown studies {unknown}; this phase has: {', '.join(phase.studies)}")
    return chosen


def load_study(
    phase: Phase, name: str, extra: list[str], role_overrides: list[str] | None = None
) -> list[ExperimentConfig]:
    """One study's sweep points: its experiment with its overrides, its role's (resolved on the host), then
    ``extra``."""
    study = phase.studies[name]
    try:
        return load_experiment(study.experiment, [*study.overrides, *(role_overrides or []), *extra], study.zip)
    except ConfigError as exc:
        raise ConfigError(f"study {name}: {exc}") from None
