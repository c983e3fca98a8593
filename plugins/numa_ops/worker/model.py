"""``ViTForProfiling``: vit-pytorch's ``ViT`` returning logits and the pooled embedding."""

from __future__ import annotations

import torch
from einops import repeat
from vit_pytorch import ViT


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


def build_model(model: dict, tensor_shape: list[int], d2h_mode: str = "outputs") -> ViTForProfiling:
    """Build the model of a run spec for images of ``tensor_shape`` (C, H, W)."""
    channels, height, width = tensor_shape
    vit = ViTForProfiling(
        image_size=(height, width),
        patch_size=model["patch_size"],
        num_classes=model.get("num_classes", 1000),
        dim=model["dim"],
        depth=model["depth"],
        heads=model["heads"],
        mlp_dim=model["mlp_dim"],
        channels=channels,
    )
    vit.return_tokens = d2h_mode == "tokens"
    return vit
