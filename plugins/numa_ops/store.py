"""The DuckDB file: a ``runs`` table loaded idempotently from run records, one writer at a time.

A run is stored once (primary key ``run_id``). A successful row is never replaced; a failed row
is replaced when the run is measured again. Loads take a file lock beside the database, so two
loads never race for DuckDB's single-writer lock: the second waits, then catches up. Reads take the
same lock (``read_connection``): while a load writes, DuckDB refuses even a read-only connection, so a
report waits for the load instead of failing.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
from filelock import FileLock, Timeout
from scipy import stats

from numa_ops import paths, results

DB_NAME = "numa_lab.duckdb"
LOCK_TIMEOUT_S = 600

# column name, SQL type, where it sits in a record (a dotted path; None: one of COMPUTED below)
COLUMNS: list[tuple[str, str, str | None]] = [
    ("run_id", "VARCHAR PRIMARY KEY", "run_id"),
    ("folder", "VARCHAR", "folder"),
    ("experiment", "VARCHAR", "experiment"),
    ("study", "VARCHAR", "study"),
    ("sweep_point", "INTEGER", "sweep_point"),
    ("lane", "VARCHAR", "lane"),
    ("device", "VARCHAR", None),
    ("gpu_id", "INTEGER", "gpu_id"),
    ("cpu_node", "INTEGER", "cpu_node"),
    ("mem_node", "INTEGER", "mem_node"),
    ("placement", "VARCHAR", "placement"),
    ("placement_mode", "VARCHAR", "placement_mode"),  # process | pool; NULL (older records): process
    ("pool_node", "INTEGER", "pool_node"),
    ("repeat", "INTEGER", "repeat"),  # the worker process's repeat index of its configuration, 0-based
    ("model_name", "VARCHAR", "model.name"),
    ("patch_size", "INTEGER", "model.patch_size"),
    ("depth", "INTEGER", "model.depth"),
    ("heads", "INTEGER", "model.heads"),
    ("dim", "INTEGER", "model.dim"),
    ("mlp_dim", "INTEGER", "model.mlp_dim"),
    ("parameters", "BIGINT", "metrics.parameters"),
    ("num_samples", "INTEGER", "test.num_samples"),
    ("batch_size", "INTEGER", "test.batch_size"),
    ("channels", "INTEGER", None),
    ("height", "INTEGER", None),
    ("width", "INTEGER", None),
    ("memory_size_mb", "INTEGER", "test.memory_size_mb"),
    ("compile_model", "BOOLEAN", "test.compile_model"),
    ("success", "BOOLEAN", None),
    ("error", "VARCHAR", "error"),
    ("duration_s", "DOUBLE", "duration"),
    ("started_at", "TIMESTAMPTZ", "started_at"),
    ("finished_at", "TIMESTAMPTZ", "finished_at"),
    ("samples_per_s", "DOUBLE", "metrics.samples_per_s"),
    ("h2d_ms_median", "DOUBLE", "metrics.h2d_ms.median"),
    ("h2d_ms_p95", "DOUBLE", "metrics.h2d_ms.p95"),
    ("forward_ms_median", "DOUBLE", "metrics.forward_ms.median"),
    ("forward_ms_p95", "DOUBLE", "metrics.forward_ms.p95"),
    ("d2h_ms_median", "DOUBLE", "metrics.d2h_ms.median"),
    ("d2h_ms_p95", "DOUBLE", "metrics.d2h_ms.p95"),
    ("batch_ms_median", "DOUBLE", "metrics.batch_ms.median"),
    ("batch_ms_p95", "DOUBLE", "metrics.batch_ms.p95"),
    ("batch_ms_p99", "DOUBLE", "metrics.batch_ms.p99"),
    ("h2d_bytes_per_batch", "BIGINT", "metrics.h2d_bytes_per_batch"),
    ("d2h_bytes_per_batch", "BIGINT", "metrics.d2h_bytes_per_batch"),
    ("h2d_gbps", "DOUBLE", "metrics.h2d_gbps"),
    ("d2h_gbps", "DOUBLE", "metrics.d2h_gbps"),
    ("execution", "VARCHAR", "metrics.execution"),
    ("d2h_mode", "VARCHAR", "metrics.d2h_mode"),
    ("pinned_memory", "BOOLEAN", "metrics.pool_pinned"),
    ("trials", "INTEGER", "metrics.trials"),
    ("ci_target_met", "BOOLEAN", "metrics.ci_target_met"),
    ("samples_per_s_ci_low", "DOUBLE", "metrics.samples_per_s_ci.low"),
    ("samples_per_s_ci_high", "DOUBLE", "metrics.samples_per_s_ci.high"),
    ("samples_per_s_ci_level", "DOUBLE", "metrics.samples_per_s_ci.level"),
    ("cpu_control_rate", "DOUBLE", "metrics.cpu_control_rate"),
    ("binding_stage", "VARCHAR", "metrics.binding_stage"),
    ("pipelined_samples_per_s", "DOUBLE", "metrics.pipelined_samples_per_s"),
    ("ideal_samples_per_s", "DOUBLE", "metrics.ideal_samples_per_s"),
    ("fwd_gpu_ms", "DOUBLE", "metrics.fwd_gpu_ms"),
    ("launch_overhead_share", "DOUBLE", "metrics.launch_overhead_share"),
    ("fwd_issue_ms", "DOUBLE", "metrics.fwd_issue_ms"),
    ("issue_batch_ms", "DOUBLE", "metrics.issue_ms.batch.median"),
    ("pipelined_vs_ideal", "DOUBLE", "metrics.pipelined_vs_ideal"),
    ("regime", "VARCHAR", "metrics.regime"),
    ("flops_per_sample", "BIGINT", "metrics.flops_per_sample"),
    ("gpu_util_pct_mean", "DOUBLE", "metrics.telemetry.gpu_util_pct_mean"),
    ("pcie_rx_mbps_max", "DOUBLE", "metrics.telemetry.pcie_rx_mbps_max"),
    ("power_w_mean", "DOUBLE", "metrics.telemetry.power_w_mean"),
    ("numa_distance", "INTEGER", "numa_distance"),
    ("pool_fraction_on_node", "DOUBLE", "metrics.pool_pages.fraction_on_intended"),
    ("launch_cpu", "INTEGER", "metrics.launch_cpu"),
    ("launch_cpu_node", "INTEGER", "metrics.launch_cpu_node"),
    ("peak_gpu_mem_mb", "DOUBLE", "metrics.peak_gpu_mem_mb"),
    ("compile_s", "DOUBLE", "metrics.compile_s"),
    ("worker_startup_s", "DOUBLE", "worker_startup_s"),
    ("host", "VARCHAR", "environment.host"),
    ("gpu_name", "VARCHAR", "environment.gpu_name"),
    ("driver", "VARCHAR", "environment.driver"),
    ("torch_version", "VARCHAR", "environment.torch"),
    ("cuda_runtime", "VARCHAR", "environment.cuda_runtime"),
    ("binding", "VARCHAR", "environment.binding.numactl"),
    ("cpus_allowed", "VARCHAR", "environment.binding.cpus_allowed"),
    ("mems_allowed", "VARCHAR", "environment.binding.mems_allowed"),
    ("record", "JSON", None),
]
NAMES = [name for name, _, _ in COLUMNS]

# Columns not read from one path of the parsed record ``j`` (the file's text is ``raw``).
COMPUTED = {
    "device": "coalesce(j['device'], j['metrics']['device'])",
    "channels": "j['test']['tensor_shape'][1]",
    "height": "j['test']['tensor_shape'][2]",
    "width": "j['test']['tensor_shape'][3]",
    "success": "coalesce(j['success'], false)",
    "record": "json(raw)",
}
# Parsed too, though not a column of their own (``trials`` is read from the last one).
EXTRA_PATHS = {
    "device": "VARCHAR",
    "success": "BOOLEAN",
    "metrics.device": "VARCHAR",
    "test.tensor_shape": "INTEGER[]",
    "metrics.trial_samples_per_s": "MAP(VARCHAR, DOUBLE[])",
}


T_TABLE_MAX_DF = 400  # as numa_ops.analysis.T_TABLE_MAX_DF: normal quantiles beyond


def _t_table() -> str:
    """t quantiles (0.975 and 0.80) for df 1..T_TABLE_MAX_DF as a VALUES list, made once at import from scipy.

    Embedded in the views so that they need no UDF: the plain ``duckdb`` CLI opens the file and gets the same
    intervals. Beyond the table the views take the normal quantiles, as ``analysis.t_quantile`` does.
    """
    rows = ", ".join(f"({df}, {float(stats.t.ppf(0.975, df))!r}::DOUBLE, {float(stats.t.ppf(0.80, df))!r}::DOUBLE)"
                     for df in range(1, T_TABLE_MAX_DF + 1))
    return f"tq(df, t975, t80) AS (VALUES {rows})"


T_TABLE = _t_table()
Z975, Z80 = f"{float(stats.norm.ppf(0.975))!r}::DOUBLE", f"{float(stats.norm.ppf(0.80))!r}::DOUBLE"
ONE_PROCESS = "one process a side: no between-process interval (set test.repeats >= 2)"
NO_REMOTE = "no remote placement measured: the host has one NUMA node, or none was requested"

# The configuration a penalty compares placements within: never pinned with pageable, nor process with pool.
PENALTY_KEY = ["host", "gpu_id", "model_name", "depth", "dim", "height", "width", "batch_size", "execution",
               "pinned_memory", "placement_mode"]

# One row per configuration x host memory x placement mode. The process (one run record) is the unit: each
# run's headline samples/s is one draw, and the penalty is 1 - exp(mean ln remote - mean ln local), with the
# two-sample t interval of the logs (pooled spread, df = n_local + n_remote - 2) and the minimum detectable
# effect at 95% confidence and 80% power, 1 - exp(-(t975 + t80) * sd_ln * sqrt(1/n_local + 1/n_remote)),
# as numa_ops.analysis.process_penalty computes them. Logs are summed in sorted order: the same records give
# the same interval on every load. status: 'measured' when |ln(remote/local)| >= the MDE's log (such an
# interval excludes 0); else 'not detectable at this noise (MDE x%)'. The regime is what a run turned out to
# be, not a setting: every regime met is reported, never grouped by.
NUMA_PENALTY = f"""
        WITH {T_TABLE},
        ok AS (SELECT * FROM runs WHERE success AND device = 'cuda'),
        grouped AS (
            SELECT host, min(gpu_name) AS gpu_name, gpu_id, model_name, depth, dim, height, width, batch_size,
                   coalesce(execution, 'eager') AS execution, coalesce(pinned_memory, true) AS pinned_memory,
                   coalesce(placement_mode, 'process') AS placement_mode,
                   array_to_string(list_sort(list(DISTINCT coalesce(regime, 'unknown'))), ', ') AS regime,
                   count(*) FILTER (WHERE placement = 'local') AS local_runs,
                   count(*) FILTER (WHERE placement = 'remote') AS remote_runs,
                   list_sort(list(ln(samples_per_s)) FILTER (WHERE placement = 'local' AND samples_per_s > 0)) AS local_ln,
                   list_sort(list(ln(samples_per_s)) FILTER (WHERE placement = 'remote' AND samples_per_s > 0)) AS remote_ln,
                   median(h2d_gbps) FILTER (WHERE placement = 'local') AS local_h2d_gbps,
                   median(h2d_gbps) FILTER (WHERE placement = 'remote') AS remote_h2d_gbps,
                   max(numa_distance) FILTER (WHERE placement = 'local') AS local_numa_distance,
                   max(numa_distance) FILTER (WHERE placement = 'remote') AS remote_numa_distance
            FROM ok GROUP BY ALL
        ),
        moments AS (
            SELECT * EXCLUDE (local_ln, remote_ln),
                   coalesce(len(local_ln), 0) AS local_processes, coalesce(len(remote_ln), 0) AS remote_processes,
                   list_avg(local_ln) AS local_mean_ln, list_stddev_samp(local_ln) AS local_sd_ln,
                   list_avg(remote_ln) AS remote_mean_ln, list_stddev_samp(remote_ln) AS remote_sd_ln
            FROM grouped
        ),
        pooled AS (
            SELECT *, remote_mean_ln - local_mean_ln AS log_ratio,
                   CASE WHEN local_processes >= 2 AND remote_processes >= 2 THEN local_processes + remote_processes - 2 END AS df,
                   CASE WHEN local_processes >= 2 AND remote_processes >= 2 THEN
                       sqrt(((local_processes - 1) * local_sd_ln ^ 2 + (remote_processes - 1) * remote_sd_ln ^ 2)
                            / (local_processes + remote_processes - 2)) END AS sd_ln
            FROM moments
        ),
        bounds AS (
            SELECT p.*, sd_ln * sqrt(1.0 / local_processes + 1.0 / remote_processes) AS se_log,
                   coalesce(tq.t975, {Z975}) AS t975, coalesce(tq.t80, {Z80}) AS t80
            FROM pooled p LEFT JOIN tq ON tq.df = p.df
        )
        SELECT * EXCLUDE (se_log, t975, t80),
               exp(local_mean_ln) AS local_samples_per_s, exp(remote_mean_ln) AS remote_samples_per_s,
               CASE WHEN remote_processes > 0 AND local_processes > 0 THEN 1 - exp(log_ratio) END AS throughput_penalty,
               CASE WHEN remote_runs > 0 AND local_runs > 0 THEN 1 - remote_h2d_gbps / local_h2d_gbps END AS h2d_penalty,
               1 - exp(log_ratio + t975 * se_log) AS penalty_low,
               1 - exp(log_ratio - t975 * se_log) AS penalty_high,
               1 - exp(-(t975 + t80) * se_log) AS mde,
               CASE WHEN remote_runs = 0 THEN '{NO_REMOTE}'
                    WHEN local_runs = 0 THEN 'no local placement measured'
                    WHEN local_processes < 2 OR remote_processes < 2 THEN '{ONE_PROCESS}'
                    WHEN abs(log_ratio) >= (t975 + t80) * se_log THEN 'measured'
                    ELSE 'not detectable at this noise (MDE ' || printf('%.1f', 100 * (1 - exp(-(t975 + t80) * se_log))) || '%)'
               END AS status
        FROM bounds
        ORDER BY model_name, gpu_id, height, batch_size, execution, pinned_memory DESC, placement_mode
"""

VIEWS = {
    "numa_penalty": NUMA_PENALTY,
    # Where both placement modes were measured for a configuration (same host memory): the process penalty
    # (numactl binds CPU and all memory) split into its DMA part (the pool penalty: only the host pool moved)
    # and its CPU-side part (process beyond pool: 1 - exp(ln ratio process - ln ratio pool), so
    # (1 - process) = (1 - dma) * (1 - cpu_side)). The CPU-side interval and MDE pool the spread of all four
    # arms (df = their processes - 4).
    "penalty_split": f"""
        WITH {T_TABLE},
        pen AS ({NUMA_PENALTY}),
        pair AS (
            SELECT pr.host, pr.gpu_name, pr.gpu_id, pr.model_name, pr.depth, pr.dim, pr.height, pr.width, pr.batch_size,
                   pr.execution, pr.pinned_memory, pr.regime AS process_regime, po.regime AS pool_regime,
                   pr.local_processes AS process_local_processes, pr.remote_processes AS process_remote_processes,
                   po.local_processes AS pool_local_processes, po.remote_processes AS pool_remote_processes,
                   pr.throughput_penalty AS process_penalty, pr.penalty_low AS process_low, pr.penalty_high AS process_high,
                   pr.mde AS process_mde, pr.status AS process_status,
                   po.throughput_penalty AS dma_penalty, po.penalty_low AS dma_low, po.penalty_high AS dma_high,
                   po.mde AS dma_mde, po.status AS dma_status,
                   pr.log_ratio - po.log_ratio AS cpu_log_ratio, pr.df + po.df - 2 AS cpu_df,
                   sqrt((pr.df * pr.sd_ln ^ 2 + po.df * po.sd_ln ^ 2) / (pr.df + po.df - 2))
                       * sqrt(1.0 / pr.local_processes + 1.0 / pr.remote_processes
                              + 1.0 / po.local_processes + 1.0 / po.remote_processes) AS cpu_se_log
            FROM pen pr JOIN pen po
              ON pr.placement_mode = 'process' AND po.placement_mode = 'pool'
             AND pr.host IS NOT DISTINCT FROM po.host AND pr.gpu_id IS NOT DISTINCT FROM po.gpu_id
             AND pr.model_name IS NOT DISTINCT FROM po.model_name AND pr.depth IS NOT DISTINCT FROM po.depth
             AND pr.dim IS NOT DISTINCT FROM po.dim AND pr.height IS NOT DISTINCT FROM po.height
             AND pr.width IS NOT DISTINCT FROM po.width AND pr.batch_size IS NOT DISTINCT FROM po.batch_size
             AND pr.execution = po.execution AND pr.pinned_memory = po.pinned_memory
            WHERE pr.throughput_penalty IS NOT NULL AND po.throughput_penalty IS NOT NULL
        ),
        bounds AS (
            SELECT pair.*, coalesce(tq.t975, {Z975}) AS t975, coalesce(tq.t80, {Z80}) AS t80
            FROM pair LEFT JOIN tq ON tq.df = pair.cpu_df
        )
        SELECT * EXCLUDE (cpu_log_ratio, cpu_df, cpu_se_log, t975, t80),
               1 - exp(cpu_log_ratio) AS cpu_side_penalty,
               1 - exp(cpu_log_ratio + t975 * cpu_se_log) AS cpu_side_low,
               1 - exp(cpu_log_ratio - t975 * cpu_se_log) AS cpu_side_high,
               1 - exp(-(t975 + t80) * cpu_se_log) AS cpu_side_mde,
               CASE WHEN cpu_se_log IS NULL THEN '{ONE_PROCESS}'
                    WHEN abs(cpu_log_ratio) >= (t975 + t80) * cpu_se_log THEN 'measured'
                    ELSE 'not detectable at this noise (MDE ' || printf('%.1f', 100 * (1 - exp(-(t975 + t80) * cpu_se_log))) || '%)'
               END AS cpu_side_status
        FROM bounds
        ORDER BY model_name, gpu_id, height, batch_size, execution, pinned_memory DESC
    """,
    # The noise floor per configuration and placement, on any host (also one with a single NUMA node): the
    # spread of ln samples/s between worker processes (between_process_cv = sqrt(exp(sd_ln^2) - 1), about
    # sd_ln), and aa_mde, the MDE of an A/A comparison (local against local) with as many processes a side.
    "process_noise": f"""
        WITH {T_TABLE},
        g AS (
            SELECT host, min(gpu_name) AS gpu_name, device, gpu_id, model_name, depth, dim, height, width, batch_size,
                   coalesce(execution, 'eager') AS execution, coalesce(pinned_memory, true) AS pinned_memory,
                   coalesce(placement_mode, 'process') AS placement_mode, placement, count(*) AS runs,
                   list_sort(list(ln(samples_per_s)) FILTER (WHERE samples_per_s > 0)) AS ln_rates
            FROM runs WHERE success GROUP BY ALL
        ),
        s AS (
            SELECT * EXCLUDE (ln_rates), coalesce(len(ln_rates), 0) AS processes, exp(list_avg(ln_rates)) AS geo_mean_samples_per_s,
                   CASE WHEN len(ln_rates) >= 2 THEN list_stddev_samp(ln_rates) END AS sd_ln,
                   CASE WHEN len(ln_rates) >= 2 THEN 2 * len(ln_rates) - 2 END AS aa_df
            FROM g
        )
        SELECT s.* EXCLUDE (aa_df), sqrt(exp(sd_ln ^ 2) - 1) AS between_process_cv,
               1 - exp(-(coalesce(tq.t975, {Z975}) + coalesce(tq.t80, {Z80})) * sd_ln * sqrt(2.0 / processes)) AS aa_mde,
               CASE WHEN processes < 2 THEN 'one process: no between-process spread (set test.repeats >= 2)'
                    ELSE 'measured' END AS status
        FROM s LEFT JOIN tq ON tq.df = s.aa_df
        ORDER BY model_name, gpu_id, height, batch_size, execution, pinned_memory DESC, placement_mode, placement
    """,
    # The penalty per model configuration, host memory and placement mode, largest first (measured rows only),
    # with every regime met.
    "sensitivity_map": """
        SELECT model_name, depth, dim, pinned_memory, placement_mode,
               array_to_string(list_sort(list_distinct(flatten(list(string_split(regime, ', '))))), ', ') AS regime,
               count(*) AS configurations,
               median(throughput_penalty) AS median_penalty, max(throughput_penalty) AS max_penalty,
               rank() OVER (ORDER BY median(throughput_penalty) DESC) AS rank
        FROM numa_penalty WHERE status = 'measured'
        GROUP BY model_name, depth, dim, pinned_memory, placement_mode
    """,
    # Where a batch's time goes, per configuration: copies, the GPU's compute, launch overhead.
    "stage_breakdown": """
        SELECT host, any_value(gpu_name) AS gpu_name, model_name, depth, dim, height, batch_size,
               coalesce(execution, 'eager') AS execution, pinned_memory, placement,
               coalesce(placement_mode, 'process') AS placement_mode, count(*) AS runs,
               median(h2d_ms_median) AS h2d_ms, median(forward_ms_median) AS forward_ms,
               median(fwd_gpu_ms) AS fwd_gpu_ms, median(d2h_ms_median) AS d2h_ms,
               median(fwd_issue_ms) AS fwd_issue_ms, median(issue_batch_ms) AS issue_batch_ms,
               median(h2d_ms_median) / median(batch_ms_median) AS h2d_share,
               median(forward_ms_median) / median(batch_ms_median) AS forward_share,
               median(d2h_ms_median) / median(batch_ms_median) AS d2h_share,
               coalesce(median(launch_overhead_share),
                        greatest(median(forward_ms_median) - median(fwd_gpu_ms), 0) / median(forward_ms_median))
                   AS launch_share,
               mode(binding_stage) AS binding_stage, median(pipelined_vs_ideal) AS pipelined_vs_ideal,
               mode(regime) AS regime
        FROM runs WHERE success AND device = 'cuda'
        GROUP BY ALL ORDER BY model_name, height, batch_size, execution, pinned_memory, placement, placement_mode
    """,
    # Per shape and execution mode: where the GPU's compute overtakes the copies (RQ2). The crossover model is
    # the smallest one from which on every larger model is compute-dominated (one noisy small model does not
    # move it); the estimate interpolates gpu_ms / copy_ms = 1 in log-log between it and the model before it.
    "crossover": """
        WITH s AS (
            SELECT host, height, batch_size, coalesce(execution, 'eager') AS execution, pinned_memory, model_name,
                   median(flops_per_sample) AS flops_per_sample, median(parameters) AS parameters,
                   median(fwd_gpu_ms) AS gpu_ms, median(h2d_ms_median + d2h_ms_median) AS copy_ms, mode(regime) AS regime
            FROM runs WHERE success AND device = 'cuda' AND fwd_gpu_ms IS NOT NULL GROUP BY ALL
        ),
        marked AS (
            SELECT *, gpu_ms > copy_ms AS compute_dominated,
                   coalesce(max(flops_per_sample) FILTER (WHERE gpu_ms <= copy_ms)
                            OVER (PARTITION BY host, height, batch_size, execution, pinned_memory), -1) AS last_copy_flops
            FROM s
        ),
        agg AS (
            SELECT host, height, batch_size, execution, pinned_memory,
                   min(flops_per_sample) FILTER (WHERE compute_dominated AND flops_per_sample > last_copy_flops)
                       AS crossover_flops_per_sample,
                   arg_min(model_name, flops_per_sample) FILTER (WHERE compute_dominated AND flops_per_sample > last_copy_flops)
                       AS first_compute_dominated_model,
                   arg_min(parameters, flops_per_sample) FILTER (WHERE compute_dominated AND flops_per_sample > last_copy_flops)
                       AS crossover_parameters,
                   arg_min(gpu_ms / copy_ms, flops_per_sample) FILTER (WHERE compute_dominated AND flops_per_sample > last_copy_flops)
                       AS ratio_after,
                   arg_max(model_name, flops_per_sample) FILTER (WHERE NOT compute_dominated) AS last_transfer_dominated_model,
                   max(flops_per_sample) FILTER (WHERE NOT compute_dominated) AS flops_before,
                   arg_max(gpu_ms / copy_ms, flops_per_sample) FILTER (WHERE NOT compute_dominated) AS ratio_before,
                   count(*) AS models, list(model_name || ':' || regime ORDER BY flops_per_sample) AS regimes
            FROM marked GROUP BY ALL
        )
        SELECT host, height, batch_size, execution, pinned_memory, crossover_flops_per_sample, first_compute_dominated_model,
               crossover_parameters, last_transfer_dominated_model,
               CASE WHEN ratio_before > 0 AND ratio_after > ratio_before AND flops_before > 0 THEN
                   exp(ln(flops_before) + (0 - ln(ratio_before)) * (ln(crossover_flops_per_sample) - ln(flops_before))
                       / (ln(ratio_after) - ln(ratio_before)))
               END AS crossover_flops_estimate,
               models, regimes
        FROM agg ORDER BY height, batch_size, execution
    """,
    # samples/s against model size, per experiment and execution mode (fits: numa_ops.analysis).
    "scaling": """
        SELECT experiment, coalesce(execution, 'eager') AS execution, device, height, batch_size,
               coalesce(pinned_memory, true) AS pinned_memory, model_name,
               depth, dim, median(parameters) AS parameters, median(flops_per_sample) AS flops_per_sample,
               median(samples_per_s) AS samples_per_s, median(fwd_gpu_ms) AS fwd_gpu_ms, count(*) AS runs
        FROM runs WHERE success GROUP BY ALL ORDER BY experiment, depth, dim
    """,
    # torch.compile against eager for the same model, shape and placement.
    "compile_speedup": """
        SELECT model_name, lane, height, batch_size, coalesce(execution, 'eager') AS execution,
               coalesce(pinned_memory, true) AS pinned_memory, median(samples_per_s) AS samples_per_s, median(compile_s) AS compile_s,
               median(CAST(record->>'$.metrics.compile_speedup' AS DOUBLE)) AS forward_speedup,
               median(CAST(record->>'$.metrics.compile_break_even_samples' AS DOUBLE)) AS break_even_samples,
               count(*) AS runs
        FROM runs WHERE success AND coalesce(execution, 'eager') IN ('compile', 'compile_reduce_overhead')
        GROUP BY ALL ORDER BY forward_speedup DESC NULLS LAST
    """,
    # The fastest lane and settings per model and shape, with the evidence behind it.
    "recommendations": """
        WITH ranked AS (
            SELECT model_name, height, lane, placement, coalesce(execution, 'eager') AS execution, batch_size,
                   pinned_memory, median(samples_per_s) AS samples_per_s, count(*) AS runs,
                   row_number() OVER (PARTITION BY model_name, height ORDER BY median(samples_per_s) DESC) AS pos
            FROM runs WHERE success GROUP BY model_name, height, lane, placement, execution, batch_size, pinned_memory
        )
        SELECT model_name, height, lane AS best_lane, placement, execution, batch_size, pinned_memory,
               samples_per_s, runs AS evidence_runs
        FROM ranked WHERE pos = 1 ORDER BY model_name, height
    """,
}


class StoreBusyError(RuntimeError):
    """Another process held the database for longer than the wait allowed."""


def db_path(base: Path | None = None) -> Path:
    """The DuckDB file (``outputs/numa_lab.duckdb``)."""
    return (base or paths.outputs_dir()) / DB_NAME


def lock_path(database: Path) -> str:
    """The file lock that loads and reads of ``database`` take."""
    return str(database) + ".lock"


def _busy(database: Path, lock_timeout_s: float) -> StoreBusyError:
    return StoreBusyError(
        f"{database} stayed locked by another process (a load writing it, or another reader) for over "
        f"{lock_timeout_s:.0f} s (lock file {lock_path(database)}); nothing was read, try again once it is done"
    )


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


_reading = threading.local()  # per thread: database file -> the read connection open on it


@contextmanager
def read_connection(database: Path | None = None,
                    lock_timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to the database, held under the loads' file lock; both released on exit.

    While another process has the file open to write, DuckDB refuses even a read-only connection
    ("Could not set lock on file"): this waits for the lock instead, and then for DuckDB's own lock
    (a writer that does not take ours, e.g. an analyst's ``duckdb`` shell), up to ``lock_timeout_s`` in
    all, and raises ``StoreBusyError`` past it. Keep the block to the reads: loads wait while it is open.
    A database whose folder cannot hold the lock file (read-only) is read without it. Within a block, a
    second ``read_connection`` to the same file in the same thread gets the same connection (a second lock
    would wait for the first).
    """
    database = Path(database or db_path())
    held = _reading.__dict__.setdefault("held", {})
    key = os.path.realpath(database)
    if key in held:
        yield held[key]
        return
    deadline = time.monotonic() + lock_timeout_s
    lock: FileLock | None = None
    if database.exists():  # a missing one: DuckDB says so below, and no lock file (nor folder) is made for it
        lock = FileLock(lock_path(database), timeout=lock_timeout_s)
        try:
            lock.acquire()
        except Timeout:
            raise _busy(database, lock_timeout_s) from None
        except OSError:  # not ours to write: no load of ours can be writing there either
            lock = None
    try:
        pause = 0.05
        while True:
            try:
                con = duckdb.connect(str(database), read_only=True)
                break
            except duckdb.Error as exc:
                if not _is_lock_conflict(exc) or time.monotonic() + pause > deadline:
                    if _is_lock_conflict(exc):
                        raise _busy(database, lock_timeout_s) from exc
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 1.0)
        held[key] = con
        try:
            yield con
        finally:
            del held[key]
            con.close()
    finally:
        if lock is not None:
            lock.release()


def _load_topologies(con: duckdb.DuckDBPyConnection, folders: list[Path]) -> None:
    """One topology snapshot per run folder (the host as it was when the plan was made)."""
    for folder in folders:
        snap = folder / "topology.json"
        if not snap.is_file():
            continue
        try:
            data = json.loads(snap.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        con.execute(
            "INSERT INTO topology VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (folder) DO NOTHING",
            [folder.name, data.get("host"), len(data.get("nodes", [])), len(data.get("gpus", [])),
             "; ".join(data.get("notes", [])), json.dumps(data)],
        )


REGRESSION_COLUMNS = [
    "night", "baseline", "config_key", "config", "tonight_mean", "tonight_low", "tonight_high",
    "baseline_mean", "baseline_low", "baseline_high", "change", "verdict", "error",
]


def save_verdicts(phase: str, verdicts: list[dict[str, Any]], accepted: bool, database: Path | None = None,
                  lock_timeout_s: float = LOCK_TIMEOUT_S) -> None:
    """Store a night's verdicts (again for the same night: replaced, never duplicated, ``checked_at`` kept from
    the first check); none: nothing to store."""
    database = database or db_path()
    try:
        with FileLock(lock_path(database), timeout=lock_timeout_s), duckdb.connect(str(database)) as con:
            ensure_schema(con)
            if not verdicts:  # DuckDB's executemany refuses an empty list
                return
            con.execute("BEGIN TRANSACTION")
            first_checked = {}  # a night checked again keeps the time of its first check (see last_accepted_night)
            for night in {v["night"] for v in verdicts}:
                first_checked[night] = con.execute(
                    "SELECT coalesce(min(checked_at), now()) FROM regressions WHERE night = ?", [night]).fetchone()[0]
                con.execute("DELETE FROM regressions WHERE night = ?", [night])
            con.executemany(
                f"INSERT INTO regressions VALUES (?, ?, {', '.join('?' for _ in REGRESSION_COLUMNS)}, ?)",
                [[phase, accepted, *[v[c] for c in REGRESSION_COLUMNS], first_checked[v["night"]]] for v in verdicts],
            )
            con.execute("COMMIT")
    except Timeout:
        raise StoreBusyError(
            f"{database} is held by another load (or a report reading it) for over {lock_timeout_s:.0f} s; the verdicts were not stored, "
            "store them again later"
        ) from None


_NAME_TIME = re.compile(r"_(\d{8}T\d{6})_[0-9a-f]{6}(?:_|$)")  # pipeline.folder_name: <name>_<UTC time>_<hex>[_<host>]


def night_time(night: str, started: float | None = None, checked: float | None = None) -> float | None:
    """When ``night`` was, in epoch seconds: the UTC time in its folder name (the night Airflow scheduled, also
    for a backfill run later), else its runs' first start, else the first time its verdicts were stored."""
    found = _NAME_TIME.search(night)
    if found:
        return datetime.strptime(found.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC).timestamp()
    return started if started is not None else checked


def last_accepted_night(phase: str, before: str, database: Path | None = None,
                        lock_timeout_s: float = LOCK_TIMEOUT_S) -> str | None:
    """The latest accepted night of ``phase`` before the night ``before`` (None: no baseline yet).

    Nights are ordered by when they were (``night_time``), not by when their verdicts were stored: checking
    an older night again (an Airflow clear or backfill) neither makes it the baseline of later nights nor
    gives it a later night as its own baseline. A night ``before`` whose time is not known yet is the latest.
    """
    database = database or db_path()
    if not database.exists():
        return None
    with read_connection(database, lock_timeout_s) as con:
        ensure_tables_exist = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'regressions'"
        ).fetchone()[0]
        if not ensure_tables_exist:
            return None
        # every night stored under this phase, accepted or not (``before`` may be one), with its times
        rows = con.execute(
            "WITH nights AS (SELECT night, bool_and(accepted) AS accepted, epoch(min(checked_at)) AS checked "
            "FROM regressions WHERE phase = ? GROUP BY night), "
            "starts AS (SELECT folder, epoch(min(started_at)) AS started FROM runs "
            "WHERE folder IN (SELECT night FROM nights UNION SELECT ?) GROUP BY folder) "
            "SELECT n.night, n.accepted, s.started, n.checked FROM nights n LEFT JOIN starts s ON s.folder = n.night "
            "UNION ALL SELECT ?, false, (SELECT started FROM starts WHERE folder = ?), NULL "
            "WHERE ? NOT IN (SELECT night FROM nights)",
            [phase, before, before, before, before],
        ).fetchall()
    when = {night: night_time(night, started, checked) for night, _, started, checked in rows}
    limit = when.get(before)
    candidates = [(when[night], night) for night, ok, _, _ in rows
                  if ok and night != before and when[night] is not None and (limit is None or when[night] < limit)]
    return max(candidates)[1] if candidates else None


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the tables if they are missing."""
    # No primary key: the load keeps (run_id, trial, mode) unique (a run's trials are replaced with it), and
    # an index over millions of trial rows took 3 of the 10 s that 100k runs may take to load.
    con.execute("CREATE TABLE IF NOT EXISTS trials (run_id VARCHAR, trial INTEGER, mode VARCHAR, samples_per_s DOUBLE)")
    if con.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'trials' "
                   "AND constraint_type = 'PRIMARY KEY'").fetchone()[0]:  # a database written by an older numa-lab
        con.execute("CREATE OR REPLACE TABLE trials AS SELECT * FROM trials")
    con.execute(
        "CREATE TABLE IF NOT EXISTS regressions (phase VARCHAR, accepted BOOLEAN, night VARCHAR, baseline VARCHAR, "
        "config_key VARCHAR, config VARCHAR, tonight_mean DOUBLE, tonight_low DOUBLE, tonight_high DOUBLE, "
        "baseline_mean DOUBLE, baseline_low DOUBLE, baseline_high DOUBLE, change DOUBLE, verdict VARCHAR, "
        "error VARCHAR, checked_at TIMESTAMPTZ, PRIMARY KEY (night, config_key))"
    )
    con.execute(
        "CREATE TABLE IF NOT EXISTS topology (folder VARCHAR PRIMARY KEY, host VARCHAR, numa_nodes INTEGER, "
        "gpus INTEGER, notes VARCHAR, snapshot JSON)"
    )
    cols = ",\n  ".join(f"{name} {sql}" for name, sql, _ in COLUMNS)
    con.execute(f"CREATE TABLE IF NOT EXISTS runs (\n  {cols}\n)")
    have = {row[0] for row in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'runs'").fetchall()}
    for name, sql, _ in COLUMNS:  # a database written by an older numa-lab gains the new columns
        if name not in have:
            con.execute(f"ALTER TABLE runs ADD COLUMN {name} {sql.replace(' PRIMARY KEY', '')}")
    for name, body in VIEWS.items():
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {body}")


def _structure() -> str:
    """The ``json_transform`` structure that parses a record into every column's type in one pass."""
    tree: dict[str, Any] = {}
    leaves = [(path, sql.replace(" PRIMARY KEY", "")) for _, sql, path in COLUMNS if path] + list(EXTRA_PATHS.items())
    for path, sql in leaves:
        *parents, leaf = path.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = sql
    return json.dumps(tree)


def _select() -> str:
    """One SQL expression per column, over the parsed record ``j``."""
    exprs = []
    for name, _, path in COLUMNS:
        expr = COMPUTED[name] if path is None else "j" + "".join(f"['{part}']" for part in path.split("."))
        exprs.append(f"{expr} AS {name}")
    return ", ".join(exprs)


def _read_new(folders: list[Path], stored_ok: set[str]) -> tuple[pd.DataFrame, int]:
    """The text of every run file not yet stored as successful (those are final), and how many were skipped.

    Files that cannot be read as text are quarantined; a file gone since the listing is left out.
    """
    paths_, texts = [], []
    skipped = 0
    for folder in folders:
        runs_dir = os.path.join(folder, "runs")  # plain strings: pathlib costs seconds over 100k files
        if not os.path.isdir(runs_dir):
            continue
        with os.scandir(runs_dir) as entries:
            names = sorted(e.name for e in entries if e.name.endswith(".json"))
        for name in names:
            if name[:-5] in stored_ok:
                skipped += 1
                continue
            path = os.path.join(runs_dir, name)
            try:
                with open(path, "rb") as fh:
                    texts.append(fh.read().decode())
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError) as exc:
                results.quarantine(Path(path), f"unreadable run file: {exc}")
                continue
            paths_.append(path)
    return pd.DataFrame({"path": paths_, "raw": texts}), skipped


def _keep_records(con: duckdb.DuckDBPyConnection, files: pd.DataFrame) -> pd.DataFrame:
    """Drop (and quarantine) files that are not run records; DuckDB checks them all at once.

    What DuckDB refuses goes through ``results.read_record``, so a file is quarantined for the
    same reasons and with the same words as everywhere else.
    """
    con.register("incoming_files", files)
    bad = [row[0] for row in con.execute(
        "SELECT path FROM incoming_files WHERE NOT CASE WHEN json_valid(raw) "
        "THEN list_bool_and(json_exists(raw, ['$.run_id', '$.success'])) ELSE false END"
    ).fetchall()]
    con.unregister("incoming_files")
    if not bad:
        return files
    fixed: dict[str, str | None] = {}
    for path in bad:
        try:
            record = results.read_record(Path(path))
            text = None if record is None else json.dumps(record, default=str, sort_keys=True)
            if text is not None and not con.execute("SELECT json_valid(?)", [text]).fetchall()[0][0]:
                raise ValueError("unreadable run file: JSON that DuckDB cannot read (e.g. a lone surrogate escape)")
        except ValueError as exc:
            results.quarantine(Path(path), str(exc))
            text = None
        fixed[path] = text
    files = files.assign(raw=[fixed.get(p, raw) for p, raw in zip(files["path"], files["raw"], strict=True)])
    return files[files["raw"].notna()].reset_index(drop=True)


def _upsert(con: duckdb.DuckDBPyConnection, files: pd.DataFrame) -> dict[str, int]:
    """Parse the records in DuckDB and store the new ones and the failed ones measured again, set-based.

    Only the parsed fields are materialised; the files' text stays in the DataFrame until it is inserted.
    """
    con.register("incoming_files", files.assign(ord=range(len(files))))
    # A run_id met twice (in two folders) counts once: the last file read wins.
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE incoming AS SELECT ord, j FROM ("
        f"  SELECT ord, json_transform(raw, '{_structure()}') AS j FROM incoming_files"
        f") QUALIFY row_number() OVER (PARTITION BY j['run_id'] ORDER BY ord DESC) = 1"
    )
    # A failed row is replaced only by a newer record: a success, or a failure with another end time.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE incoming_take AS "
        "SELECT i.ord, i.j, r.run_id IS NULL AS fresh FROM incoming i LEFT JOIN runs r ON r.run_id = i.j['run_id'] "
        "WHERE r.run_id IS NULL OR (NOT r.success AND (coalesce(i.j['success'], false) OR r.finished_at IS NULL "
        "OR i.j['finished_at'] IS NULL OR i.j['finished_at'] <> r.finished_at))"
    )
    ((seen,),) = con.execute("SELECT count(*) FROM incoming").fetchall()
    ((fresh, redo),) = con.execute(
        "SELECT count(*) FILTER (WHERE fresh), count(*) FILTER (WHERE NOT fresh) FROM incoming_take").fetchall()
    if fresh or redo:
        updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in NAMES if n != "run_id")
        con.execute(
            f"INSERT INTO runs ({', '.join(NAMES)}) SELECT {_select()} FROM incoming_take JOIN incoming_files USING (ord) "
            f"ON CONFLICT (run_id) DO UPDATE SET {updates} WHERE NOT runs.success"
        )
        # One row per trial and timing mode of each (re)loaded successful run.
        con.execute("DELETE FROM trials WHERE run_id IN (SELECT j['run_id'] FROM incoming_take)")
        con.execute(
            "INSERT INTO trials WITH modes AS ("
            "  SELECT j['run_id'] AS run_id, unnest(map_entries(j['metrics']['trial_samples_per_s'])) AS m"
            "  FROM incoming_take WHERE coalesce(j['success'], false)"
            ") SELECT run_id, CAST(unnest(range(len(m.value))) AS INTEGER), m.key, unnest(m.value) FROM modes"
        )
    con.unregister("incoming_files")
    con.execute("DROP TABLE incoming_take")
    con.execute("DROP TABLE incoming")
    return {"inserted": fresh, "rechecked_failed": redo, "unchanged": seen - fresh - redo}


def load(folders: list[Path], database: Path | None = None, lock_timeout_s: float = LOCK_TIMEOUT_S) -> dict[str, int]:
    """Load the run records of ``folders`` into the database; safe to run again or at once."""
    database = database or db_path()
    database.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(lock_path(database), timeout=lock_timeout_s):
            with duckdb.connect(str(database)) as con:
                ensure_schema(con)
                stored_ok = {row[0] for row in con.execute("SELECT run_id FROM runs WHERE success").fetchall()}
                files, skipped = _read_new(folders, stored_ok)
                files = _keep_records(con, files)
                con.execute("BEGIN TRANSACTION")
                counts = _upsert(con, files)
                counts["unchanged"] += skipped
                _load_topologies(con, folders)
                con.execute("COMMIT")
                counts["total_rows"] = con.execute("SELECT count(*) FROM runs").fetchone()[0]
    except Timeout:
        raise StoreBusyError(
            f"{database} is held by another load (or a report reading it) for over {lock_timeout_s:.0f} s; nothing was written, "
            "run the load again later (it catches up on every run file)"
        ) from None
    return counts


def run_folders(base: Path | None = None) -> list[Path]:
    """Every run folder under the outputs folder (those with a ``runs/`` subfolder)."""
    base = base or paths.outputs_dir()
    return sorted(p.parent for p in base.glob("*/runs") if p.is_dir())


def query(sql: str, params: list[Any] | None = None, database: Path | None = None,
          lock_timeout_s: float = LOCK_TIMEOUT_S) -> list[tuple]:
    """Run a read-only query on the database (waiting for a running load, see ``read_connection``)."""
    with read_connection(database, lock_timeout_s) as con:
        return con.execute(sql, params or []).fetchall()
