"""``hardware.placement`` on this host: a process-bound pool against a pool bound alone with mbind.

Both pinned (the pool mode through ``cudaHostRegister``), each proven page by page from numa_maps, and
the copy micro-pass from each. Run under ``numactl --cpunodebind=0 --membind=0 python3 bench/pool_check.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

import torch  # noqa: E402
from numa_ops.config import TestConfig, VitConfig  # noqa: E402
from numa_ops.worker.engine import Engine  # noqa: E402

MODEL = {"name": "light_d2", "patch_size": 32, "depth": 2, "heads": 4, "dim": 256, "mlp_dim": 1024, "num_classes": 1000}
TEST = {"batch_size": 8, "tensor_shape": [3, 224, 224], "memory_size_mb": 256, "pinned_memory": True,
        "execution": "cuda_graph", "d2h_mode": "outputs", "warmup_batches": 5}


def main(node: int = 0) -> int:
    if not torch.cuda.is_available():
        print("pool_check: no CUDA device here", file=sys.stderr)
        return 2
    for mode in ("process", "pool"):
        engine = Engine(VitConfig(**MODEL), TestConfig(num_samples=8, **TEST), torch.device("cuda:0"), mode, node)
        try:
            engine.warmup(5)
            copies = engine.copy_bandwidth()
            print(mode, json.dumps({"pool_pages": engine.pool_pages, "pinned": engine.pool.pinned,
                                    "h2d_gbps": round(copies["h2d_gbps"], 1)}))
        finally:
            engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
