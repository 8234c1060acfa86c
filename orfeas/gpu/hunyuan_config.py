"""Hunyuan3D-2's config.yaml layout, filled with a model's widths (stdlib only, so a benchmark or
a tiny-model writer can state a config without importing torch)."""

from __future__ import annotations

from typing import Any


def hunyuan_config(
    *,
    dit: dict[str, Any],
    vae: dict[str, Any],
    dino: dict[str, Any],
    image_size: int,
    processor_size: int,
    multiview: bool = False,
) -> dict[str, Any]:
    """Hunyuan3D-2's config.yaml: the classes its loader instantiates, around these parameters.

    `multiview`: Hunyuan3D-2mv's layout, the same DiT and VAE behind DinoImageEncoderMV (a view
    embedding added to each of up to 4 views' tokens) and MVImageProcessorV2 (a dict of views).
    """
    return {
        "model": {"target": "hy3dgen.shapegen.models.Hunyuan3DDiT", "params": dit},
        "vae": {"target": "hy3dgen.shapegen.models.ShapeVAE", "params": vae},
        "conditioner": {
            "target": "hy3dgen.shapegen.models.SingleImageEncoder",
            "params": {
                "main_image_encoder": {
                    "type": "DinoImageEncoderMV" if multiview else "DinoImageEncoder",
                    "kwargs": {"config": dino, "image_size": image_size},
                }
            },
        },
        "scheduler": {
            "target": "hy3dgen.shapegen.schedulers.FlowMatchEulerDiscreteScheduler",
            "params": {"num_train_timesteps": 1000},
        },
        "image_processor": {
            "target": "hy3dgen.shapegen.preprocessors."
            + ("MVImageProcessorV2" if multiview else "ImageProcessorV2"),
            "params": {"size": processor_size, "border_ratio": 0.15},
        },
    }
