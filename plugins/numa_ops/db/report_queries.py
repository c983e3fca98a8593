"""The report's queries: what one report reads, over one run folder's runs or all of them.

Each query reads ``runs`` and the base views by name and is scoped by ``views.scoped``, so a folder's
report sees only that folder's runs; ``read_report_frames`` runs them all on one connection.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from numa_ops.db.connection import table_exists
from numa_ops.db.prediction_points import POINTS
from numa_ops.db.views import SETTINGS, SWEEP, VIEWS, scoped

# What may still differ between the runs of one lane's row (then the row says so): where they ran, never a test
# setting (views.SETTINGS, by which a row is grouped).
UNGROUPED_SETTINGS = {"gpu_name": "GPU model", "torch_version": "torch version", "driver": "driver"}

_MIXED = ", ".join(f"CASE WHEN count(DISTINCT {col}) FILTER (WHERE success) > 1 THEN '{words}' END"
                   for col, words in UNGROUPED_SETTINGS.items())
_LANE_SETTINGS = ", ".join(
    c for c in SETTINGS if c not in ("model_name", "depth", "dim", "height", "batch_size", "execution", "pinned_memory")
)

# One row per experiment x configuration (every test setting, the sweep point) x lane x placement: the lane is the
# placement's name without its repeat (``gpu0-cpu1-mem1-r2`` is a repeat of ``gpu0-cpu1-mem1``), so a placement's
# repeats are one row of several worker processes, whose interval is the one between them (analysis.lane_intervals');
# each process's headline, its trials, the stage medians, and what may still differ between them.
LANES = f"""
SELECT experiment, model_name, depth, dim, height AS image, batch_size, execution,
       pinned_memory,
       regexp_replace(lane, '-r[0-9]+$', '') AS lane, device, placement, placement_mode, {_LANE_SETTINGS}, study,
           sweep_point,
       count(DISTINCT lane) AS repeat_lanes,
       any_value(gpu_name) AS gpu_name,
       mode(regime) FILTER (WHERE success) AS regime,
       count(*) AS runs,
       count(*) FILTER (WHERE success) AS ok_runs,
       coalesce(sum(trials) FILTER (WHERE success), 0) AS trials,
       list(samples_per_s ORDER BY samples_per_s) FILTER (WHERE success AND samples_per_s > 0) AS process_rates,
       min(samples_per_s_ci_low) FILTER (WHERE success) AS run_ci_low,
       max(samples_per_s_ci_high) FILTER (WHERE success) AS run_ci_high,
       median(samples_per_s) FILTER (WHERE success) AS samples_per_s,
       median(h2d_ms_median) FILTER (WHERE success) AS h2d_ms,
       median(forward_ms_median) FILTER (WHERE success) AS forward_ms,
       median(d2h_ms_median) FILTER (WHERE success) AS d2h_ms,
       median(h2d_gbps) FILTER (WHERE success) AS h2d_gbps,
       median(pipelined_samples_per_s) FILTER (WHERE success) AS pipelined_samples_per_s,
       median(ideal_samples_per_s) FILTER (WHERE success) AS ideal_samples_per_s,
       median(fwd_gpu_ms) FILTER (WHERE success) AS fwd_gpu_ms,
       median(launch_overhead_share) FILTER (WHERE success) AS launch_overhead_share,
       median(flops_per_sample) FILTER (WHERE success) AS flops_per_sample,
       array_to_string(list_filter([{_MIXED}], lambda x: x IS NOT NULL), ', ') AS mixed_settings
FROM filled_runs
GROUP BY ALL
ORDER BY experiment, depth, dim, model_name, image, batch_size, execution, pinned_memory DESC, d2h_mode, memory_size_mb,
    num_samples,
         sweep_point, lane, placement_mode
"""

FAILURES = "SELECT run_id, lane, model_name, error FROM runs WHERE NOT success ORDER BY run_id"

# The run folders' wall clock and the seconds their runs took (for estimate against actual).
ACTUAL_TIME = """
SELECT count(*) AS runs, sum(duration_s) AS run_seconds,
    sum(duration_s) FILTER (WHERE device = 'cuda') AS gpu_run_seconds,
       epoch(max(finished_at)) - epoch(min(started_at)) AS wall_seconds
FROM runs
"""

TRANSFER = """
SELECT model_name, height AS image, batch_size, pinned_memory,
       median(h2d_gbps) AS h2d_gbps, median(d2h_bytes_per_batch / batch_size) AS d2h_bytes_per_sample,
       median(h2d_bytes_per_batch / batch_size) AS h2d_bytes_per_sample, count(*) AS processes,
       coalesce(sum(trials), 0) AS trials
FROM gpu_runs GROUP BY ALL ORDER BY model_name, image
"""

COMPILE = f"""
SELECT model_name, execution, median(forward_speedup) AS speedup, sum(runs) AS processes
FROM ({VIEWS['compile_speedup']}) WHERE forward_speedup IS NOT NULL GROUP BY ALL
"""

SCALING = """
SELECT study, execution, height, batch_size, pinned_memory, model_name,
       median(parameters) AS parameters, 1000.0 / median(samples_per_s) AS ms_per_sample,
       1000.0 / max(samples_per_s) AS ms_per_sample_low, 1000.0 / min(samples_per_s) AS ms_per_sample_high,
       count(*) AS processes, coalesce(sum(trials), 0) AS trials, count(DISTINCT lane) AS lanes
FROM measured_runs WHERE parameters IS NOT NULL GROUP BY ALL
"""

CROSSOVER_MODELS = """
SELECT execution, height, batch_size, pinned_memory, model_name,
       median(flops_per_sample) AS flops_per_sample, median(fwd_gpu_ms) AS "GPU compute",
       median(h2d_ms_median + d2h_ms_median) AS "copies (H2D + D2H)", count(*) AS processes,
       count(DISTINCT lane) AS lanes
FROM gpu_runs WHERE fwd_gpu_ms IS NOT NULL AND flops_per_sample > 0
GROUP BY ALL
"""

CROSSOVER = f"SELECT * FROM ({VIEWS['crossover']}) WHERE models >= 2"

# The processes behind each numa_penalty row (keyed by views.PENALTY_KEY), with the CPU-speed control (for the
# CUPED adjustment).
PENALTY_RUNS = f"""
SELECT {", ".join([*SETTINGS, *SWEEP])}, placement_mode, placement, samples_per_s, cpu_control_rate
FROM placed_runs WHERE placement IN ('local', 'remote') AND samples_per_s > 0 AND placement_mode <> 'paired'
ORDER BY run_id
"""

LAW_POINTS = """
SELECT experiment, coalesce(study, '') AS study, execution, device, height, batch_size, pinned_memory, model_name,
       median(parameters) AS parameters, median(samples_per_s) AS samples_per_s
FROM measured_runs GROUP BY ALL
"""

SCOPED = {
    "lanes": LANES,
    "failures": FAILURES,
    "actual_time": ACTUAL_TIME,
    "transfer": TRANSFER,
    "compile": COMPILE,
    "scaling": SCALING,
    "crossover_models": CROSSOVER_MODELS,
    "crossover": CROSSOVER,
    "penalty_runs": PENALTY_RUNS,
    "law_points": LAW_POINTS,
    "prediction_points": POINTS,
    "penalty": VIEWS["numa_penalty"],
    "split": VIEWS["penalty_split"],
    "noise": VIEWS["process_noise"],
    "recommendations": VIEWS["recommendations"],
    "paired": VIEWS["paired_penalty"],
    "compile_speedup": f"SELECT model_name, execution, pinned_memory, forward_speedup, break_even_samples, runs "
    f"FROM ({VIEWS['compile_speedup']})",
}

# Nightly verdicts over time, by configuration key (two configurations may share a readable label). The error bar
# is the interval of tonight / baseline the verdict was judged by (ratio_low, ratio_high); rows stored before the
# table had it (and a table no nightly has stored into since) show the range the two nights' intervals allow.
REGRESSIONS = """
SELECT night, config_key, min(checked_at) AS checked_at, any_value(config) AS config, any_value(change) AS change,
       any_value(verdict) AS verdict, any_value(tonight_mean / baseline_mean - 1) AS change_center,
       any_value(coalesce({ratio_low} - 1, tonight_low / baseline_high - 1)) AS change_low,
       any_value(coalesce({ratio_high} - 1, tonight_high / baseline_low - 1)) AS change_high
FROM regressions GROUP BY night, config_key ORDER BY night, config_key
"""


def _regressions_query(con: duckdb.DuckDBPyConnection) -> str:
    have = {d[0] for d in con.execute("SELECT * FROM regressions LIMIT 0").description}
    return REGRESSIONS.format(**{c: c if c in have else "NULL::DOUBLE" for c in ("ratio_low", "ratio_high")})


def read_report_frames(con: duckdb.DuckDBPyConnection, folder: str | None = None) -> dict[str, pd.DataFrame]:
    """Every frame a report draws on, over one folder's runs (``folder``) or all runs; a folder is a value, never
    SQL."""
    where, params = ("folder = ?", [folder]) if folder else ("true", [])
    frames = {name: con.execute(scoped(sql, where), params).df() for name, sql in SCOPED.items()}
    frames["regressions"] = (
        con.execute(_regressions_query(con)).df() if table_exists(con, "regressions") else pd.DataFrame()
    )
    return frames
