"""The host memory pool that batches are copied from.

It is allocated and first touched inside the bound worker, so under ``numactl --membind=N``
its pages sit on node N (``hardware.placement=process``). With ``node`` given
(``hardware.placement=pool``) the pool is an anonymous mapping of its own, bound to that node
with ``mbind(MPOL_BIND)`` before any page is touched, while the rest of the worker stays where
numactl put it; a pinned pool is then registered with CUDA (``cudaHostRegister``), so its pages
stay where they were bound. Batches are taken round-robin so the copies really read the pool.
"""

from __future__ import annotations

import ctypes
import errno
import mmap

import torch

from numa_ops.topology import MPOL_BIND, MPOL_MF_MOVE, MPOL_MF_STRICT, Binder, mbind, nodemask

BIND_FLAGS = MPOL_MF_STRICT | MPOL_MF_MOVE


class PoolBindingError(RuntimeError):
    """The host pool could not be put on the node asked for (``hardware.placement=pool``)."""


def cuda_host_register(address: int, nbytes: int) -> None:
    """Page-lock ``nbytes`` at ``address`` for CUDA (``cudaHostRegister``, default flags)."""
    if not torch.cuda.is_available():
        raise PoolBindingError("a pinned host pool needs CUDA, and CUDA is not available in this worker")
    code = int(torch.cuda.cudart().cudaHostRegister(address, nbytes, 0))
    if code != 0:
        raise PoolBindingError(f"cudaHostRegister of the {nbytes / 2**20:.0f} MiB host pool failed (CUDA error {code})")


def cuda_host_unregister(address: int) -> None:
    """Undo :func:`cuda_host_register`."""
    torch.cuda.cudart().cudaHostUnregister(address)


def bound_mapping(nbytes: int, node: int, binder: Binder, shape: tuple[int, ...]) -> tuple[mmap.mmap, torch.Tensor]:
    """An anonymous mapping of ``nbytes`` bound to ``node`` (``mbind``) before any page is touched, and a float32
    tensor of ``shape`` over it; :class:`PoolBindingError` says why the kernel refused."""
    length = -(-nbytes // mmap.PAGESIZE) * mmap.PAGESIZE
    area = mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    anchor = ctypes.c_char.from_buffer(area)
    address = ctypes.addressof(anchor)
    del anchor
    words, maxnode = nodemask(node)
    try:
        binder(address, length, MPOL_BIND, words, maxnode, BIND_FLAGS)
    except OSError as exc:
        area.close()
        name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        why = {
            errno.EINVAL: f"node {node} does not exist here or may not be used by this process",
            errno.EPERM: "the process (or its container) may not set a memory policy",
            errno.ENOSYS: "the kernel has no mbind",
        }.get(exc.errno or 0, exc.strerror or str(exc))
        raise PoolBindingError(f"mbind failed with {name} ({why})") from None
    flat = torch.frombuffer(area, dtype=torch.float32, count=nbytes // 4)
    return area, flat.view(shape)


class BoundBuffer:
    """A float32 host tensor of ``shape`` on NUMA node ``node``, first touched there and, if ``pinned``,
    registered with CUDA: a paired memory arm's D2H destination, on the same node as its pool."""

    def __init__(self, shape: tuple[int, ...], node: int, pinned: bool, binder: Binder | None = None):
        nbytes = max(4, int(torch.Size(shape).numel()) * 4)
        self._map, self.data = bound_mapping(nbytes, node, binder or mbind, shape)
        self.data.zero_()  # first touch, in the bound mapping
        self._registered: int | None = None
        if pinned:
            cuda_host_register(self.data.data_ptr(), nbytes)
            self._registered = self.data.data_ptr()

    def close(self) -> None:
        """Unregister and drop the mapping (see :meth:`HostPool.close`); safe to call twice."""
        if self._registered is not None:
            cuda_host_unregister(self._registered)
            self._registered = None
        if self._map is not None:
            self.data = torch.empty(0)
            self._map = None


class HostPool:
    """``memory_size_mb`` of synthetic images, as whole batches (at least one).

    ``node``: bind the pool alone to that NUMA node (see the module's note); ``binder`` is the
    mbind call (the kernel's by default; tests pass a recorder).
    """

    def __init__(
        self,
        memory_size_mb: int,
        batch_size: int,
        tensor_shape: list[int],
        pinned: bool,
        seed: int = 0,
        node: int | None = None,
        binder: Binder | None = None,
        purpose: str = "hardware.placement=pool",
    ):
        self.batch_shape = (batch_size, *tensor_shape)
        batch_bytes = batch_size * int(torch.Size(tensor_shape).numel()) * 4
        self.num_batches = max(1, (memory_size_mb * 2**20) // batch_bytes)
        self.batch_bytes = batch_bytes
        self.pinned = pinned
        self.node = node
        self.purpose = purpose  # what bound it, for the error
        self._map: mmap.mmap | None = None
        self._registered: int | None = None
        shape = (self.num_batches, *self.batch_shape)
        if node is None:
            self.data = torch.empty(shape, dtype=torch.float32, pin_memory=pinned)
        else:
            self.data = self._bound(shape, node, binder or mbind)
        generator = torch.Generator().manual_seed(seed)
        for i in range(self.num_batches):  # first touch, batch by batch, in this (bound) process
            self.data[i].normal_(generator=generator)
        if node is not None and pinned:  # pinned after the pages exist where they were bound
            try:
                cuda_host_register(self.data.data_ptr(), self.nbytes)
            except BaseException:
                self.close()
                raise
            self._registered = self.data.data_ptr()

    def _bound(self, shape: tuple[int, ...], node: int, binder: Binder) -> torch.Tensor:
        """An anonymous mapping bound to ``node`` before first touch, as a float32 tensor of ``shape``."""
        try:
            self._map, data = bound_mapping(self.num_batches * self.batch_bytes, node, binder, shape)
        except PoolBindingError as exc:
            self.close()
            raise PoolBindingError(
                f"{self.purpose}: cannot bind the host pool to "
                f"NUMA node {node}: {exc}; use hardware.placement=process on this host"
            ) from None
        return data

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()

    def batch(self, index: int) -> torch.Tensor:
        """Batch ``index``, wrapping round the pool."""
        return self.data[index % self.num_batches]

    def close(self) -> None:
        """Give back what the pool holds outside torch's allocator: its CUDA registration and its mapping.

        The pool is empty after this. Safe to call twice; a pool made without ``node`` has nothing to give.
        """
        if self._registered is not None:
            cuda_host_unregister(self._registered)
            self._registered = None
        if self._map is not None:
            # torch.frombuffer keeps the mapping alive but does not lock it: closing it under a live view
            # would leave that view dangling. Dropping our references unmaps it once the last view is gone.
            self.data = torch.empty((0, *self.batch_shape))
            self._map = None
