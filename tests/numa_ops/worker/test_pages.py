from __future__ import annotations

import pytest
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


def test_a_bound_pool_split_over_two_mappings_is_counted_whole_with_its_policy(tmp_path):
    (tmp_path / "maps").write_text(
        "7f0000000000-7f0000200000 rw-p 00000000 00:00 0\n"
        "7f0000200000-7f0000400000 rw-p 00000000 00:00 0\n"
        "7f0000400000-7f0000800000 rw-p 00000000 00:00 0\n"
    )
    (tmp_path / "numa_maps").write_text(
        "7f0000000000 bind:1 anon=512 dirty=512 N1=512 kernelpagesize_kB=4\n"
        "7f0000200000 bind:1 anon=500 dirty=500 N0=12 N1=500 kernelpagesize_kB=4\n"
        "7f0000400000 default anon=1024 dirty=1024 N0=1024 kernelpagesize_kB=4\n"
    )
    whole = placement_proof(0x7F0000000000, 1, proc=tmp_path, length=0x400000)
    assert whole["by_node"] == {"0": 12, "1": 1012} and whole["policy"] == "bind:1"
    assert whole["fraction_on_intended"] == pytest.approx(1012 / 1024)
    first = placement_proof(0x7F0000000000, 1, proc=tmp_path)  # without length: the first mapping alone
    assert first["by_node"] == {"1": 512} and first["fraction_on_intended"] == 1.0
