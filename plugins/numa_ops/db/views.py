"""The SQL views on ``runs``: base views for what many queries repeat, then the analyses.

Every view body reads ``runs`` and the base views by name, so a report can scope a view to one run
folder by shadowing them with CTEs (``scoped``) and get the same statistics as the catalog's view.
"""

from __future__ import annotations

import duckdb
from scipy import stats

# A paired run's headline metrics are its reference arm's, while its record's placement names the compared arm:
# its row says the reference arm's placement and SLIT distance (its arms and comparisons: paired_comparisons).
_REF_ARM = "'$.metrics.paired.arms[' || coalesce(record->>'$.metrics.paired.reference', '0') || ']'"
_REFERENCE_PLACEMENT = (
    f"CASE WHEN placement_mode = 'paired' THEN coalesce(json_extract_string(record, {_REF_ARM} || '.placement'), "
    "placement) ELSE placement END AS placement"
)
_REFERENCE_DISTANCE = (
    f"CASE WHEN placement_mode = 'paired' THEN coalesce(CAST(json_extract(record, {_REF_ARM} || '.numa_distance') "
    "AS INTEGER), numa_distance) ELSE numa_distance END AS numa_distance"
)

# What many queries start from: every run with the settings older records left out filled in (pinned host
# memory, process placement), the successful ones, the successful GPU runs, and the successful runs a penalty
# compares (every GPU run, and CPU runs placed local or remote on a host with several NUMA nodes).
BASE_VIEWS = {
    "filled_runs": "SELECT * REPLACE (coalesce(pinned_memory, true) AS pinned_memory, "
    f"coalesce(placement_mode, 'process') AS placement_mode, {_REFERENCE_PLACEMENT}, {_REFERENCE_DISTANCE}) "
    "FROM runs",
    "measured_runs": "SELECT * FROM filled_runs WHERE success",
    "gpu_runs": "SELECT * FROM measured_runs WHERE device = 'cuda'",
    "placed_runs": "SELECT * FROM measured_runs WHERE device = 'cuda' OR placement IN ('local', 'remote')",
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

# The test settings that make a configuration: runs that differ in any of them are never pooled into one row of
# a penalty, noise or stage view (nor one lane of the report); what may differ within a row is the placement,
# the repeat (the worker process) and what the runs measured. The sweep point and study catch a swept setting
# that has no column of its own.
SETTINGS = ["host", "gpu_id", "model_name", "patch_size", "depth", "heads", "dim", "mlp_dim", "channels", "height",
            "width", "batch_size", "num_samples", "memory_size_mb", "execution", "compile_model", "pinned_memory",
            "d2h_mode", "warmup_batches", "min_trial_s", "intra_op_threads", "telemetry"]
SWEEP = ["study", "sweep_point"]
# The configuration a penalty compares placements within: never pinned with pageable, nor process with pool.
PENALTY_KEY = [*SETTINGS, *SWEEP, "placement_mode"]
_SETTINGS = ", ".join(SETTINGS)
_SETTINGS_ORDER = (
    "model_name, gpu_id, height, batch_size, execution, pinned_memory DESC, d2h_mode, memory_size_mb, sweep_point"
)

# One row per configuration x host memory x placement mode. The process (one run record) is the unit: each
# run's headline samples/s is one draw, and the penalty is 1 - exp(mean ln remote - mean ln local), with the
# two-sample t interval of the logs (pooled spread, df = n_local + n_remote - 2) and the minimum detectable
# effect at 95% confidence and 80% power, 1 - exp(-(t975 + t80) * sd_ln * sqrt(1/n_local + 1/n_remote)),
# as numa_ops.analysis.process_penalty computes them. Logs are summed in sorted order: the same records give
# the same interval on every load. status: 'measured' when the 95% interval excludes 0
# (|ln(remote/local)| >= t975 * se), the MDE stated beside it; else 'not detectable at this noise (MDE x%)'.
# The regime is what a run turned out to be, not a setting: every regime met is reported, never grouped by.
NUMA_PENALTY = f"""
        WITH {T_TABLE},
                grouped AS (
            SELECT {_SETTINGS}, study, sweep_point, min(gpu_name) AS gpu_name,
                   placement_mode,
                   array_to_string(list_sort(list(DISTINCT coalesce(regime, 'unknown'))), ', ') AS regime,
                   count(*) FILTER (WHERE placement = 'local') AS local_runs,
                   count(*) FILTER (WHERE placement = 'remote') AS remote_runs,
                   list_sort(list(ln(samples_per_s)) FILTER (WHERE placement = 'local' AND samples_per_s > 0))
                       AS local_ln,
                   list_sort(list(ln(samples_per_s)) FILTER (WHERE placement = 'remote' AND samples_per_s > 0))
                       AS remote_ln,
                   median(h2d_gbps) FILTER (WHERE placement = 'local') AS local_h2d_gbps,
                   median(h2d_gbps) FILTER (WHERE placement = 'remote') AS remote_h2d_gbps,
                   max(numa_distance) FILTER (WHERE placement = 'local') AS local_numa_distance,
                   max(numa_distance) FILTER (WHERE placement = 'remote') AS remote_numa_distance
            FROM placed_runs WHERE placement_mode <> 'paired' GROUP BY ALL
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
                   CASE WHEN local_processes >= 2 AND remote_processes >= 2
                       THEN local_processes + remote_processes - 2 END AS df,
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
               CASE WHEN remote_runs > 0 AND local_runs > 0 THEN 1 - remote_h2d_gbps / local_h2d_gbps END
                   AS h2d_penalty,
               1 - exp(log_ratio + t975 * se_log) AS penalty_low,
               1 - exp(log_ratio - t975 * se_log) AS penalty_high,
               1 - exp(-(t975 + t80) * se_log) AS mde,
               CASE WHEN remote_runs = 0 THEN '{NO_REMOTE}'
                    WHEN local_runs = 0 THEN 'no local placement measured'
                    WHEN local_processes < 2 OR remote_processes < 2 THEN '{ONE_PROCESS}'
                    WHEN abs(log_ratio) >= t975 * se_log THEN 'measured'
                    ELSE 'not detectable at this noise (MDE ' ||
                        printf('%.1f', 100 * (1 - exp(-(t975 + t80) * se_log))) || '%)'
               END AS status
        FROM bounds
        ORDER BY {_SETTINGS_ORDER}, placement_mode
"""

# Which part of a NUMA penalty a paired comparison measures (the arm is what differs from the reference).
PAIRED_PART = """CASE WHEN c.arm_node IS NOT DISTINCT FROM c.reference_node
                         AND c.arm_pinned IS NOT DISTINCT FROM c.reference_pinned
                    THEN 'A/A check (both arms alike)'
                    WHEN c.kind = 'memory' AND c.arm_node IS NOT DISTINCT FROM c.reference_node
                    THEN 'host memory kind (pinned vs pageable, same node)'
                    WHEN c.kind = 'memory' THEN 'DMA (host memory remote, thread local)'
                    WHEN c.kind = 'thread' THEN 'CPU side (thread remote, memory local)'
                    WHEN c.kind = 'process' THEN 'whole process (CPU and all memory remote)'
                    ELSE c.kind END"""


def _paired_verdict(low: str, high: str, mde: str) -> str:
    """'measured' when the ratio's 95% interval excludes 1 (the penalty's excludes 0), else what could have been."""
    return (f"CASE WHEN {low} IS NULL OR {high} IS NULL THEN 'no interval (fewer than 2 blocks)' "
            f"WHEN {low} > 1 OR {high} < 1 THEN 'measured' "
            f"ELSE 'not detectable at this noise (MDE ' || printf('%.1f', 100 * {mde}) || '%)' END")


VIEWS = {
    **BASE_VIEWS,
    "numa_penalty": NUMA_PENALTY,
    # Where both placement modes were measured for a configuration (same host memory): the process penalty
    # (numactl binds CPU and all memory) split into its DMA part (the pool penalty: only the host pool moved)
    # and its CPU-side part (process beyond pool: 1 - exp(ln ratio process - ln ratio pool), so
    # (1 - process) = (1 - dma) * (1 - cpu_side)). The CPU-side part is the interaction of a two-way ANOVA of
    # ln samples/s (mode x placement, one mean per cell): its interval and MDE pool the spread of all four arms,
    # s^2 = (sum of squares within the four cells) / (N - 4), df = N - 4 for N processes in all.
    "penalty_split": f"""
        WITH {T_TABLE},
        pen AS ({NUMA_PENALTY}),
        pair AS (
            SELECT {", ".join(f"pr.{c}" for c in SETTINGS)}, pr.gpu_name,
                   pr.study AS process_study, pr.sweep_point AS process_sweep_point,
                   po.study AS pool_study, po.sweep_point AS pool_sweep_point, pr.regime AS process_regime,
                       po.regime AS pool_regime,
                   pr.local_processes AS process_local_processes, pr.remote_processes AS process_remote_processes,
                   po.local_processes AS pool_local_processes, po.remote_processes AS pool_remote_processes,
                   pr.throughput_penalty AS process_penalty, pr.penalty_low AS process_low,
                       pr.penalty_high AS process_high,
                   pr.mde AS process_mde, pr.status AS process_status,
                   po.throughput_penalty AS dma_penalty, po.penalty_low AS dma_low, po.penalty_high AS dma_high,
                   po.mde AS dma_mde, po.status AS dma_status,
                   pr.log_ratio - po.log_ratio AS cpu_log_ratio, pr.df + po.df AS cpu_df,
                   sqrt((pr.df * pr.sd_ln ^ 2 + po.df * po.sd_ln ^ 2) / (pr.df + po.df))
                       * sqrt(1.0 / pr.local_processes + 1.0 / pr.remote_processes
                              + 1.0 / po.local_processes + 1.0 / po.remote_processes) AS cpu_se_log
            FROM pen pr JOIN pen po
              ON pr.placement_mode = 'process' AND po.placement_mode = 'pool'
             AND {" AND ".join(f"pr.{c} IS NOT DISTINCT FROM po.{c}" for c in SETTINGS)}
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
                    WHEN abs(cpu_log_ratio) >= t975 * cpu_se_log THEN 'measured'
                    ELSE 'not detectable at this noise (MDE ' ||
                        printf('%.1f', 100 * (1 - exp(-(t975 + t80) * cpu_se_log))) || '%)'
               END AS cpu_side_status
        FROM bounds
        ORDER BY {_SETTINGS_ORDER.replace("sweep_point", "process_sweep_point")}
    """,
    # The noise floor per configuration and placement, on any host (also one with a single NUMA node): the
    # spread of ln samples/s between worker processes (between_process_cv = sqrt(exp(sd_ln^2) - 1), about
    # sd_ln), and aa_mde, the MDE of an A/A comparison (local against local) with as many processes a side.
    "process_noise": f"""
        WITH {T_TABLE},
        g AS (
            SELECT {_SETTINGS}, study, sweep_point, min(gpu_name) AS gpu_name, device,
                   placement_mode, placement, count(*) AS runs,
                   list_sort(list(ln(samples_per_s)) FILTER (WHERE samples_per_s > 0)) AS ln_rates
            FROM measured_runs WHERE placement_mode <> 'paired' GROUP BY ALL
        ),
        s AS (
            SELECT * EXCLUDE (ln_rates), coalesce(len(ln_rates), 0) AS processes,
                exp(list_avg(ln_rates)) AS geo_mean_samples_per_s,
                   CASE WHEN len(ln_rates) >= 2 THEN list_stddev_samp(ln_rates) END AS sd_ln,
                   CASE WHEN len(ln_rates) >= 2 THEN 2 * len(ln_rates) - 2 END AS aa_df
            FROM g
        )
        SELECT s.* EXCLUDE (aa_df), sqrt(exp(sd_ln ^ 2) - 1) AS between_process_cv,
               1 - exp(-(coalesce(tq.t975, {Z975}) + coalesce(tq.t80, {Z80})) * sd_ln * sqrt(2.0 / processes))
                   AS aa_mde,
               CASE WHEN processes < 2 THEN 'one process: no between-process spread (set test.repeats >= 2)'
                    ELSE 'measured' END AS status
        FROM s LEFT JOIN tq ON tq.df = s.aa_df
        ORDER BY {_SETTINGS_ORDER}, placement_mode, placement
    """,
    # One row per comparison of a paired run (arms alternated trial by trial in one worker process, ABBA blocks):
    # its configuration, which part of a NUMA penalty it measures, penalty = 1 - ratio (arm / reference samples/s)
    # with the t interval over blocks, for memory arms the same after the per-trial CPU-control regression
    # (thread arms move the control: never adjusted), the MDE, the verdict, and the GPU seconds it cost.
    "paired_penalty": f"""
        SELECT r.folder, r.experiment, {", ".join(f"r.{c}" for c in SETTINGS)}, r.study, r.sweep_point, r.gpu_name,
               CASE WHEN r.pinned_memory THEN 'pinned' ELSE 'pageable' END AS host_memory, r.regime,
               c.run_id, c.comparison, c.kind, c.arm_name, c.arm_node, c.arm_pinned, c.reference_name, c.reference_node,
               c.reference_pinned, {PAIRED_PART} AS part,
               1 - c.ratio AS penalty, 1 - c.high AS penalty_low, 1 - c.low AS penalty_high, c.half_width, c.mde,
               {_paired_verdict("c.low", "c.high", "c.mde")} AS verdict,
               1 - c.adjusted_ratio AS adjusted_penalty, 1 - c.adjusted_high AS adjusted_penalty_low,
               1 - c.adjusted_low AS adjusted_penalty_high, c.adjusted_half_width, c.adjusted_mde, c.adjusted_slope,
               CASE WHEN c.adjusted_ratio IS NOT NULL THEN
                   {_paired_verdict("c.adjusted_low", "c.adjusted_high", "c.adjusted_mde")} END AS adjusted_verdict,
               c.arm_samples_per_s, c.reference_samples_per_s, c.blocks, c.df, c.stop_reason, c.target,
               c.trials_s AS gpu_seconds
        FROM paired_comparisons c JOIN measured_runs r USING (run_id)
        ORDER BY {", ".join(f"r.{c}" for c in _SETTINGS_ORDER.split(", "))}, c.run_id, c.comparison
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
    "stage_breakdown": f"""
        SELECT {_SETTINGS}, study, sweep_point, any_value(gpu_name) AS gpu_name, placement,
               placement_mode, count(*) AS runs,
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
        FROM gpu_runs
        GROUP BY ALL ORDER BY {_SETTINGS_ORDER}, placement, placement_mode
    """,
    # Per shape and execution mode: where the GPU's compute overtakes the copies (RQ2). The crossover model is
    # the smallest one from which on every larger model is compute-dominated (one noisy small model does not
    # move it); the estimate interpolates gpu_ms / copy_ms = 1 in log-log between it and the model before it.
    "crossover": """
        WITH s AS (
            SELECT host, height, batch_size, execution, pinned_memory, model_name,
                   median(flops_per_sample) AS flops_per_sample, median(parameters) AS parameters,
                   median(fwd_gpu_ms) AS gpu_ms, median(h2d_ms_median + d2h_ms_median) AS copy_ms,
                       mode(regime) AS regime
            FROM gpu_runs WHERE fwd_gpu_ms IS NOT NULL GROUP BY ALL
        ),
        marked AS (
            SELECT *, gpu_ms > copy_ms AS compute_dominated,
                   coalesce(max(flops_per_sample) FILTER (WHERE gpu_ms <= copy_ms)
                            OVER (PARTITION BY host, height, batch_size, execution, pinned_memory), -1)
                                AS last_copy_flops
            FROM s
        ),
        agg AS (
            SELECT host, height, batch_size, execution, pinned_memory,
                   min(flops_per_sample) FILTER (WHERE compute_dominated AND flops_per_sample > last_copy_flops)
                       AS crossover_flops_per_sample,
                   arg_min(model_name, flops_per_sample)
                       FILTER (WHERE compute_dominated AND flops_per_sample > last_copy_flops)
                       AS first_compute_dominated_model,
                   arg_min(parameters, flops_per_sample)
                       FILTER (WHERE compute_dominated AND flops_per_sample > last_copy_flops)
                       AS crossover_parameters,
                   arg_min(gpu_ms / copy_ms, flops_per_sample)
                       FILTER (WHERE compute_dominated AND flops_per_sample > last_copy_flops)
                       AS ratio_after,
                   arg_max(model_name, flops_per_sample)
                       FILTER (WHERE NOT compute_dominated) AS last_transfer_dominated_model,
                   max(flops_per_sample) FILTER (WHERE NOT compute_dominated) AS flops_before,
                   arg_max(gpu_ms / copy_ms, flops_per_sample) FILTER (WHERE NOT compute_dominated) AS ratio_before,
                   count(*) AS models, list(model_name || ':' || regime ORDER BY flops_per_sample) AS regimes
            FROM marked GROUP BY ALL
        )
        SELECT host, height, batch_size, execution, pinned_memory, crossover_flops_per_sample,
            first_compute_dominated_model,
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
        SELECT experiment, execution, device, height, batch_size,
               pinned_memory, model_name,
               depth, dim, median(parameters) AS parameters, median(flops_per_sample) AS flops_per_sample,
               median(samples_per_s) AS samples_per_s, median(fwd_gpu_ms) AS fwd_gpu_ms, count(*) AS runs
        FROM measured_runs GROUP BY ALL ORDER BY experiment, depth, dim
    """,
    # torch.compile against eager for the same model, shape and placement.
    "compile_speedup": """
        SELECT model_name, lane, height, batch_size, execution,
               pinned_memory, median(samples_per_s) AS samples_per_s, median(compile_s) AS compile_s,
               median(CAST(record->>'$.metrics.compile_speedup' AS DOUBLE)) AS forward_speedup,
               median(CAST(record->>'$.metrics.compile_break_even_samples' AS DOUBLE)) AS break_even_samples,
               count(*) AS runs
        FROM measured_runs WHERE execution IN ('compile', 'compile_reduce_overhead')
        GROUP BY ALL ORDER BY forward_speedup DESC NULLS LAST
    """,
    # The fastest lane and settings per model and shape, with the evidence behind it.
    "recommendations": """
        WITH ranked AS (
            SELECT model_name, height, lane, placement, execution, batch_size,
                   pinned_memory, median(samples_per_s) AS samples_per_s, count(*) AS runs,
                   row_number() OVER (PARTITION BY model_name, height ORDER BY median(samples_per_s) DESC) AS pos
            FROM measured_runs GROUP BY model_name, height, lane, placement, execution, batch_size, pinned_memory
        )
        SELECT model_name, height, lane AS best_lane, placement, execution, batch_size, pinned_memory,
               samples_per_s, runs AS evidence_runs
        FROM ranked WHERE pos = 1 ORDER BY model_name, height
    """,
}


def scoped(sql: str, where: str = "true") -> str:
    """``sql`` (a view body, or any query over ``runs`` and the base views) over the runs matching ``where``."""
    bases = ", ".join(f"{name} AS ({body})" for name, body in BASE_VIEWS.items())
    return f"WITH runs AS (SELECT * FROM main.runs WHERE {where}), {bases} SELECT * FROM ({sql})"


def create_views(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)create every view; base views first, as the others read them."""
    for name, body in VIEWS.items():
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {body}")
