from __future__ import annotations

import torch
from numa_ops.worker.pages import placement_proof


def test_fake_proc_counts_pages_per_node(tmp_path):
    (tmp_path / "maps").write_text(
        "7f0000000000-7f0000400000 rw-p 00000000 00:00 0\n7f0000400000-7f0000800000 rw-p 00000000 00:00 0\n"
    )
    (tmp_path / "numa_maps").write_text(
        "7f0000000000 default anon=10 dirty=10 N0=10 kernelpagesize_kB=4\n"
        "7f0000400000 bind:1 anon=1024 dirty=1024 N0=256 N1=768 kernelpagesize_kB=4\n"
    )
    proof = placement_proof(0x7F0000400000 + 4096, 1, proc=tmp_path)
    assert proof["by_node"] == {"0": 256, "1": 768}
    assert proof["fraction_on_intended"] == 0.75
    assert placement_proof(0x1000, 0, proc=tmp_path)["source"] is None  # not mapped


def test_a_real_buffer_is_on_this_hosts_node():
    buf = torch.ones(8 * 2**20 // 4)  # 8 MiB, touched
    proof = placement_proof(buf.data_ptr(), 0)
    assert proof["source"] == "numa_maps"
    assert proof["fraction_on_intended"] == 1.0  # one-node host: every page is on node 0
