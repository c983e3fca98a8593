from __future__ import annotations

import pytest
import yaml
from numa_ops.config import ConfigError, available_experiments, load_experiment, split_experiment


def test_shipped_experiments_load():
    assert {"quick_test", "numa_study", "scaling_study"} <= set(available_experiments())
    for name in ("quick_test", "numa_study", "scaling_study"):
        (cfg,) = load_experiment(name)
        assert cfg.name == name
        assert cfg.vit_configs and cfg.test.num_samples > 0


def test_overrides_apply():
    (cfg,) = load_experiment(
        "quick_test",
        [
            "experiment.test.num_samples=500",
            "experiment.hardware.gpu_ids=[0,1,2,3]",
            "experiment.vit_configs[0].depth=6",
        ],
    )
    assert cfg.test.num_samples == 500
    assert cfg.hardware.gpu_ids == [0, 1, 2, 3]
    assert cfg.vit_configs[0].depth == 6


def test_replace_model_list():
    (cfg,) = load_experiment(
        "quick_test", ["experiment.vit_configs=[{name:small,patch_size:32,depth:2,heads:4,dim:256,mlp_dim:1024}]"]
    )
    assert [v.name for v in cfg.vit_configs] == ["small"]


def test_sweep_gives_one_config_per_point():
    configs = load_experiment("scaling_study", ["experiment.vit_configs[0].depth=2,4,6"])
    assert [c.vit_configs[0].depth for c in configs] == [2, 4, 6]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(["experiment.test.batch_size=-1"],
                     "experiment.test.batch_size: Input should be greater than or equal to 1", id="negative-batch"),
        pytest.param(["experiment.test.foo=1"], "experiment.test.foo: unknown key", id="unknown-key"),
        pytest.param(["experiment.tset.batch_size=1"], "experiment.tset: unknown key", id="unknown-section"),
        pytest.param(["experiment.test.batch_size=["], "malformed value", id="malformed"),
        pytest.param(["experiment.test.num_samples=abc"],
                     "experiment.test.num_samples: Input should be a valid integer", id="wrong-type"),
        pytest.param(["experiment.test.compile_model=1"],
                     "experiment.test.compile_model: Input should be a valid boolean", id="int-for-bool"),
        pytest.param(["experiment.test.tensor_shape=[3,225,224]"], "patch_size=32 does not divide",
                     id="patch-does-not-divide"),
        pytest.param(["experiment.vit_configs[9].depth=2"], "experiment.vit_configs has 2 entries, no index 9",
                     id="index-out-of-range"),
        pytest.param(["experiment.test.num_samples=1000000000000"],
                     "experiment.test.num_samples: Input should be less than", id="huge"),
        pytest.param(["experiment.hardware.gpu_ids=[]"], "gpu_ids must be 'all' or a non-empty list", id="empty-gpus"),
    ],
)
def test_bad_input_names_the_key(overrides, message):
    with pytest.raises(ConfigError) as excinfo:
        load_experiment("quick_test", overrides)
    assert message in str(excinfo.value)


@pytest.mark.parametrize(
    "name",
    [pytest.param("nope", id="unknown"), pytest.param("../../etc/passwd", id="traversal"),
     pytest.param(".hidden", id="dotfile")],
)
def test_unknown_or_unsafe_experiment(name):
    with pytest.raises(ConfigError, match="available: .*quick_test"):
        load_experiment(name)


def test_split_experiment():
    assert split_experiment(["experiment=numa_study", "experiment.test.num_samples=5"]) == (
        "numa_study",
        ["experiment.test.num_samples=5"],
    )
    with pytest.raises(ConfigError, match="no experiment given"):
        split_experiment(["experiment.test.num_samples=5"])


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        (["experiment.vit_configs[0].depth=2,4"], ["base-depth2", "base-depth4"]),
        (["experiment.vit_configs[0].dim=128", "experiment.vit_configs[0].heads=4"], ["base-dim128-heads4"]),
        (["experiment.vit_configs[0].depth=2", "experiment.vit_configs[0].name=tiny"], ["tiny"]),
        (["experiment.test.batch_size=8,16"], ["base", "base"]),
    ],
    ids=["depth-sweep", "two-fields", "named", "not-architecture"],
)
def test_a_model_whose_architecture_is_overridden_is_renamed(overrides, names):
    assert [c.vit_configs[0].name for c in load_experiment("scaling_study", overrides)] == names



@pytest.mark.parametrize(
    ("hardware", "together"),
    [
        pytest.param({"together": False}, False, id="together-false-in-yaml"),
        pytest.param(None, True, id="empty-hardware-section"),
        pytest.param("absent", True, id="no-hardware-section"),
    ],
)
def test_gpu_set_sweep_is_a_pattern_unless_the_yaml_says_otherwise(configs_dir, hardware, together):
    data = yaml.safe_load((configs_dir / "quick_test.yaml").read_text())
    if hardware == "absent":
        del data["hardware"]
    else:
        data["hardware"] = hardware
    (configs_dir / "sets.yaml").write_text(yaml.safe_dump(data))
    configs = load_experiment("sets", ['experiment.hardware.gpu_ids="[0],[0,1]"'])
    assert [c.hardware.together for c in configs] == [together, together]


def test_the_trigger_forms_sample_range_is_the_models():
    """The form's num_samples bounds come from the experiment model (a bound changed there changes the form)."""
    from numa_ops.config import TestConfig, field_bounds
    from numa_ops.trigger_params import MAX_NUM_SAMPLES, MIN_NUM_SAMPLES

    assert field_bounds(TestConfig, "num_samples") == (MIN_NUM_SAMPLES, MAX_NUM_SAMPLES) == (1, 10_000_000)
    assert field_bounds(TestConfig, "compile_model") == (None, None)
