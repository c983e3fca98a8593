"""The host memory pool that batches are copied from.

It is allocated and first touched inside the bound worker, so under ``numactl --membind=N``
its pages sit on node N. Batches are taken round-robin so the copies really read the pool.
"""

from __future__ import annotations

import torch


class HostPool:
    """``memory_size_mb`` of synthetic images, as whole batches (at least one)."""

    def __init__(self, memory_size_mb: int, batch_size: int, tensor_shape: list[int], pinned: bool, seed: int = 0):
        self.batch_shape = (batch_size, *tensor_shape)
        batch_bytes = batch_size * int(torch.Size(tensor_shape).numel()) * 4
        self.num_batches = max(1, (memory_size_mb * 2**20) // batch_bytes)
        self.pinned = pinned
        self.data = torch.empty((self.num_batches, *self.batch_shape), dtype=torch.float32, pin_memory=pinned)
        generator = torch.Generator().manual_seed(seed)
        for i in range(self.num_batches):  # first touch, batch by batch, in this (bound) process
            self.data[i].normal_(generator=generator)
        self.batch_bytes = batch_bytes

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()

    def batch(self, index: int) -> torch.Tensor:
        """Batch ``index``, wrapping round the pool."""
        return self.data[index % self.num_batches]
