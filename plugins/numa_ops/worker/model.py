"""``ViTForProfiling``: vit-pytorch's ``ViT`` returning logits and the pooled embedding."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import TYPE_CHECKING

import torch
from einops import repeat

if TYPE_CHECKING:
    from numa_ops.config import VitConfig


def _vit_module() -> ModuleType:
    """vit-pytorch's ``vit`` module alone.

    The package's ``__init__`` imports torchvision and some forty other models (6-7 s of a GPU
    worker's start-up); ``vit.py`` itself needs only torch and einops, so it is loaded by itself.
    Falls back to the normal import if the package's layout changes.
    """
    name = "vit_pytorch.vit"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec("vit_pytorch")
    locations = list(spec.submodule_search_locations or []) if spec else []
    file_spec = importlib.util.spec_from_file_location(name, f"{locations[0]}/vit.py") if locations else None
    if file_spec is None or file_spec.loader is None:
        from vit_pytorch import vit

        return vit
    module = importlib.util.module_from_spec(file_spec)
    sys.modules[name] = module  # as an import would: a later ``import vit_pytorch`` reuses it
    file_spec.loader.exec_module(module)
    return module


ViT = _vit_module().ViT


class ViTForProfiling(ViT):
    """A ViT whose forward returns ``(logits, pooled)``.

    Both outputs are copied back to the host, so the D2H size is ``batch * (num_classes + dim)``
    floats: it depends on the model's width and the batch, never on the image size.
    """

    return_tokens: bool = False  # also return the token tensor (the transfer-heavy ``d2h_mode: tokens``)

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        batch = img.shape[0]
        x = self.to_patch_embedding(img)
        cls_tokens = repeat(self.cls_token, "... d -> b ... d", b=batch)
        x = torch.cat((cls_tokens, x), dim=1)
        x = x + self.pos_embedding[: x.shape[1]]
        x = self.dropout(x)
        tokens = self.transformer(x)
        pooled = tokens.mean(dim=1) if self.pool == "mean" else tokens[:, 0]
        pooled = self.to_latent(pooled)
        if self.return_tokens:
            return self.mlp_head(pooled), pooled, tokens
        return self.mlp_head(pooled), pooled


def build_model(model: VitConfig, tensor_shape: list[int], d2h_mode: str = "outputs") -> ViTForProfiling:
    """Build the model of a run spec for images of ``tensor_shape`` (C, H, W)."""
    channels, height, width = tensor_shape
    vit = ViTForProfiling(
        image_size=(height, width),
        patch_size=model.patch_size,
        num_classes=model.num_classes,
        dim=model.dim,
        depth=model.depth,
        heads=model.heads,
        mlp_dim=model.mlp_dim,
        channels=channels,
    )
    vit.return_tokens = d2h_mode == "tokens"
    return vit
