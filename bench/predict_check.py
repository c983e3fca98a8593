"""The predictor against held-out configurations measured in the same call, and a rerun of a run measured in it.

Usage (from the repository root):
  ``python bench/predict_check.py [--outputs DIR] [--out bench/results]``: on a GPU host, a scaling sweep of 18
  configurations to fit on (3 models x 2 images x 3 batches, eager, pinned), 5 held-out configurations (meant to
  be transfer-, compute- and launch-bound) predicted from it and then measured, a markdown table of predicted /
  interval / measured / inside; then one configuration measured by 2 worker processes and rerun
  (``python -m numa_ops rerun --repeats 2``), the comparison's verdict printed. Pass: at least 4 of 5 inside,
  median error below 15%, the rerun's interval holding 1.
  ``python bench/predict_check.py --cpu --tiny``: the same on the CPU with tiny models, in a few minutes (the
  pipeline's check; the CPU's numbers are not the GPU's).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from numa_ops.record import RunRecord

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))


def vit(name: str, depth: int, dim: int, heads: int, patch: int) -> dict:
    return {"name": name, "patch_size": patch, "depth": depth, "heads": heads, "dim": dim, "mlp_dim": 4 * dim}


# (fit models, fit images, fit batches, held-out groups: (image, batch, models), test settings)
GPU = ([vit("fit_d2_w128", 2, 128, 2, 16), vit("fit_d6_w384", 6, 384, 6, 16), vit("fit_d12_w768", 12, 768, 12, 16)],
       [224, 384], [4, 16, 64],
       [(384, 32, [vit("ho_d3_w128", 3, 128, 2, 16), vit("ho_d10_w768", 10, 768, 12, 16)]),
        (224, 4, [vit("ho_d8_w384", 8, 384, 6, 16), vit("ho_d4_w256", 4, 256, 4, 16),
                  vit("ho_d12_w640", 12, 640, 10, 16)])],
       ["experiment.test.num_samples=512", "experiment.test.memory_size_mb=512", "experiment.test.min_trial_s=0.5"])
TINY = ([vit("fit_d1_w32", 1, 32, 2, 8), vit("fit_d2_w64", 2, 64, 2, 8), vit("fit_d4_w96", 4, 96, 2, 8)],
        [32, 64], [2, 4, 8],
        [(64, 4, [vit("ho_d3_w48", 3, 48, 2, 8), vit("ho_d1_w80", 1, 80, 2, 8)]),
         (32, 2, [vit("ho_d2_w40", 2, 40, 2, 8), vit("ho_d4_w64", 4, 64, 2, 8), vit("ho_d3_w96", 3, 96, 2, 8)])],
        ["experiment.test.num_samples=16", "experiment.test.memory_size_mb=4", "experiment.test.min_trial_s=0.05",
         "experiment.test.min_trials=3", "experiment.test.max_trials=5", "experiment.test.warmup_batches=1",
         "experiment.test.telemetry=off"])


def models_override(models: list[dict]) -> str:
    """The models as the override grammar writes a list of mappings: ``[{name:a,depth:2,...},...]``."""
    return "experiment.vit_configs=[" + ",".join("{" + ",".join(f"{k}:{v}" for k, v in m.items()) + "}"
                                                 for m in models) + "]"


def numa_ops(args: list[str], outputs: Path) -> tuple[Path, str]:
    """``python -m numa_ops ARGS`` with ``outputs`` as the outputs folder: the run folder it made, and its stdout."""
    before = {p.name for p in outputs.iterdir()}
    env = {**os.environ, "NUMA_LAB_OUTPUTS": str(outputs),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "plugins"), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "numa_ops", *args], capture_output=True, text=True, env=env,
                          timeout=3600, check=False)
    if done.returncode == 2 or (done.returncode != 0 and args[0] == "run"):
        sys.exit(f"{' '.join(args[:2])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    (folder,) = [outputs / n for n in {p.name for p in outputs.iterdir()} - before if (outputs / n / "runs").is_dir()]
    return folder, done.stdout


def run(overrides: list[str], outputs: Path) -> Path:
    return numa_ops(["run", "experiment=quick_test", "experiment.hardware.numa_nodes=[0]", *overrides], outputs)[0]


def shape(image: int) -> str:
    return f"experiment.test.tensor_shape=[3,{image},{image}]"


def measure_held_out(groups: list, settings: list[str], outputs: Path) -> list[RunRecord]:
    """Each held-out group measured (one plan each); their successful records."""
    from numa_ops import results

    records = []
    for image, batch, models in groups:
        folder = run([models_override(models), shape(image), f"experiment.test.batch_size={batch}", *settings], outputs)
        records += [r for r in results.collect(folder) if r.success and r.metrics and r.model]
    return records


def predictions(groups: list, outputs: Path) -> dict[str, object]:
    """Every held-out configuration predicted from the fit sweep's records (this host, its machine), by model name."""
    from numa_ops.db.prediction_points import read_points
    from numa_ops.predict import Predictor, Query

    predictor = Predictor(read_points(outputs / "numa_lab.duckdb"))
    out = {}
    for image, batch, models in groups:
        for m in models:
            query = Query(depth=m["depth"], dim=m["dim"], heads=m["heads"], mlp_dim=m["mlp_dim"], patch=m["patch_size"],
                          image=image, batch=batch)
            out[m["name"]] = predictor.predict(query, extrapolate=True)
    return out


def table(predicted: dict, measured: list[RunRecord]) -> tuple[list[str], int, float]:
    """The markdown table, how many measured values fell inside their intervals, and the median error."""
    lines = ["| configuration | predicted regime | measured regime | predicted samples/s | 95% interval "
             "| measured | inside | error |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    inside, errors = 0, []
    for rec in sorted(measured, key=lambda r: r.model.name):  # measured: successful records, each with its model
        got = predicted[rec.model.name]
        metrics = rec.metrics
        value = metrics.ideal_samples_per_s or metrics.samples_per_s
        low, center, high = got.samples_per_s
        hit = low <= value <= high
        inside += hit
        errors.append(abs(center / value - 1))
        lines.append(f"| {got.query.label()} | {got.regime} | {metrics.regime or '-'} | {center:.1f} | "
                     f"[{low:.1f}, {high:.1f}] | {value:.1f} | {'yes' if hit else 'no'} | {errors[-1]:.1%} |"
                     + (" (extrapolated)" if got.extrapolation else ""))
    return lines, inside, statistics.median(errors) if errors else float("nan")


def rerun_check(model: dict, image: int, batch: int, settings: list[str], outputs: Path) -> list[str]:
    """One configuration by 2 worker processes, then ``rerun --repeats 2`` of its first run: the comparison."""
    from numa_ops import results

    folder = run([models_override([model]), shape(image), f"experiment.test.batch_size={batch}",
                  "experiment.test.repeats=2", *settings], outputs)
    original = sorted(r.run_id for r in results.collect(folder))[0]
    new_folder, _ = numa_ops(["rerun", original, "--repeats", "2"], outputs)
    summary = json.loads((new_folder / "rerun.json").read_text())
    lines = [f"rerun of `{original}` into `{new_folder.name}`"] + [f"- note: {d}" for d in summary["differences"]]
    for row in summary["comparisons"]:
        interval = f"[{row['low']:.3f}, {row['high']:.3f}]" if row.get("low") is not None else "(no interval)"
        agrees = row.get("low") is not None and row["low"] <= 1 <= row["high"]
        lines.append(f"- {row['verdict']}: ratio {row['ratio']:.3f} {interval}, MDE "
                     f"{row['mde']:.1%} ({row['candidate_n']} v {row['baseline_n']} processes): "
                     f"{'agrees' if agrees else 'DOES NOT AGREE'} with the original" if row.get("mde") is not None
                     else f"- {row['verdict']}: {row.get('note')}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu", action="store_true", help="measure on the CPU (CUDA_VISIBLE_DEVICES emptied)")
    parser.add_argument("--tiny", action="store_true", help="tiny models and few samples: minutes, not the GPU check")
    parser.add_argument("--outputs", type=Path, default=None, help="outputs folder (default: a new temporary one)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="where the markdown table goes")
    args = parser.parse_args()
    if args.cpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    fit_models, images, batches, groups, settings = TINY if args.tiny else GPU
    outputs = args.outputs or Path(tempfile.mkdtemp(prefix="predict-check-"))
    outputs.mkdir(parents=True, exist_ok=True)
    started = time.time()
    run([models_override(fit_models), "experiment.test.tensor_shape=" + ",".join(f"[3,{i},{i}]" for i in images),
         "experiment.test.batch_size=" + ",".join(map(str, batches)), *settings], outputs)
    predicted = predictions(groups, outputs)  # before the held-out configurations are measured
    measured = measure_held_out(groups, settings, outputs)
    lines, inside, median_error = table(predicted, measured)
    machine = next(iter(predicted.values())).machine
    image, batch, models = groups[0]
    lines += ["", f"{inside} of {len(measured)} inside their 95% prediction intervals; median error {median_error:.1%} "
              f"(fit on {len(fit_models) * len(images) * len(batches)} configurations of {machine})", "",
              *rerun_check(models[0], image, batch, settings, outputs),
              "", f"({time.time() - started:.0f} s; outputs in {outputs})"]
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"{time.strftime('%Y-%m-%d')}_predict_check_{machine.replace(' ', '_')}{'_tiny' if args.tiny else ''}.md"
    (args.out / name).write_text(f"# Prediction check on {machine}\n\n`python bench/predict_check.py "
                                 f"{' '.join(sys.argv[1:])}`\n\n{text}\n")
    return 0 if inside >= len(measured) - 1 and median_error < 0.15 else 1


if __name__ == "__main__":
    sys.exit(main())
