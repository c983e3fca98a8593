from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from numa_ops import config
from numa_ops.worker.model import build_model
from numa_ops.worker.pool import HostPool

MODEL = config.VitConfig(name="t", patch_size=8, depth=1, heads=2, dim=32, mlp_dim=64, num_classes=10)


@pytest.mark.parametrize("size", [32, 64], ids=["32px", "64px"])
def test_outputs_do_not_depend_on_image_size(size):
    model = build_model(MODEL, [3, size, size]).eval()
    with torch.inference_mode():
        logits, pooled = model(torch.randn(4, 3, size, size))
    assert logits.shape == (4, 10)
    assert pooled.shape == (4, 32)


def test_pool_is_round_robin_over_whole_batches():
    pool = HostPool(memory_size_mb=1, batch_size=4, tensor_shape=[3, 32, 32], pinned=False)
    assert pool.num_batches == 2**20 // (4 * 3 * 32 * 32 * 4)
    assert torch.equal(pool.batch(0), pool.batch(pool.num_batches))
    assert not torch.equal(pool.batch(0), pool.batch(1))
    assert pool.batch(0).abs().sum() > 0  # filled, not zeros


def test_pool_smaller_than_a_batch_still_holds_one():
    pool = HostPool(memory_size_mb=1, batch_size=64, tensor_shape=[3, 224, 224], pinned=False)
    assert pool.num_batches == 1


def test_vit_loaded_alone_is_the_module_a_later_import_finds():
    # loaded without vit_pytorch's package __init__ (start-up time), but registered as an import
    # would be, so a later ``import vit_pytorch.vit`` (pickling, user code) gets the same class
    code = ("from numa_ops.worker.model import ViTForProfiling; import vit_pytorch.vit as v; "
            "assert issubclass(ViTForProfiling, v.ViT), 'two copies of vit_pytorch.vit'")
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ.copy())
