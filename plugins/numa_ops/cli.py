"""The same plan without Airflow: ``python -m numa_ops run experiment=quick_test experiment.test.num_samples=500``;
``where`` the last results are; ``compare`` two sets of run folders; ``predict`` a configuration from this host's
records; ``rerun`` a run in its placement, compared with the original."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from rich.progress import MofNCompleteColumn, Progress

from numa_ops import paths, pipeline, resume_folder
from numa_ops.config import ConfigError
from numa_ops.estimate import OverBudget
from numa_ops.plan import PlanError, count_runs
from numa_ops.resume_folder import FolderRefused
from numa_ops.topology import PlacementError, discover

if TYPE_CHECKING:
    from numa_ops.pipeline import LocationsJson
    from numa_ops.roles import SkippedStudy
    from numa_ops.specs import Lane
    from numa_ops.supervise import LaneOutcome
    from numa_ops.topology import Topology


class UsageError(ValueError):
    """Command-line arguments that cannot be understood."""


class RunArgs(NamedTuple):
    """What ``run`` was asked for: overrides (``experiment=NAME`` among them), the ``--zip`` key groups,
    ``--dry-run`` (print the plan and its estimate, run nothing) and ``--folder NAME`` (the run folder: a new
    name, or an earlier run folder of the same experiment or phase to resume, its finished runs kept)."""

    overrides: list[str]
    zip_keys: list[list[str]]
    dry_run: bool = False
    folder: str | None = None


ZIP_USAGE = "--zip needs two or more keys: --zip KEY1,KEY2"
FOLDER_USAGE = "--folder needs a run folder's name: --folder NAME"
# what refuses a run before anything is measured: exit status 2, the message on stderr
REFUSALS = (UsageError, ConfigError, PlacementError, PlanError, OverBudget, paths.UnsafePathError,
            pipeline.OutputsError, FolderRefused)


def _zip_group(value: str | None) -> list[str]:
    keys = [k.strip() for k in (value or "").split(",") if k.strip()]
    if len(set(keys)) < 2:
        raise UsageError(f"{ZIP_USAGE} (got {value!r})" if value is not None else ZIP_USAGE)
    return keys


def parse_run_args(args: list[str]) -> RunArgs:
    """Split ``run`` arguments into overrides and zip groups; ``-m``/``--multirun`` is accepted (sweeps always expand).

    Raises :class:`UsageError` for a ``--zip`` without two or more keys.
    """
    overrides, zips, dry_run, folder = [], [], False, None
    items = iter(args)
    for arg in items:
        if arg in ("-m", "--multirun"):
            continue
        if arg == "--dry-run":
            dry_run = True
            continue
        if arg == "--folder" or arg.startswith("--folder="):
            folder = next(items, None) if arg == "--folder" else arg.split("=", 1)[1]
            if not folder:
                raise UsageError(FOLDER_USAGE)
        elif arg == "--zip":
            zips.append(_zip_group(next(items, None)))
        elif arg.startswith("--zip="):
            zips.append(_zip_group(arg.split("=", 1)[1]))
        else:
            overrides.append(arg)
    return RunArgs(overrides, zips, dry_run, folder)


def _measure(lanes: list[Lane], folder_path: Path) -> list[LaneOutcome]:
    """Measure every lane, with a progress bar of the runs settled."""
    columns = (*Progress.get_default_columns(), MofNCompleteColumn())
    with Progress(*columns, transient=False) as progress:
        settled = progress.add_task("runs", total=count_runs(lanes))
        return pipeline.run_lanes(
            lanes, folder_path, lanes[0].max_workers,
            log=lambda line: progress.console.print(line, markup=False, highlight=False),
            on_settled=lambda run_id, ok: progress.advance(settled),
        )


def _estimate(lanes: list[Lane], topo: Topology, folder_path: Path | None = None) -> None:
    """Print what the plan will cost (past records where there are some, else the cost model); keep it as
    ``estimate.json`` in ``folder_path`` (the report shows it against what the runs took)."""
    from numa_ops import estimate, results

    cost = estimate.estimate_plan(
        lanes, lanes[0].max_workers, estimate.gpu_names_of(topo), estimate.read_past_records()
    )
    print("\n".join(cost.lines("GPU" if topo.gpus else "CPU")))
    if folder_path is not None:
        results.write_json_atomic(folder_path / "estimate.json", cost.to_json())


def take_phase(args: list[str]) -> tuple[str | None, list[str]]:
    """``--phase NAME`` (or ``--phase=NAME``) out of ``run``'s arguments: the phase's studies instead of an
    experiment."""
    phase, rest = None, []
    items = iter(args)
    for arg in items:
        if arg == "--phase":
            phase = next(items, None)
            if not phase:
                raise UsageError("--phase needs a phase of phases.yaml: --phase NAME")
        elif arg.startswith("--phase="):
            phase = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return phase, rest


def run_phase(name: str, request: RunArgs, topo: Topology) -> int:
    """A phase's studies as phases.yaml defines them, each role resolved on this host (a study it cannot give the
    role of is skipped, saying why), the extra overrides added to every study; measured, or with ``--dry-run``
    planned and estimated only. Over the phase's ``max_gpu_hours``: refused (2)."""
    from numa_ops import estimate, results
    from numa_ops.estimate import model_run_seconds
    from numa_ops.phases import load_phases
    from numa_ops.plan import build_plan
    from numa_ops.roles import resolve_studies

    phases = load_phases()
    if name not in phases:
        raise UsageError(f"unknown phase {name!r}; phases: {', '.join(phases)}")
    if request.zip_keys:
        raise UsageError("--zip is for an experiment's sweeps; a phase's studies zip their keys in phases.yaml")
    phase = phases[name]
    studies = resolve_studies(phase, topo, None, request.overrides)
    configs = studies.runnable(topo.host)
    folder = _folder(request, name) or pipeline.folder_name(name.split("_")[0])
    if request.dry_run:
        lanes = build_plan(folder, configs, topo, run_seconds=model_run_seconds)
        print(f"dry run of {name}: {count_runs(lanes)} runs of {len(configs)} studies on {len(lanes)} lane(s), "
              "nothing is written or run")
        folder_path = None
    else:
        folder_path, lanes = pipeline.write_plan(
            folder, configs, topo, {"phase": name, "overrides": request.overrides, **studies.plan_fields()}
        )
        print(f"plan: {count_runs(lanes)} runs of {len(configs)} studies on {len(lanes)} lane(s) into {folder_path}")
    for lane in lanes:
        print(f"  lane {lane.name}: {len(lane.runs)} runs")
    cost = estimate.estimate_plan(lanes, phase.max_lanes, estimate.gpu_names_of(topo), estimate.read_past_records())
    print("\n".join([*cost.lines("GPU" if topo.gpus else "CPU"), *(f"  {s.line()}" for s in studies.skipped)]))
    estimate.check_budget(cost, phase.max_gpu_hours, name)
    if folder_path is None:
        return 0
    results.write_json_atomic(folder_path / "estimate.json", {**cost.to_json(), "max_gpu_hours": phase.max_gpu_hours,
                                                              **studies.plan_fields()})
    return _measure_and_finish(lanes, folder_path)


def _measure_and_finish(lanes: list[Lane], folder_path: Path, analyse: bool = True) -> int:
    """Measure every lane, then (``analyse``) load DuckDB and write the reports; 1 if any run failed, 128 + the
    signal if stopped."""
    from numa_ops import stopping

    try:
        outcomes = _measure(lanes, folder_path)
    except KeyboardInterrupt as exc:
        stopped = stopping.of(exc)
        print(f"{stopped.reason}: every worker ended, the runs not finished are recorded as killed and finished runs "
              f"are kept; to go on, run the same command with --folder {folder_path.name}", file=sys.stderr)
        return 128 + stopped.signum
    if analyse:
        pipeline.summarize_and_load(folder_path)
        print(json.dumps(pipeline.write_reports(folder_path), indent=2))
    return 1 if any(o.failed for o in outcomes) else 0


def dry_run(request: RunArgs, topo: Topology) -> int:
    """Plan without writing or running anything; print the lanes and the estimate."""
    from numa_ops.config import load_experiment, split_experiment
    from numa_ops.estimate import model_run_seconds
    from numa_ops.plan import build_plan

    experiment, overrides = split_experiment(list(request.overrides), "")
    configs = load_experiment(experiment, overrides, request.zip_keys)
    lanes = build_plan(pipeline.folder_name(experiment), {"main": configs}, topo, run_seconds=model_run_seconds)
    print(f"dry run: {count_runs(lanes)} runs on {len(lanes)} lane(s), nothing is written or run")
    for lane in lanes:
        print(f"  lane {lane.name}: {len(lane.runs)} runs")
    _estimate(lanes, topo)
    return 0


def _folder(request: RunArgs, phase: str | None) -> str | None:
    """``--folder NAME`` checked: a free name, or a run folder of this phase (of no phase: an experiment's) to
    resume; raises :class:`FolderRefused` otherwise. None without ``--folder``."""
    if request.folder is not None:
        resume_folder.check(request.folder, phase)
    return request.folder


def run(args: list[str], analyse: bool = True) -> int:
    """Plan, measure every lane, load DuckDB and write the reports; 0 if every run succeeded, 2 if refused.
    With ``--dry-run``: the plan and its estimate only; not ``analyse``: the records only (the two-node guest
    measures, its host loads and reports)."""
    try:
        phase, args = take_phase(args)
        request = parse_run_args(args)
        topo = discover()
        if phase:
            return run_phase(phase, request, topo)
        if request.dry_run:
            return dry_run(request, topo)
        folder_path, lanes = pipeline.prepare("", request.overrides, topo, folder=_folder(request, None),
                                              zip_keys=request.zip_keys)
    except REFUSALS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"plan: {count_runs(lanes)} runs on {len(lanes)} lane(s) into {folder_path}")
    _estimate(lanes, topo, folder_path)
    return _measure_and_finish(lanes, folder_path, analyse)


def where(airflow_rc: int | None) -> int:
    """Print where the last phase run's results are; non-zero if it did not complete cleanly."""
    from numa_ops.gate import GateVerdict

    latest = paths.outputs_dir() / pipeline.LATEST
    if not latest.is_file():
        print(f"error: no results: {latest} was not written (see the Airflow output above)", file=sys.stderr)
        return airflow_rc or 1
    info: LocationsJson = json.loads(latest.read_text())
    if "folders" not in info:
        print(f"error: {latest} is from an older numa-lab; run the phase again", file=sys.stderr)
        return airflow_rc or 1
    summary, folders = info["summary"], list(info["folders"].values())
    print("\nnuma-lab results")
    for key in pipeline.FOLDER_FILES[:3]:
        for folder in folders:  # one line per run folder (one per GPU host)
            print(f"  {key:24} {folder[key]}")
    print(f"  {'duckdb':24} {info['duckdb']}")
    for folder in folders:
        print(f"  {'report':24} {folder['report']}")
    print(f"  {'report_all_runs':24} {info['report_all_runs']}")
    print(f"  runs: {summary['successful_runs']} succeeded, {summary['failed_runs']} failed, "
          f"{summary['missing_runs']} missing of {summary['planned_runs']} planned")
    for folder in folders:
        for skipped in _skipped_in(Path(folder["experiment_summary_json"])):
            print(f"  {skipped.line()}")
    print("\nTry:")
    results_json = [folder["results_json"] for folder in folders]
    print(f"  jq '.[] | {{run_id, duration, success, gpu_id, numa_node}}' {' '.join(results_json)}")
    print(f"  {sys.executable} -c \"import duckdb; print(duckdb.connect('{info['duckdb']}', read_only=True)"
          ".sql('select model_name, lane, samples_per_s from runs order by finished_at desc limit 10'))\"")
    failed = summary["failed_runs"] or summary["missing_runs"]
    gates = [GateVerdict.from_json(json.loads(p.read_text()))
             for p in (Path(r).parent / "gate.json" for r in results_json) if p.is_file()]
    for verdict in gates:  # the last thing said: the gate's verdict, in one sentence
        print(f"\n{verdict.said()}")
    gate_failed = any(not v.passed for v in gates)
    return 1 if failed or airflow_rc or gate_failed else 0


def compare(baseline: list[str], candidate: list[str], as_json: bool, tolerance: float) -> int:
    """Compare candidate run folders with baseline ones (:mod:`numa_ops.compare`); 1 if anything regressed, 2 if
    a folder cannot be read."""
    from numa_ops import compare as comparing

    try:
        rows = comparing.compare_folders([Path(p) for p in baseline], [Path(p) for p in candidate], tolerance)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps([row.to_json() for row in rows], indent=2))
    else:
        for row in rows:
            print(comparing.line(row))
        counted = {v: sum(r.verdict == v for r in rows) for v in dict.fromkeys(r.verdict for r in rows)}
        family = next((r.family for r in rows if r.family), 0)
        print(f"{len(rows)} configuration(s): " + ", ".join(f"{n} {v}" for v, n in counted.items())
              + (f" (95% intervals together over {family}, Bonferroni; tolerance ±{tolerance:.1%})" if family else ""))
    return 1 if any(r.verdict == comparing.REGRESSION for r in rows) else 0


def rerun(run_id: str, repeats: int | None, as_json: bool) -> int:
    """Measure ``run_id`` again in its placement on this host (:mod:`numa_ops.rerun`) and compare the rerun with the
    original as the nightly does: 1 if a run failed or the rerun is slower beyond the interval, 2 if refused."""
    from numa_ops import compare as comparing
    from numa_ops import rerun as reruns
    from numa_ops import results

    try:
        plan = reruns.plan_rerun(run_id, discover(), repeats)
    except (*REFUSALS, reruns.RerunError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in reruns.before_measuring(plan):
        print(f"note: {line}")
    print(f"rerun of {run_id}: {count_runs(plan.lanes)} run(s) on {len(plan.lanes)} lane(s) into {plan.folder_path}")
    failed = _measure_and_finish(plan.lanes, plan.folder_path)
    result = reruns.compare_with_original(plan)
    results.write_json_atomic(plan.folder_path / "rerun.json", {"rerun_of": run_id, **result.to_json()})
    if as_json:
        print(json.dumps({"folder": str(plan.folder_path), **result.to_json()}, indent=2))
    else:
        for line in result.differences:
            print(f"note: {line}")
        for row in result.rows:
            print(comparing.line(row))
    return 1 if failed or any(r.verdict == comparing.REGRESSION for r in result.rows) else 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    """``predict``'s arguments: the configuration, and where its laws come from."""
    p = sub.add_parser(
        "predict", help="predict a configuration's samples/s, stages and regime from this host's records"
    )
    for name in ("depth", "dim", "heads", "mlp-dim", "patch", "image", "batch"):
        p.add_argument(f"--{name}", type=int, required=True)
    p.add_argument(
        "--execution", default="eager", choices=["eager", "cuda_graph", "compile", "compile_reduce_overhead"]
    )
    p.add_argument("--host-memory", default="pinned", choices=["pinned", "pageable"])
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--host", default=None, help="the host whose records to fit (default: this one)")
    p.add_argument("--machine", default=None, help="its GPU model, or cpu (default: the one with most records)")
    p.add_argument("--database", type=Path, default=None, help="the DuckDB file (default: outputs/numa_lab.duckdb)")
    p.add_argument("--extrapolate", action="store_true", help="predict even far outside the measured range")
    p.add_argument("--json", action="store_true", help="print the prediction as JSON")


def predict(args: argparse.Namespace) -> int:
    """Print the prediction (:mod:`numa_ops.predict`); 2 if it cannot be made (no records, outside their range)."""
    from numa_ops import db
    from numa_ops.db.prediction_points import read_points
    from numa_ops.predict import NoLaw, Query
    from numa_ops.predict import predict as predicting

    try:
        query = Query(depth=args.depth, dim=args.dim, heads=args.heads, mlp_dim=args.mlp_dim, patch=args.patch,
                      image=args.image, batch=args.batch, execution=args.execution, host_memory=args.host_memory,
                      num_classes=args.num_classes)
        database = args.database or db.db_path()
        if not database.is_file():
            raise NoLaw(f"no database at {database}: measure a sweep first (./numa-lab run ...)")
        got = predicting(read_points(database), query, args.host, args.machine, args.extrapolate)
    except (ValueError, db.StoreBusyError) as exc:  # NoLaw, OutsideRange and a bad query are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(got.to_json(), indent=2) if args.json else "\n".join(got.lines()))
    return 0


def _tolerance(value: str) -> float:
    number = float(value)
    if not 0 <= number < 1:
        raise argparse.ArgumentTypeError(f"the tolerance is a fraction in [0, 1), e.g. 0.02 (got {value})")
    return number
def _skipped_in(summary_file: Path) -> list[SkippedStudy]:
    """The studies a run folder's summary says its host skipped."""
    from numa_ops.roles import SkippedStudy

    if not summary_file.is_file():
        return []
    return [SkippedStudy(**s) for s in json.loads(summary_file.read_text()).get("skipped_studies") or []]


def main(argv: list[str] | None = None) -> int:
    """``python -m numa_ops run ...``, ``where``, ``compare ...``, ``predict ...`` or ``rerun RUN_ID``; the exit
    status."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run"] and argv[1:] and argv[1] not in ("-h", "--help"):
        return run(argv[1:])  # the plan's own grammar, -m and --zip included: not argparse's
    parser = argparse.ArgumentParser(prog="python -m numa_ops")
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="run an experiment without Airflow")
    run_parser.add_argument(
        "overrides", nargs=argparse.REMAINDER,
        help="[-m] experiment=NAME and overrides, e.g. experiment.test.batch_size=4,8 [--zip KEY1,KEY2]; or "
        "--phase NAME [overrides]: a phase's studies; --dry-run: the plan and its estimate only; --folder NAME: "
        "the run folder (an earlier one of the same experiment or phase resumes, its finished runs kept)",
    )
    where_parser = sub.add_parser("where", help="where the last phase run's results are")
    where_parser.add_argument("--airflow-rc", type=int, default=None)
    compare_parser = sub.add_parser(
        "compare", help="compare candidate run folders with baseline ones, per configuration"
    )
    compare_parser.add_argument("--baseline", nargs="+", required=True, metavar="DIR", help="baseline run folder(s)")
    compare_parser.add_argument("--candidate", nargs="+", required=True, metavar="DIR", help="candidate run folder(s)")
    compare_parser.add_argument("--json", action="store_true", help="print a JSON list, one object per configuration")
    compare_parser.add_argument("--tolerance", type=_tolerance, default=0.02,
                                help="a change within ±this fraction is 'no change' (default 0.02)")
    rerun_parser = sub.add_parser("rerun", help="measure a run again in its placement, and compare with the original")
    rerun_parser.add_argument("run_id", help="the run_id of the run to measure again (its record under outputs/)")
    rerun_parser.add_argument("--repeats", type=int, default=None,
                              help="worker processes to measure it with (default: as many as the original's)")
    rerun_parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    _add_predict(sub)
    args = parser.parse_args(argv)
    if args.command == "rerun":
        return rerun(args.run_id, args.repeats, args.json)
    if args.command == "predict":
        return predict(args)
    if args.command == "run":
        return run(args.overrides)
    if args.command == "compare":
        return compare(args.baseline, args.candidate, args.json, args.tolerance)
    return where(args.airflow_rc)
