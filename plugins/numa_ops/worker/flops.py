"""Analytic FLOPs and bytes per sample of a vit-pytorch ViT, for the roofline and the bound class.

Counts multiply-adds as 2 FLOPs and only the matrix products (patch embedding, QKV, attention
scores and values, output projection, MLP, head); norms, softmax and activations are left out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from numa_ops.config import VitConfig

DIM_HEAD = 64  # vit-pytorch's default


def flops_per_sample(model: VitConfig, tensor_shape: list[int]) -> int:
    """Forward FLOPs for one image."""
    channels, height, width = tensor_shape
    p = model.patch_size
    patches = (height // p) * (width // p)
    seq = patches + 1
    dim, depth, heads, mlp = model.dim, model.depth, model.heads, model.mlp_dim
    inner = heads * DIM_HEAD
    classes = model.num_classes
    embed = 2 * patches * (p * p * channels) * dim
    per_layer = (
        2 * seq * dim * 3 * inner  # QKV projection
        + 2 * heads * seq * seq * DIM_HEAD * 2  # Q K^T and attention x V
        + 2 * seq * inner * dim  # output projection
        + 2 * seq * dim * mlp * 2  # MLP up and down
    )
    return embed + depth * per_layer + 2 * dim * classes


def d2h_floats_per_sample(model: VitConfig, tensor_shape: list[int], d2h_mode: str) -> int:
    """Floats copied back per image: logits + pooled embedding, or the whole token tensor too."""
    dim, classes = model.dim, model.num_classes
    if d2h_mode == "tokens":
        _, height, width = tensor_shape
        seq = (height // model.patch_size) * (width // model.patch_size) + 1
        return classes + dim + seq * dim
    return classes + dim


def bytes_per_sample(model: VitConfig, tensor_shape: list[int], d2h_mode: str = "outputs") -> dict[str, int]:
    """Host-device bytes for one image (fp32)."""
    channels, height, width = tensor_shape
    return {"h2d": channels * height * width * 4, "d2h": d2h_floats_per_sample(model, tensor_shape, d2h_mode) * 4}
