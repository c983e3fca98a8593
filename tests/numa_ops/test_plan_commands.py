"""Every command of the experiment plan, as a phase study (DAG conf) and as shell arguments, planned
on a simulated 4-GPU host with NUMA nodes 0-3 (GPU i on node i): none is rejected, counts as expected.

The studies (numa_study, scaling_study) measure every configuration in R = 3 worker processes
(``test.repeats``); the quick test in one."""

from __future__ import annotations

import pytest
from numa_ops.config import load_experiment, split_experiment
from numa_ops.phases import load_phases
from numa_ops.plan import build_plan
from numa_ops.roles import resolve_studies
from numa_ops.topology import discover

from tests.numa_ops.fake_sysfs import make_sysfs

BUS = ["0000:1b:00.0", "0000:3b:00.0", "0000:8b:00.0", "0000:af:00.0"]
DIST = {0: "10 16 21 21", 1: "16 10 21 21", 2: "21 21 10 16", 3: "21 21 16 10"}
R = 3  # test.repeats of numa_study and scaling_study

# phase, study, the plan's shell arguments (hydra_experiment_runner.py -> python -m numa_ops run), runs
COMMANDS = [
    ("phase1_framework_validation", "quick_test", ["experiment=quick_test"], 4 * 1 * 2),
    ("phase1_framework_validation", "multi_gpu_validation",
     ["experiment=quick_test", "experiment.hardware.gpu_ids=[0,1,2,3]"], 8),
    ("phase1_framework_validation", "baseline_single_gpu",
     ["experiment=quick_test", "experiment.test.num_samples=500"], 8),
    ("phase2_numa_locality", "numa_study", ["experiment=numa_study"], R * 4 * 4 * 5),
    ("phase2_numa_locality", "key_gpu_numa_pairs",
     ["experiment=numa_study", "experiment.hardware.gpu_ids=[0,3]",
      "experiment.hardware.numa_nodes=[0,2,3]"], R * 2 * 3 * 5),
    ("phase2_numa_locality", "extended_sampling",
     ["experiment=numa_study", "experiment.test.num_samples=2000"], R * 80),
    # not in the research plan: the penalty's parts paired in one worker, one run per GPU and model
    ("phase2_numa_locality", "paired_dma",
     ["experiment=numa_study", "experiment.hardware.placement=paired", "experiment.hardware.paired=memory",
      "experiment.test.repeats=1", "experiment.hardware.numa_nodes=remote"], 4 * 5),
    ("phase2_numa_locality", "paired_cpu_side",
     ["experiment=numa_study", "experiment.hardware.placement=paired", "experiment.hardware.paired=thread",
      "experiment.test.repeats=1", "experiment.hardware.numa_nodes=remote"], 4 * 5),
    ("phase3_scaling", "scaling_study", ["experiment=scaling_study"], R * 4),
    ("phase3_scaling", "depth_scaling",
     ["-m", "experiment=scaling_study", "experiment.vit_configs[0].depth=2,4,6,8,10,12,16,20"], R * 8 * 4),
    ("phase3_scaling", "dim_scaling",
     ["-m", "experiment=scaling_study", "experiment.vit_configs[0].dim=128,256,384,512,768,1024,1280"], R * 7 * 4),
    ("phase4_memory_transfer", "image_sizes",
     ["-m", "experiment=numa_study", "experiment.test.tensor_shape=[3,224,224],[3,384,384],[3,512,512],[3,768,768]",
      "experiment.test.batch_size=10,8,6,4", "--zip",
      "experiment.test.tensor_shape,experiment.test.batch_size"], R * 4 * 80),
    ("phase4_memory_transfer", "batch_sizes",
     ["-m", "experiment=numa_study", "experiment.test.batch_size=4,8,16,32",
      "experiment.test.memory_size_mb=512,1024"], R * 8 * 80),
    ("phase4_memory_transfer", "memory_pool",
     ["-m", "experiment=numa_study", "experiment.test.memory_size_mb=256,512,1024,2048"], R * 4 * 80),
    ("phase5_compilation", "compile_scaling",
     ["-m", "experiment=scaling_study", "experiment.test.compile_model=true,false"], R * 2 * 4),
    ("phase5_compilation", "compile_numa",
     ["-m", "experiment=numa_study", "experiment.test.compile_model=true,false"], R * 2 * 80),
    ("phase5_compilation", "compile_small_model",
     ["-m", "experiment=quick_test", "experiment.test.compile_model=true,false",
      "experiment.vit_configs=[{name:small,patch_size:32,depth:2,heads:4,dim:256,mlp_dim:1024}]"], 2 * 4),
    ("phase6_production", "high_throughput",
     ["-m", "experiment=numa_study", "experiment.test.batch_size=16,32,64", "experiment.max_workers=8"], R * 3 * 80),
    ("phase6_production", "stability",
     ["experiment=numa_study", "experiment.test.num_samples=5000", "experiment.test.timeout_s=1800"], R * 80),
    ("phase6_production", "multi_gpu_patterns",
     ["-m", "experiment=numa_study",
      "experiment.hardware.gpu_ids=[0],[1],[2],[3],[0,1],[0,2]"], R * (1 + 1 + 1 + 1 + 2 + 2) * 4 * 5),
    ("nightly_sweep", "nightly",
     ["-m", "experiment=quick_test", "experiment.test.batch_size=8,32", "experiment.test.num_samples=512",
      "experiment.test.repeats=2"], 2 * 2 * 4 * 2),
]


# where a study's role (phases.yaml) differs from the plan's literal ids on this host: each of the 4 GPUs on its own
# node and its farthest (the plan: GPUs 0 and 3 on nodes 0, 2, 3); every GPU alone and GPU 0 with each other (the
# plan: [0] to [3], [0,1], [0,2])
ROLE_RUNS = {"key_gpu_numa_pairs": R * 4 * 2 * 5, "multi_gpu_patterns": R * (4 + 3 * 2) * 4 * 5}


@pytest.fixture(scope="module")
def topo(tmp_path_factory):
    root = make_sysfs(tmp_path_factory.mktemp("sys"), {0: "0-15", 1: "16-31", 2: "32-47", 3: "48-63"},
                      dict(zip(BUS, [0, 1, 2, 3], strict=True)), DIST)
    return discover(root, use_nvml=False)


def test_every_study_is_covered():
    phases = load_phases()
    assert {(p, s) for p, phase in phases.items() for s in phase.studies} == {(p, s) for p, s, _, _ in COMMANDS}


@pytest.mark.parametrize(("phase", "study", "args", "runs"), COMMANDS,
                         ids=[f"{p.split('_')[0]}-{s}" for p, s, _, _ in COMMANDS])
def test_as_dag_conf(topo, phase, study, args, runs):
    configs = resolve_studies(load_phases()[phase], topo, [study]).configs
    lanes = build_plan("f", configs, topo)
    assert sum(len(lane.runs) for lane in lanes) == ROLE_RUNS.get(study, runs)


@pytest.mark.parametrize(("phase", "study", "args", "runs"), COMMANDS,
                         ids=[f"{p.split('_')[0]}-{s}" for p, s, _, _ in COMMANDS])
def test_as_shell_args(topo, phase, study, args, runs):
    from numa_ops.cli import parse_run_args

    request = parse_run_args(args)
    experiment, rest = split_experiment(request.overrides)
    lanes = build_plan("f", load_experiment(experiment, rest, request.zip_keys), topo)
    assert sum(len(lane.runs) for lane in lanes) == runs


def test_key_pairs_placements(topo):
    lanes = build_plan("f", resolve_studies(load_phases()["phase2_numa_locality"], topo,
                                            ["key_gpu_numa_pairs"]).configs, topo)
    placements = {(lane.gpu_id, lane.cpu_node): lane.runs[0].placement for lane in lanes}
    # each GPU on its own node and on its farthest (distance 21; the lower id of two as far)
    assert placements == {(0, 0): "local", (0, 2): "remote", (1, 1): "local", (1, 2): "remote",
                          (2, 2): "local", (2, 0): "remote", (3, 3): "local", (3, 0): "remote"}
    assert {lane.runs[0].numa_distance for lane in lanes if lane.runs[0].placement == "remote"} == {21}


@pytest.mark.parametrize("study", ["paired_dma", "paired_cpu_side"])
def test_paired_studies_pair_each_gpus_node_with_its_farthest(topo, study):
    lanes = build_plan("f", resolve_studies(load_phases()["phase2_numa_locality"], topo, [study]).configs, topo)
    arms = {lane.gpu_id: [(a.node, a.placement) for a in lane.runs[0].arms] for lane in lanes}
    assert arms == {0: [(0, "local"), (2, "remote")], 1: [(1, "local"), (2, "remote")],
                    2: [(2, "local"), (0, "remote")], 3: [(3, "local"), (0, "remote")]}
    assert all(lane.placement_mode == "paired" for lane in lanes)


def test_image_sizes_are_paired_with_batches(topo):
    lanes = build_plan("f", resolve_studies(load_phases()["phase4_memory_transfer"], topo,
                                            ["image_sizes"]).configs, topo)
    pairs = {(r.test.tensor_shape[1], r.test.batch_size) for lane in lanes for r in lane.runs}
    assert pairs == {(224, 10), (384, 8), (512, 6), (768, 4)}


def test_multi_gpu_patterns_run_their_gpus_together(topo):
    from numa_ops.cli import parse_run_args

    overrides = parse_run_args(["-m", "experiment=numa_study",
                                'experiment.hardware.gpu_ids="[0],[1],[2],[3],[0,1],[0,2]"']).overrides
    experiment, rest = split_experiment(overrides)
    as_role = resolve_studies(load_phases()["phase6_production"], topo, ["multi_gpu_patterns"]).configs
    for configs, pairs in ((load_experiment(experiment, rest), [1, 2]), (as_role, [1, 2, 3])):
        lanes = build_plan("f", configs, topo)
        groups = {r.group.id: sorted(r.group.runs) for lane in lanes for r in lane.runs if r.group}
        assert len(groups) == R * len(pairs) * 4 * 5  # the pairs x 4 nodes x 5 models, each repeat a pattern of its own
        assert {frozenset(name.split("-")[0] for name in members) for members in groups.values()} == {
            frozenset({"gpu0", f"gpu{i}"}) for i in pairs}
        singles = [r for lane in lanes for r in lane.runs if not r.group]
        assert len(singles) == R * 4 * 4 * 5  # [0], [1], [2], [3] on their own


def test_a_gpu_list_that_is_not_swept_is_no_pattern(topo):
    lanes = build_plan("f", load_experiment("quick_test", ["experiment.hardware.gpu_ids=[0,1,2,3]"]), topo)
    assert not any(r.group for lane in lanes for r in lane.runs)


def test_a_swept_gpu_set_with_spread_is_shared_out_not_a_pattern(topo):
    configs = load_experiment("quick_test", ['experiment.hardware.gpu_ids="[0,1],[2,3]"',
                                             "experiment.hardware.spread=true"])
    lanes = build_plan("f", configs, topo)
    assert not any(r.group for lane in lanes for r in lane.runs)
    assert all(r.pool for lane in lanes for r in lane.runs)


def _runs(lanes):
    return [r for lane in lanes for r in lane.runs]


def test_a_form_override_replaces_the_studys_sweep_of_the_same_key(topo):
    configs = resolve_studies(load_phases()["phase4_memory_transfer"], topo, ["batch_sizes"],
                              ["experiment.test.batch_size=16"]).configs
    assert [c.test.batch_size for c in configs["batch_sizes"]] == [16, 16]
    assert sorted(c.test.memory_size_mb for c in configs["batch_sizes"]) == [512, 1024]
    runs = _runs(build_plan("f", configs, topo))
    assert len(runs) == R * 2 * 80
    assert len({r.run_id for r in runs}) == len(runs)
    assert {r.test.batch_size for r in runs} == {16}


def test_a_form_override_of_an_indexed_key_names_the_model_once(topo):
    configs = resolve_studies(load_phases()["phase3_scaling"], topo, ["depth_scaling"],
                              ["experiment.vit_configs[0].depth=3"]).configs
    assert len(configs["depth_scaling"]) == 1
    runs = _runs(build_plan("f", configs, topo))
    assert len(runs) == R * 4
    assert {r.model.name for r in runs} == {"base-depth3"}


def test_a_form_override_of_a_zipped_key_leaves_the_rest_of_the_zip_swept(topo):
    configs = resolve_studies(load_phases()["phase4_memory_transfer"], topo, ["image_sizes"],
                              ["experiment.test.batch_size=16"]).configs
    runs = _runs(build_plan("f", configs, topo))
    assert len(runs) == R * 4 * 80
    assert {(r.test.tensor_shape[1], r.test.batch_size) for r in runs} == {(224, 16), (384, 16), (512, 16), (768, 16)}


def test_a_form_override_of_the_gpu_sets_is_no_pattern(topo):
    configs = resolve_studies(load_phases()["phase6_production"], topo, ["multi_gpu_patterns"],
                              ["experiment.hardware.gpu_ids=[0,1]"]).configs
    runs = _runs(build_plan("f", configs, topo))
    assert not any(r.group for r in runs)
    assert len(runs) == R * 2 * 4 * 5


# a whole phase (every study at once, as its DAG plans it) on the simulated 4-GPU, 4-node host
PHASE_RUNS = [
    ("phase2_numa_locality", R * (80 + 40 + 80) + 2 * 4 * 5),  # and the two paired studies, one process a run
    ("phase4_memory_transfer", R * (4 + 8 + 4) * 80),
    ("phase6_production", R * (3 * 80 + 80 + 10 * 4 * 5)),
]


@pytest.mark.parametrize(("phase", "runs"), PHASE_RUNS, ids=[p.split("_")[0] for p, _ in PHASE_RUNS])
def test_a_whole_phase_with_repeats_stays_under_the_cap(topo, phase, runs):
    from numa_ops.plan import count_runs, max_runs

    lanes = build_plan("f", resolve_studies(load_phases()[phase], topo).configs, topo)
    assert count_runs(lanes) == runs <= max_runs()
    assert {lane.repeat for lane in lanes if lane.placement_mode != "paired"} == set(range(R))
