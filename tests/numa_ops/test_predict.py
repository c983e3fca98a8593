"""The predictor on planted laws: records whose stage times follow known laws with lognormal noise (a fixed seed)
go through the real load into a DuckDB file; held out one configuration at a time, the measured samples/s fall
inside their 95% prediction intervals 90-98% of the time, and the fitted exponents are the planted ones."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from numa_ops import db
from numa_ops.db.prediction_points import read_points
from numa_ops.predict import OutsideRange, Predictor, Query, every_machine, summary

from tests.numa_ops.planted import write
from tests.numa_ops.records import record

HOSTS = 8
NOISE = 0.06  # sd of ln(stage time) about its law, per configuration
# planted laws: ln ms = ln A + sum b ln(input)  (inputs as Query.features gives them)
H2D = {"pinned": (1 / 25e6, {"h2d_bytes": 1.0}), "pageable": (1 / 9e6, {"h2d_bytes": 1.0})}
D2H = {"pinned": (2e-4, {"d2h_bytes": 0.5}), "pageable": (3e-4, {"d2h_bytes": 0.5})}
FORWARD = (2e-9, {"flops": 0.8, "layers": 0.4})
ISSUE = (0.012, {"layers": 1.0, "h2d_bytes": 0.02})


def _ms(law: tuple[float, dict[str, float]], feats: dict[str, float], rng: np.random.Generator) -> float:
    scale, exponents = law
    return math.exp(math.log(scale) + sum(b * feats[k] for k, b in exponents.items()) + rng.normal(0, NOISE))


def _configurations() -> list[Query]:
    return [Query(depth=d, dim=w, heads=4, mlp_dim=2 * w, patch=8, image=img, batch=b, host_memory=mem)
            for d in (1, 3, 8, 16) for w in (64, 192) for img in (32, 96) for b in (2, 16)
            for mem in ("pinned", "pageable")]


def _planted_record(run_id: str, host: str, q: Query, rng: np.random.Generator) -> dict:
    feats = q.features()
    stages = {"h2d": _ms(H2D[q.host_memory], feats, rng), "forward": _ms(FORWARD, feats, rng),
              "d2h": _ms(D2H[q.host_memory], feats, rng), "issue": _ms(ISSUE, feats, rng)}
    slowest = max(stages, key=stages.__getitem__)
    regime = {"issue": "launch-bound", "forward": "compute-bound"}.get(slowest, "transfer-bound")
    model = {"name": f"d{q.depth}w{q.dim}", "patch_size": q.patch, "depth": q.depth, "heads": q.heads, "dim": q.dim,
             "mlp_dim": q.mlp_dim, "num_classes": q.num_classes}
    rec = record(run_id, device="cuda", placement="local", gpu_id=0, lane="gpu0-cpu0-mem0", model=model,
                 placement_mode="process", environment={"host": host, "gpu_name": "Planted GPU"}, metrics={
                     "samples_per_s": q.batch * 1e3 / sum(stages.values()), "execution": "eager", "d2h_mode": "outputs",
                     "ideal_samples_per_s": q.batch * 1e3 / stages[slowest], "pool_pinned": q.host_memory == "pinned",
                     "h2d_ms": {"median": stages["h2d"]}, "d2h_ms": {"median": stages["d2h"]},
                     "forward_ms": {"median": max(stages["forward"], stages["issue"])},
                     "fwd_gpu_ms": stages["forward"], "issue_ms": {"batch": {"median": stages["issue"]}},
                     "regime": regime})
    rec["test"].update(batch_size=q.batch, tensor_shape=q.shape, pinned_memory=q.host_memory == "pinned")
    return rec


@pytest.fixture(scope="module")
def planted_points(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("planted")
    rng = np.random.default_rng(27)
    for h in range(HOSTS):
        folder = base / f"host{h}"
        for i, q in enumerate(_configurations()):
            write(folder, _planted_record(f"host{h}.c{i}", f"host{h}", q, rng))
    database = base / "numa_lab.duckdb"
    db.load_runs(sorted(p for p in base.iterdir() if p.is_dir()), database)
    return read_points(database)


def test_held_out_samples_per_s_are_inside_their_95_percent_intervals_90_to_98_percent_of_the_time(planted_points):
    held = every_machine(planted_points)
    assert len(held) == HOSTS * len(_configurations())
    made = [h for h in held if h.refused is None]
    assert len(made) >= 0.9 * len(held)
    coverage = np.mean([h.inside for h in made])
    assert 0.90 <= coverage <= 0.98, coverage
    table = summary(held)
    assert set(table["regime"]) == {"transfer-bound", "compute-bound", "launch-bound"}
    assert table["median abs error"].max() < 0.15


def test_the_planted_laws_come_back(planted_points):
    predictor = Predictor(planted_points, host="host0")
    q = Query(depth=4, dim=128, heads=4, mlp_dim=256, patch=8, image=64, batch=8)
    for stage, (_, exponents) in {"h2d": H2D["pinned"], "d2h": D2H["pinned"], "forward": FORWARD,
                                  "cpu_issue": ISSUE}.items():
        law, _ = predictor.law(stage, q)
        for name, planted in exponents.items():
            assert law.slope(name) == pytest.approx(planted, abs=0.12), (stage, name)


def test_a_prediction_names_its_regime_stages_and_the_configurations_it_leans_on(planted_points):
    got = Predictor(planted_points, host="host0").predict(
        Query(depth=16, dim=192, heads=4, mlp_dim=384, patch=8, image=32, batch=2))
    assert got.regime == "launch-bound" and got.binding_stage == "cpu_issue"
    low, value, high = got.samples_per_s
    assert low < value < high
    assert set(got.stages) == {"h2d", "forward", "d2h", "cpu_issue"}
    assert got.leans_on and all(c["example_run"].startswith("host0.") for c in got.leans_on)
    assert not got.extrapolation


def test_outside_the_measured_range_widens_then_refuses(planted_points):
    predictor = Predictor(planted_points, host="host0")
    inside = predictor.predict(Query(depth=8, dim=192, heads=4, mlp_dim=384, patch=8, image=96, batch=16))
    near = predictor.predict(Query(depth=8, dim=192, heads=4, mlp_dim=384, patch=8, image=96, batch=24))
    assert near.extrapolation and not inside.extrapolation
    assert near.stages["h2d"].high / near.stages["h2d"].low > inside.stages["h2d"].high / inside.stages["h2d"].low
    with pytest.raises(OutsideRange, match="h2d_bytes"):
        predictor.predict(Query(depth=8, dim=192, heads=4, mlp_dim=384, patch=8, image=96, batch=256))
    far = predictor.predict(Query(depth=8, dim=192, heads=4, mlp_dim=384, patch=8, image=96, batch=256),
                            extrapolate=True)
    assert far.extrapolation


def test_a_stage_without_enough_configurations_says_so(tmp_path: Path):
    rng = np.random.default_rng(1)
    q = Query(depth=2, dim=64, heads=4, mlp_dim=128, patch=8, image=32, batch=4)
    write(tmp_path / "one", _planted_record("one.c0", "lonely", q, rng))
    database = tmp_path / "numa_lab.duckdb"
    db.load_runs([tmp_path / "one"], database)
    from numa_ops.predict import NoLaw

    with pytest.raises(NoLaw, match="1 measured configuration"):
        Predictor(read_points(database)).predict(q)


def test_the_report_has_a_prediction_check_per_regime(tmp_path: Path):
    rng = np.random.default_rng(5)
    folder = tmp_path / "f1"
    for i, q in enumerate(_configurations()[:32]):
        write(folder, _planted_record(f"f1.c{i}", "h", q, rng))
    database = tmp_path / "numa_lab.duckdb"
    db.load_runs([folder], database)
    from numa_ops import report

    page = report.write_report(tmp_path / "rep", "t", database=database, folder="f1").read_text()
    section = page.split('id="prediction-check"', 1)[1].split("<h2", 1)[0]
    assert "coverage of 95% intervals" in section and "median abs error" in section
    assert "launch-bound" in section and "%" in section


def test_the_command_prints_json_and_refuses_far_outside_the_range(tmp_path: Path):
    import json
    import subprocess
    import sys

    rng = np.random.default_rng(3)
    folder = tmp_path / "f1"
    for i, q in enumerate(_configurations()[:32]):
        write(folder, _planted_record(f"f1.c{i}", "h", q, rng))
    database = tmp_path / "numa_lab.duckdb"
    db.load_runs([folder], database)
    base = [sys.executable, "-m", "numa_ops", "predict", "--database", str(database), "--host", "h", "--depth", "3",
            "--dim", "192", "--heads", "4", "--mlp-dim", "384", "--patch", "8", "--image", "96"]
    done = subprocess.run([*base, "--batch", "16", "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["regime"] in ("transfer-bound", "launch-bound", "compute-bound") and got["host"] == "h"
    assert got["samples_per_s"]["low"] < got["samples_per_s"]["value"] < got["samples_per_s"]["high"]
    far = subprocess.run([*base, "--batch", "1024"], capture_output=True, text=True, timeout=300)
    assert far.returncode == 2 and "beyond what was measured" in far.stderr
