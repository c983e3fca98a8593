"""Run phases' studies on this host without Airflow (plan -> lanes -> records), as their DAGs would,
and tar the run folders so the DuckDB load and the report can be built on another machine.

Usage: ``python bench/phase_runs.py phase1_framework_validation phase3_scaling [--extra OVERRIDE ...] [--out DIR]``.
Prints one line per phase and one per run.
"""

from __future__ import annotations

import argparse
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))


def _ms(metrics: dict, key: str) -> str:
    median = (metrics.get(key) or {}).get("median")
    return "-" if median is None else f"{median:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("phases", nargs="+")
    parser.add_argument("--extra", nargs="*", default=[], help="overrides added to every study")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from numa_ops import pipeline, results
    from numa_ops.phases import load_phases
    from numa_ops.plan import count_runs
    from numa_ops.roles import resolve_studies
    from numa_ops.topology import discover

    topo, phases, folders = discover(), load_phases(), []
    for name in args.phases:
        studies = resolve_studies(phases[name], topo, None, args.extra)
        for skipped in studies.skipped:
            print(skipped.line())
        folder = pipeline.folder_name(name.split("_")[0])
        folder_path, lanes = pipeline.write_plan(folder, studies.configs, topo,
                                                 {"phase": name, "extra": args.extra, **studies.plan_fields()})
        folders.append(folder_path)
        t0 = time.perf_counter()
        pipeline.run_lanes(lanes, folder_path, max_workers=len(lanes), log=lambda _: None)
        summary = results.finalize(folder_path)
        print(f"## {name}: {count_runs(lanes)} runs on {len(lanes)} lanes in {time.perf_counter() - t0:.1f} s: "
              f"{summary['successful_runs']} ok, {summary['failed_runs']} failed")
        records = [r.to_json() for r in results.collect(folder_path)]  # validated, printed as their JSON
        for rec in sorted(records, key=lambda r: (r["study"], r["sweep_point"], r["lane"])):
            m = {k: v for k, v in (rec.get("metrics") or {}).items() if v is not None}
            model = rec["model"]
            print(f"{rec['study']:<22} p{rec['sweep_point']:<2} {rec['lane']:<16} "
                  f"d{model['depth']:<2} dim{model['dim']:<5} "
                  f"ok={rec['success']} samples/s={m.get('samples_per_s') or 0:9.1f} h2d={_ms(m, 'h2d_ms')} "
                  f"fwd={_ms(m, 'forward_ms')} d2h={_ms(m, 'd2h_ms')} ms "
                  f"regime={m.get('regime')} {'' if rec['success'] else rec.get('error')}")
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            with tarfile.open(args.out / f"{folder_path.name}.tar.gz", "w:gz") as tar:
                tar.add(folder_path, arcname=folder_path.name, filter=lambda t: None if "/lanes/" in t.name else t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
