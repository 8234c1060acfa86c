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


# Hunyuan3D-2's published widths (hunyuan3d-dit-v2-0/config.yaml): DiT, ShapeVAE, DINOv2-giant.
HUNYUAN3D_2_DIT: dict[str, Any] = {
    "in_channels": 64,
    "context_in_dim": 1536,
    "hidden_size": 1024,
    "mlp_ratio": 4.0,
    "num_heads": 16,
    "depth": 16,
    "depth_single_blocks": 32,
    "axes_dim": [64],
    "theta": 10000,
    "qkv_bias": True,
}
HUNYUAN3D_2_VAE: dict[str, Any] = {
    "num_latents": 3072,
    "embed_dim": 64,
    "num_freqs": 8,
    "include_pi": False,
    "heads": 16,
    "width": 1024,
    "num_decoder_layers": 16,
    "qkv_bias": False,
    "qk_norm": True,
    "scale_factor": 0.9990943042622529,
}
DINOV2_GIANT: dict[str, Any] = {
    "attention_probs_dropout_prob": 0.0,
    "drop_path_rate": 0.0,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "hidden_size": 1536,
    "image_size": 518,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-06,
    "layerscale_value": 1.0,
    "mlp_ratio": 4,
    "model_type": "dinov2",
    "num_attention_heads": 24,
    "num_channels": 3,
    "num_hidden_layers": 40,
    "patch_size": 14,
    "qkv_bias": True,
    "use_swiglu_ffn": True,
}
HUNYUAN3D_2_CONFIG: dict[str, Any] = hunyuan_config(
    dit=HUNYUAN3D_2_DIT, vae=HUNYUAN3D_2_VAE, dino=DINOV2_GIANT, image_size=518, processor_size=512
)
