"""The trigger form's own check of an override or sweep: what the planner would refuse without the host.

Airflow validates a DAG run's conf against each Param's JSON schema before it creates the run, in the
API server (the UI's form and the REST API post there). Each override and sweep item carries
``"format": "numa-lab-override"``; ``register()`` makes that format known to jsonschema in the process.
The Airflow plugin ``plugins/numa_lab_trigger_form.py`` calls it in the API server alone; the DAG files do
not, so a run started without the API (``airflow dags test``, the quick start) reaches ``plan_runs``, which
refuses the same override with the same message and fails the run. The check parses
the override with the planner's grammar and applies it to an experiment, as the planner does; a refusal
raises a ``ValidationError`` holding just the planner's message, which jsonschema lets through (no
``raises`` is declared, so it is not turned into "is not a 'numa-lab-override'") and the API answers
``400 Invalid input for param overrides: <the message>``. Where the format is not registered, jsonschema
ignores it. Host-dependent refusals (a GPU or NUMA node the host lacks) are left to ``plan_runs``.
"""

from __future__ import annotations

from jsonschema import FormatChecker, ValidationError

FORMAT = "numa-lab-override"
COUNT_FORMAT = "numa-lab-num-samples"  # a whole number in range, refused in one sentence (no schema dump)
STUDIES_FORMAT = "numa-lab-studies"  # + ":<dag_id>": an unknown study named in one sentence, with the known ones
FOLDER_FORMAT = "numa-lab-folder"  # + ":<dag_id>": the resume folder, checked against outputs/ (numa_ops.resume_folder)
BASE_EXPERIMENT = "quick_test"  # what an override is tried on when the form does not say


def check_override(value: object) -> bool:
    """True if the planner accepts ``value`` alone; raises a ValidationError with the planner's message if not."""
    from numa_ops.config import available_experiments, load_experiment, split_experiment

    if not isinstance(value, str):
        return True  # the schema's "type" refuses it
    available = available_experiments()
    base = BASE_EXPERIMENT if BASE_EXPERIMENT in available else (available or [None])[0]
    try:
        name, rest = split_experiment([value], base)
        load_experiment(name, rest)
    except ValueError as exc:  # the planner's message, as the whole of the validation error
        if not _across_settings(value, str(exc)):
            raise ValidationError(str(exc)) from None
    return True


def _across_settings(value: str, message: str) -> bool:
    """True when every part of the planner's message is about a section above the override's key (a check
    across settings, e.g. ``max_trial_time_s`` below ``timeout_s``): alone, on an experiment that is not the
    run's and without the form's other overrides, that says nothing; ``plan_runs`` checks the whole."""
    key = value.split("=", 1)[0].strip()
    locations = [part.split(": ", 1)[0] for part in message.split("; ")]
    return all(key.startswith(loc + ".") or key.startswith(loc + "[") for loc in locations)


def check_num_samples(value: object) -> bool:
    """True for a whole number within the experiment model's bounds of ``num_samples`` (None and other types: the
    schema's "type" decides); a ValidationError with one sentence otherwise."""
    from numa_ops.trigger_params import MAX_NUM_SAMPLES, MIN_NUM_SAMPLES

    if isinstance(value, int | float) and not isinstance(value, bool):
        if value != int(value) or not MIN_NUM_SAMPLES <= value <= MAX_NUM_SAMPLES:
            raise ValidationError(f"num_samples must be a whole number from {MIN_NUM_SAMPLES:,} to "
                                  f"{MAX_NUM_SAMPLES:,} (got {value}); it is refused, not rounded or clamped")
    return True


def studies_checker(known: list[str]):
    """The check of a phase's ``studies``: each must be one of ``known``."""

    def check_studies(value: object) -> bool:
        unknown = [s for s in value if s not in known] if isinstance(value, list) else []
        if unknown:
            raise ValidationError(f"unknown stud{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))}; "
                                  f"this phase's studies are: {', '.join(known)}")
        return True

    return check_studies


def folder_format(dag_id: str) -> str:
    return f"{FOLDER_FORMAT}:{dag_id}"


def folder_checker(dag_id: str, hosts: list[str]):
    """The check of phase ``dag_id``'s resume folder: a ValidationError with the refusal's sentence."""
    from numa_ops.resume_folder import check

    def check_folder(value: object) -> bool:
        if isinstance(value, str):
            try:
                check(value, dag_id, hosts)
            except ValueError as exc:
                raise ValidationError(str(exc)) from None
        return True

    return check_folder


def register() -> None:
    """Make ``format: numa-lab-override`` and each phase's ``numa-lab-folder:<dag_id>`` known to every
    jsonschema FormatChecker made from now on."""
    from numa_ops.hosts import configured_hosts
    from numa_ops.phases import load_phases

    FormatChecker.checkers[FORMAT] = (check_override, ())
    FormatChecker.checkers[COUNT_FORMAT] = (check_num_samples, ())
    hosts = configured_hosts()
    for dag_id, phase in load_phases().items():
        FormatChecker.checkers[folder_format(dag_id)] = (folder_checker(dag_id, hosts), ())
        FormatChecker.checkers[f"{STUDIES_FORMAT}:{dag_id}"] = (studies_checker(list(phase.studies)), ())

