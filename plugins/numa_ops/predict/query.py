"""A configuration to predict (or a measured one): model, image, batch, execution mode, host memory; and the
quantities the laws use, from :mod:`numa_ops.worker.flops`."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from numa_ops.config import VitConfig
from numa_ops.worker import flops

HOST_MEMORY = ("pinned", "pageable")


@dataclass(frozen=True)
class Query:
    """One configuration: a ViT (depth, dim, heads, mlp_dim, patch), a square image, a batch, an execution mode and
    the host memory the batches are copied from."""

    depth: int
    dim: int
    heads: int
    mlp_dim: int
    patch: int
    image: int
    batch: int
    execution: str = "eager"
    host_memory: str = "pinned"
    channels: int = 3
    num_classes: int = 1000
    d2h_mode: str = "outputs"

    def __post_init__(self) -> None:
        if self.host_memory not in HOST_MEMORY:
            raise ValueError(f"host memory is pinned or pageable, got {self.host_memory!r}")
        if self.image % self.patch:
            raise ValueError(f"the patch ({self.patch}) does not divide the image ({self.image})")
        if min(self.depth, self.dim, self.heads, self.mlp_dim, self.patch, self.image, self.batch) < 1:
            raise ValueError("depth, dim, heads, mlp_dim, patch, image and batch are positive")

    @property
    def shape(self) -> list[int]:
        return [self.channels, self.image, self.image]

    def vit(self) -> VitConfig:
        return VitConfig(name="query", patch_size=self.patch, depth=self.depth, heads=self.heads, dim=self.dim,
                         mlp_dim=self.mlp_dim, num_classes=self.num_classes)

    def features(self) -> dict[str, float]:
        """The laws' inputs (natural logs): FLOPs of a batch, bytes each way per batch, and the layers (kernels)."""
        return dict(_features(self))

    def label(self) -> str:
        return (f"d{self.depth} w{self.dim} h{self.heads} m{self.mlp_dim} p{self.patch} {self.image}px b{self.batch} "
                f"{self.execution} {self.host_memory}")

    @classmethod
    def of_row(cls, row: Any) -> Query:
        """The configuration of a row of ``db.prediction_points``."""
        return cls(depth=int(row.depth), dim=int(row.dim), heads=int(row.heads), mlp_dim=int(row.mlp_dim),
                   patch=int(row.patch_size), image=int(row.height), batch=int(row.batch_size),
                   execution=str(row.execution), host_memory=str(row.host_memory), channels=int(row.channels),
                   num_classes=int(row.num_classes), d2h_mode=str(row.d2h_mode))

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@functools.lru_cache(maxsize=4096)
def _features(query: Query) -> tuple[tuple[str, float], ...]:
    vit = query.vit()
    per = flops.bytes_per_sample(vit, query.shape, query.d2h_mode)
    return (("flops", math.log(flops.flops_per_sample(vit, query.shape) * query.batch)),
            ("h2d_bytes", math.log(per["h2d"] * query.batch)), ("d2h_bytes", math.log(per["d2h"] * query.batch)),
            ("layers", math.log(query.depth + 1)))
