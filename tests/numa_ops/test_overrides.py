from __future__ import annotations

import pytest
from numa_ops.overrides import OverrideError, expand_sweeps, parse_override


@pytest.mark.parametrize(
    ("text", "path", "values", "sweep"),
    [
        pytest.param("experiment.test.num_samples=500", ("test", "num_samples"), (500,), False, id="int"),
        pytest.param("experiment.hardware.gpu_ids=[0,1,2,3]", ("hardware", "gpu_ids"), ([0, 1, 2, 3],), False,
                     id="list"),
        pytest.param("experiment.test.tensor_shape=[3,384,384]", ("test", "tensor_shape"), ([3, 384, 384],), False,
                     id="shape"),
        pytest.param(
            "experiment.vit_configs=[{name:small,patch_size:32,depth:2,heads:4,dim:256,mlp_dim:1024}]",
            ("vit_configs",),
            ([{"name": "small", "patch_size": 32, "depth": 2, "heads": 4, "dim": 256, "mlp_dim": 1024}],),
            False,
            id="list-of-dicts",
        ),
        pytest.param("experiment.vit_configs[0].depth=6", ("vit_configs", 0, "depth"), (6,), False, id="indexed"),
        pytest.param("experiment.test.batch_size=4,8,16,32", ("test", "batch_size"), (4, 8, 16, 32), True, id="sweep"),
        pytest.param("experiment.test.compile_model=true,false", ("test", "compile_model"), (True, False), True,
                     id="bool-sweep"),
        pytest.param(
            'experiment.test.tensor_shape="[3,224,224],[3,384,384]"',
            ("test", "tensor_shape"),
            ([3, 224, 224], [3, 384, 384]),
            True,
            id="quoted-list-sweep",
        ),
        pytest.param("experiment.hardware.gpu_ids=[0],[1],[0,1]", ("hardware", "gpu_ids"), ([0], [1], [0, 1]), True,
                     id="list-sweep"),
    ],
)
def test_parse(text, path, values, sweep):
    override = parse_override(text)
    assert override.path == path
    assert override.values == values
    assert override.is_sweep is sweep


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("experiment.test.batch_size=[", "malformed value", id="open-bracket"),
        pytest.param("experiment.hardware.gpu_ids=[0];rm -rf ~", "malformed value", id="shell-metachars"),
        pytest.param("test.batch_size=4", "unknown key 'test.batch_size'", id="no-root"),
        pytest.param("experiment.test.batch_size", "expected key=value", id="no-equals"),
        pytest.param("experiment..test=1", "malformed key", id="empty-part"),
        pytest.param("experiment.test[x]=1", "malformed key", id="bad-index"),
        pytest.param("experiment.test.batch_size=", "value is empty", id="empty-value"),
        pytest.param("experiment.test.num_samples=__import__('os')", "malformed value", id="no-eval"),
    ],
)
def test_malformed(text, message):
    with pytest.raises(OverrideError, match=message.replace("[", r"\[")):
        parse_override(text)


def test_expand_sweeps_is_cartesian_in_order():
    points = expand_sweeps(
        [
            parse_override("experiment.test.batch_size=4,8"),
            parse_override("experiment.test.num_samples=10"),
            parse_override("experiment.test.compile_model=true,false"),
        ]
    )
    assert [[o.value for o in p] for p in points] == [
        [4, 10, True],
        [4, 10, False],
        [8, 10, True],
        [8, 10, False],
    ]


def test_zip_pairs_sweeps_element_by_element():
    points = expand_sweeps(
        [
            parse_override('experiment.test.tensor_shape="[3,224,224],[3,384,384],[3,512,512],[3,768,768]"'),
            parse_override("experiment.test.batch_size=10,8,6,4"),
            parse_override("experiment.test.compile_model=true,false"),
        ],
        zip_keys=[["experiment.test.tensor_shape", "experiment.test.batch_size"]],
    )
    assert len(points) == 8
    pairs = {(p[0].value[1], p[1].value) for p in points}
    assert pairs == {(224, 10), (384, 8), (512, 6), (768, 4)}


def test_zip_needs_equal_lengths():
    with pytest.raises(OverrideError, match="different lengths"):
        expand_sweeps(
            [parse_override("experiment.test.batch_size=1,2"), parse_override("experiment.test.num_samples=1,2,3")],
            zip_keys=[["experiment.test.batch_size", "experiment.test.num_samples"]],
        )


def test_a_later_override_of_a_key_replaces_the_earlier_one():
    points = expand_sweeps(
        [
            parse_override("experiment.test.batch_size=4,8,16,32"),
            parse_override("experiment.test.memory_size_mb=512,1024"),
            parse_override("experiment.test.batch_size=16"),
        ]
    )
    assert [[(o.key, o.value) for o in p] for p in points] == [
        [("experiment.test.memory_size_mb", 512), ("experiment.test.batch_size", 16)],
        [("experiment.test.memory_size_mb", 1024), ("experiment.test.batch_size", 16)],
    ]


def test_indexed_keys_are_matched_by_path():
    points = expand_sweeps(
        [parse_override("experiment.vit_configs[0].depth=2,4"), parse_override("experiment.vit_configs[00].depth=3")]
    )
    assert [[(o.path, o.value) for o in p] for p in points] == [[(("vit_configs", 0, "depth"), 3)]]


def test_a_zipped_key_set_to_one_value_is_held_at_every_point():
    points = expand_sweeps(
        [
            parse_override('experiment.test.tensor_shape="[3,224,224],[3,384,384]"'),
            parse_override("experiment.test.batch_size=10,8"),
            parse_override("experiment.test.batch_size=16"),
        ],
        zip_keys=[["experiment.test.tensor_shape", "experiment.test.batch_size"]],
    )
    assert [(p[0].value[1], p[1].value) for p in points] == [(224, 16), (384, 16)]


def test_a_key_in_two_zip_groups_is_refused():
    with pytest.raises(OverrideError, match="already in another zip group"):
        expand_sweeps(
            [parse_override(f"experiment.test.{k}=1,2") for k in ("batch_size", "num_samples", "memory_size_mb")],
            zip_keys=[["experiment.test.batch_size", "experiment.test.num_samples"],
                      ["experiment.test.num_samples", "experiment.test.memory_size_mb"]],
        )
