"""The host pool: made by the bound worker (``hardware.placement=process``), or bound alone to a node with
mbind (``placement=pool``), proven page by page from numa_maps.

This host has one NUMA node and no GPU: the real mbind is exercised on node 0; a second node is
simulated by recording the mbind calls (``RecordingMbind``); CUDA registration is stood in for.
"""

from __future__ import annotations

import ctypes
import errno
import mmap

import pytest
import torch
from numa_ops.topology import MPOL_BIND, MPOL_MF_MOVE, MPOL_MF_STRICT
from numa_ops.worker import pool as pool_module
from numa_ops.worker.pages import placement_proof
from numa_ops.worker.pool import HostPool, PoolBindingError

from tests.numa_ops.fake_sysfs import RecordingMbind

SHAPE = [3, 32, 32]  # 12 KiB an image; 8 images a batch: 96 KiB
BATCH_BYTES = 8 * 3 * 32 * 32 * 4



def _kernel_binds() -> bool:
    try:
        HostPool(1, 8, SHAPE, pinned=False, node=0).close()
    except PoolBindingError:
        return False
    return True


needs_mbind = pytest.mark.skipif(not _kernel_binds(), reason="needs a kernel (and container) that allows mbind")


@needs_mbind
def test_a_pool_bound_to_node_0_is_proven_on_node_0_by_numa_maps():
    pool = HostPool(8, 8, SHAPE, pinned=False, node=0)  # the real mbind(2)
    proof = placement_proof(pool.data.data_ptr(), 0)
    assert proof["source"] == "numa_maps" and proof["fraction_on_intended"] == 1.0
    assert proof["policy"] == "bind:0"  # the mapping found is the mbind'ed one, not the heap's
    assert sum(proof["by_node"].values()) * mmap.PAGESIZE >= pool.nbytes
    pool.close()


@needs_mbind
def test_a_bound_pool_holds_what_the_process_pool_holds():
    bound, plain = HostPool(1, 8, SHAPE, pinned=False, node=0), HostPool(1, 8, SHAPE, pinned=False)
    for name in ("batch_shape", "num_batches", "batch_bytes", "nbytes", "pinned"):
        assert getattr(bound, name) == getattr(plain, name), name
    assert bound.data.shape == plain.data.shape and bound.data.dtype == torch.float32
    assert torch.equal(bound.data, plain.data)  # same seed, same images
    assert torch.equal(bound.batch(bound.num_batches + 1), plain.batch(1))  # round the pool
    bound.close()
    bound.close()  # twice is harmless
    assert bound.data.numel() == 0


@pytest.mark.parametrize(
    ("node", "words", "maxnode"),
    [pytest.param(1, (2,), 65, id="node1"), pytest.param(0, (1,), 65, id="node0"),
     pytest.param(65, (0, 2), 129, id="node65")],
)
def test_a_pool_on_a_simulated_node_asks_mbind_for_exactly_that_node(node, words, maxnode):
    binder = RecordingMbind()
    pool = HostPool(1, 8, SHAPE, pinned=False, node=node, binder=binder)
    length = -(-pool.nbytes // mmap.PAGESIZE) * mmap.PAGESIZE
    assert binder.calls == [(pool.data.data_ptr(), length, MPOL_BIND, words, maxnode, MPOL_MF_STRICT | MPOL_MF_MOVE)]
    assert pool.nbytes == pool.num_batches * BATCH_BYTES


def test_a_process_pool_binds_nothing_itself():
    binder = RecordingMbind()
    HostPool(1, 8, SHAPE, pinned=False, binder=binder)
    assert binder.calls == []


@pytest.mark.parametrize(
    ("fail", "says"),
    [pytest.param(errno.EPERM, "EPERM (the process (or its container) may not set a memory policy)", id="eperm"),
     pytest.param(errno.EINVAL, "EINVAL (node 1 does not exist here", id="einval")],
)
def test_a_pool_that_cannot_be_bound_fails_with_a_clear_error(fail, says):
    with pytest.raises(PoolBindingError, match=r"placement=pool: cannot bind the host pool to NUMA node 1") as info:
        HostPool(1, 8, SHAPE, pinned=False, node=1, binder=RecordingMbind(fail))
    assert says in str(info.value) and "use hardware.placement=process" in str(info.value)


@needs_mbind
def test_a_node_this_host_lacks_fails_with_the_kernels_einval():
    with pytest.raises(PoolBindingError, match="mbind failed with EINVAL"):
        HostPool(1, 8, SHAPE, pinned=False, node=7)  # the real mbind: this host has no node 7


def test_a_pinned_bound_pool_is_registered_after_its_pages_exist_and_unregistered_on_close(monkeypatch):
    events = []
    binder = RecordingMbind()

    def register(address, nbytes):  # the pool is bound and filled (first touch) by now
        events.append(("register", address, nbytes, len(binder.calls), ctypes.string_at(address, 64) != bytes(64)))

    monkeypatch.setattr(pool_module, "cuda_host_register", register)
    monkeypatch.setattr(pool_module, "cuda_host_unregister", lambda address: events.append(("unregister", address)))
    pool = HostPool(1, 8, SHAPE, pinned=True, node=1, binder=binder)
    ptr = pool.data.data_ptr()
    assert events == [("register", ptr, pool.nbytes, 1, True)] and pool.pinned
    pool.close()
    assert events[-1] == ("unregister", ptr)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a host without CUDA")
def test_a_pinned_bound_pool_without_cuda_says_so():
    with pytest.raises(PoolBindingError, match="a pinned host pool needs CUDA"):
        HostPool(1, 8, SHAPE, pinned=True, node=0, binder=RecordingMbind())
