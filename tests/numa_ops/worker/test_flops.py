from __future__ import annotations

import pytest
import torch
from numa_ops import config
from numa_ops.worker.engine import Engine
from numa_ops.worker.flops import bytes_per_sample, flops_per_sample

MODEL = config.VitConfig(name="t", patch_size=8, depth=2, heads=2, dim=32, mlp_dim=64, num_classes=10)


def test_flops_grow_linearly_with_depth():
    one, two = (flops_per_sample(MODEL.model_copy(update={"depth": d}), [3, 32, 32]) for d in (1, 2))
    three = flops_per_sample(MODEL.model_copy(update={"depth": 3}), [3, 32, 32])
    assert three - two == two - one > 0


def test_known_count():
    # 16 patches, seq 17, inner 128: embed 2*16*192*32;
    # layer 2*17*32*384 + 2*2*17*17*64*2 + 2*17*128*32 + 2*17*32*64*2; head 2*32*10
    expected = 196608 + 417792 + 147968 + 139264 + 139264 + 640
    assert flops_per_sample(MODEL.model_copy(update={"depth": 1}), [3, 32, 32]) == expected


@pytest.mark.parametrize("size", [32, 64, 96], ids=["32", "64", "96"])
def test_d2h_bytes_do_not_depend_on_image_size(size):
    assert bytes_per_sample(MODEL, [3, size, size]) == {"h2d": 3 * size * size * 4, "d2h": (10 + 32) * 4}


def test_tokens_mode_moves_the_token_tensor():
    assert bytes_per_sample(MODEL, [3, 32, 32], "tokens")["d2h"] == (10 + 32 + 17 * 32) * 4


@pytest.mark.parametrize("size", [32, 64], ids=["32", "64"])
def test_engine_output_buffers_match_the_analytic_bytes(size):
    test = config.TestConfig(num_samples=16, batch_size=4, tensor_shape=[3, size, size], memory_size_mb=1)
    engine = Engine(MODEL, test, torch.device("cpu"))
    assert engine.d2h_bytes == 4 * bytes_per_sample(MODEL, [3, size, size])["d2h"]
    tokens = Engine(MODEL, test.model_copy(update={"d2h_mode": "tokens"}), torch.device("cpu"))
    assert tokens.d2h_bytes == 4 * bytes_per_sample(MODEL, [3, size, size], "tokens")["d2h"]
