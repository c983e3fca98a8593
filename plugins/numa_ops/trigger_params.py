"""The trigger form of a phase DAG: one Airflow Param per field, with the JSON schema that refuses bad values.

Each override and sweep carries the ``numa-lab-override`` format (:mod:`numa_ops.trigger_form`), which the
API server checks with the planner's own grammar where the Airflow plugin registers it.
"""

from __future__ import annotations

from typing import TypedDict

from airflow.sdk import Param

from numa_ops.config import TestConfig, available_experiments, field_bounds
from numa_ops.paths import SAFE_NAME_PATTERN
from numa_ops.phases import Phase
from numa_ops.trigger_form import COUNT_FORMAT, STUDIES_FORMAT, folder_format
from numa_ops.trigger_form import FORMAT as OVERRIDE_FORMAT

# Overrides never reach a shell (argv lists only); shell characters are refused anyway. Plain spaces
# are allowed, as the override grammar allows them inside lists and mappings: [{name: t, depth: 2}].
OVERRIDE_PATTERN = r"^experiment(\.|\[|=)[^\t\n\r\f\v;&|`$<>]*$"
FOLDER_PATTERN = SAFE_NAME_PATTERN
MIN_NUM_SAMPLES, MAX_NUM_SAMPLES = (int(b) for b in field_bounds(TestConfig, "num_samples"))  # type: ignore[arg-type]


class TriggerParams(TypedDict, total=False):
    """A phase DAG run's params, as the form (:func:`phase_params`) sends them; ``hosts`` only with GPU hosts
    configured (None: a DAG run triggered without the form's field). Unknown keys are refused by
    :class:`numa_ops.trigger_request.TriggerRequest`."""

    studies: list[str]
    experiment: str | None
    overrides: list[str]
    sweeps: list[str]
    num_samples: int | None
    update_asset: bool
    folder: str | None
    hosts: list[str] | None


def phase_params(phase: Phase, hosts: list[str] | None = None, dag_id: str | None = None) -> dict[str, Param]:
    """The form's fields for ``phase``; with GPU hosts configured, a ``hosts`` field to choose among them.

    ``num_samples`` keeps its range in ``allOf``, where the browser's number field does not see it: that
    field would otherwise clamp -5 to 1 and run it; here the API server refuses it with the range (in one
    sentence where the ``numa-lab-num-samples`` format is registered).
    With ``dag_id``, the resume ``folder`` is checked against outputs/ where the format is registered."""
    # format first: the planner's own message for what it refuses without the host (numa_ops.trigger_form)
    override = {"type": "string", "format": OVERRIDE_FORMAT, "pattern": OVERRIDE_PATTERN, "maxLength": 500}
    params = {
        "studies": Param(
            list(phase.studies),
            **({"format": f"{STUDIES_FORMAT}:{dag_id}"} if dag_id else {}),  # first: its sentence, not the enum's
            type="array",
            items={"type": "string", "enum": list(phase.studies)},
            uniqueItems=True,
            title="Studies",
            description="Which of the phase's studies (the plan's commands) to run: at least one, unless an "
            "experiment is set below.",
        ),
        "experiment": Param(
            None,
            type=["null", "string"],
            enum=[None, *available_experiments()],
            title="Experiment (ad hoc)",
            description="If set, run this experiment with the overrides below instead of the studies.",
        ),
        "overrides": Param(
            [], type="array", items=override, maxItems=64, title="Overrides",
            description="One per line, e.g. experiment.hardware.gpu_ids=[0,3]; added to every study.",
        ),
        "sweeps": Param(
            [], type="array", items=override, maxItems=16, title="Sweeps",
            description="e.g. experiment.test.batch_size=4,8,16,32 (cartesian over keys).",
        ),
        "num_samples": Param(
            None, type=["null", "integer"], format=COUNT_FORMAT,
            allOf=[{"minimum": MIN_NUM_SAMPLES, "maximum": MAX_NUM_SAMPLES}],
            title="num_samples",
            description="Shortcut for experiment.test.num_samples: a whole number from "
            f"{MIN_NUM_SAMPLES:,} to {MAX_NUM_SAMPLES:,}.",
        ),
        "update_asset": Param(
            False, type="boolean", title="Update the phase's Asset",
            description="Only a run of the phase as defined (all its studies, no experiment, overrides, sweeps or "
            "num_samples) updates its Asset, which starts the phases after it; tick this to update it anyway.",
        ),
        "folder": Param(
            None, type=["null", "string"], pattern=FOLDER_PATTERN, title="Resume folder",
            description="Re-use this run folder of this phase (runs already complete there are skipped), or name "
            "a new one; names outputs/ already holds otherwise (report, numa_lab.duckdb, ...) are refused.",
            **({"format": folder_format(dag_id)} if dag_id else {}),
        ),
    }
    if hosts:
        params["hosts"] = _hosts_param(hosts)
        params["folder"].description = ("Re-use the run folders <folder>_<host>: runs already complete there "
                                        "are skipped.")
    return params


def _hosts_param(hosts: list[str]) -> Param:
    """The form's choice among the GPU hosts configured (every one by default)."""
    return Param(
        list(hosts), type="array", items={"type": "string", "enum": list(hosts)}, uniqueItems=True,
        title="Hosts", description="GPU hosts to run on (each measures on its own GPUs, into <folder>_<host>).",
    )
