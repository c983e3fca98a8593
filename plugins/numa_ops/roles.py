"""Hardware roles: a study's GPUs and NUMA nodes said as what they are for, resolved on the host at hand.

The research plan writes its hardware for its own 4-GPU, 4-node host (``gpu_ids=[0,3]``,
``numa_nodes=[0,2,3]``). A study of ``phases.yaml`` names a role instead (``role: every_gpu``); on the host
the role becomes the overrides that say it there, or the reason this host cannot give it, and the study
is then skipped with that reason rather than refused. A role needs all of what it names: a host that can
give only part of it (one GPU alone, no pair) skips the study, since the part alone would answer nothing
the phase's other studies do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict

from numa_ops.config import ExperimentConfig, load_experiment, split_experiment
from numa_ops.overrides import OverrideError, parse_overrides
from numa_ops.phases import Phase, Role, chosen_studies, load_study
from numa_ops.plan import PlanError
from numa_ops.topology import Topology

MEANING: dict[str, str] = {
    "every_gpu": "every GPU",
    "gpu_local_and_farthest": "each GPU with its own node and its farthest node",
    "gpus_alone_then_pairs": "every GPU alone, then the first GPU paired with each other",
    "gpu_paired_with_farthest": "each GPU's own node paired with its farthest node in one worker",
}
# the hardware keys a role sets: an override of any of them replaces the role (the trigger names its own hardware)
ROLE_KEYS = (("hardware", "gpu_ids"), ("hardware", "numa_nodes"))


class RoleUnavailable(Exception):
    """This host cannot give a role; the message says why."""


class StudyRoleJson(TypedDict):
    """What a study's role became on this host (``plan.json``'s ``roles``): the role and its overrides."""

    role: str
    overrides: list[str]


class PlanStudiesJson(TypedDict):
    """What ``plan.json`` keeps of a trigger's studies on one host (:meth:`Studies.plan_fields`)."""

    skipped_studies: list[SkippedStudyJson]
    roles: dict[str, StudyRoleJson]


class SkippedStudyJson(TypedDict):
    """A :class:`SkippedStudy` as JSON (an item of ``skipped_studies``)."""

    study: str
    role: str
    reason: str


@dataclass(frozen=True)
class SkippedStudy:
    """A study this host cannot run as defined, and why (``plan.json``'s and the summary's ``skipped_studies``)."""

    study: str
    role: str
    reason: str

    def to_json(self) -> SkippedStudyJson:
        return SkippedStudyJson(study=self.study, role=self.role, reason=self.reason)

    @classmethod
    def from_json(cls, data: SkippedStudyJson) -> SkippedStudy:
        return cls(study=data["study"], role=data["role"], reason=data["reason"])

    def line(self) -> str:
        return f"study {self.study} ({MEANING.get(self.role, self.role)}) skipped: {self.reason}"


def _gpu_list(ids: list[int]) -> str:
    return "[" + ",".join(map(str, ids)) + "]"


def _gpus(topo: Topology, need: int, what: str) -> list[int]:
    ids = [g.index for g in topo.gpus]
    if len(ids) < need:
        have = f"{len(ids)} GPU" + ("" if len(ids) == 1 else "s") if ids else "no GPU"
        raise RoleUnavailable(f"{topo.host} has {have}: {what}")
    return ids


def resolve(role: Role, topo: Topology) -> list[str]:
    """The overrides that give ``role`` on ``topo``; raises :class:`RoleUnavailable` with the reason it cannot."""
    if role == "every_gpu":
        ids = _gpus(topo, 1, "the phase's other studies run on the CPU")
        return [f"experiment.hardware.gpu_ids={_gpu_list(ids)}"]
    if role == "gpus_alone_then_pairs":
        ids = _gpus(topo, 2, "a pair needs two")
        sets = [f"[{i}]" for i in ids] + [f"[{ids[0]},{i}]" for i in ids[1:]]
        return [f'experiment.hardware.gpu_ids="{",".join(sets)}"']
    if role in ("gpu_local_and_farthest", "gpu_paired_with_farthest"):
        ids = _gpus(topo, 1, "on the CPU no node is remote")
        if len(topo.nodes) < 2:
            raise RoleUnavailable(
                f"{topo.host} has one NUMA node (node {topo.node_ids[0]}): no remote placement exists"
            )
        unknown = [g.index for g in topo.gpus if g.numa_node is None]
        if unknown:
            raise RoleUnavailable(
                f"GPU {unknown} on {topo.host} does not report its NUMA node, so its own node and its "
                "farthest are unknown"
            )
        if role == "gpu_paired_with_farthest":  # placement=paired: arms on the GPU's own node and on this one
            return [f"experiment.hardware.gpu_ids={_gpu_list(ids)}", "experiment.hardware.numa_nodes=remote"]
        return [f"experiment.hardware.gpu_ids={_gpu_list(ids)}", "experiment.hardware.numa_nodes=local,remote"]
    raise ValueError(f"unknown role {role!r}; roles: {', '.join(MEANING)}")


def replaced_by(extra_overrides: list[str]) -> bool:
    """Whether ``extra_overrides`` name the hardware themselves (then the trigger's hardware, not the role, holds,
    and the planner refuses a GPU or node the host does not have)."""
    try:
        parsed = parse_overrides(list(extra_overrides))
    except OverrideError:
        return False  # the experiment's loading says what is wrong with it
    return any(o.path in ROLE_KEYS for o in parsed)


@dataclass(frozen=True)
class Studies:
    """A trigger's studies on one host: each runnable study's sweep points, the studies this host cannot give the
    role of (with why), and what each role became here."""

    configs: dict[str, list[ExperimentConfig]]
    skipped: list[SkippedStudy] = field(default_factory=list)
    roles: dict[str, StudyRoleJson] = field(default_factory=dict)

    def runnable(self, host: str) -> dict[str, list[ExperimentConfig]]:
        """The runnable studies' sweep points; a :class:`PlanError` with every reason when this host can run none."""
        if not self.configs:
            raise PlanError(f"no chosen study can run on {host}: " + "; ".join(s.line() for s in self.skipped))
        return self.configs

    def plan_fields(self) -> PlanStudiesJson:
        """What ``plan.json`` keeps of them: ``skipped_studies`` (study, role, reason) and ``roles`` (study -> role
        and the overrides it became on this host)."""
        return PlanStudiesJson(skipped_studies=[s.to_json() for s in self.skipped], roles=self.roles)


def resolve_studies(
    phase: Phase,
    topology: Topology,
    studies: list[str] | None = None,
    extra_overrides: list[str] | None = None,
    experiment: str | None = None,
) -> Studies:
    """Sweep points per study, each study's role resolved on ``topology``; a study whose role the host cannot give
    is skipped with the reason. ``experiment`` (with the extra overrides) replaces the studies by one ad-hoc study,
    and extra overrides that name the GPUs or nodes replace the roles: the planner then refuses what the host lacks."""
    extra = list(extra_overrides or [])
    if experiment:
        name, rest = split_experiment(extra, experiment)
        return Studies({"adhoc": load_experiment(name, rest)})
    configs: dict[str, list[ExperimentConfig]] = {}
    skipped: list[SkippedStudy] = []
    roles: dict[str, StudyRoleJson] = {}
    own_hardware = replaced_by(extra)
    for name in chosen_studies(phase, studies):
        role = phase.studies[name].role
        overrides: list[str] = []
        if role and not own_hardware:
            try:
                overrides = resolve(role, topology)
            except RoleUnavailable as exc:
                skipped.append(SkippedStudy(name, role, str(exc)))
                continue
            roles[name] = StudyRoleJson(role=role, overrides=overrides)
        configs[name] = load_study(phase, name, extra, overrides)
    return Studies(configs, skipped, roles)
