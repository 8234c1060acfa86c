"""Parameters and bf16 bytes of the models one GPU worker holds, counted from their architectures.

    .venv/bin/python bench/vram_plan.py

Each model is built from its config on PyTorch's meta device (no memory, no weights,
a few seconds on a CPU): Hunyuan3D-2's DiT, ShapeVAE and DINOv2-giant conditioner (its
config.yaml, bench/gpu.py's FULL_CONFIG); Hunyuan3D-Paint's UNet2p5D (hy3dgen's dual-stream,
multiview and reference attention around a UNet2DConditionModel) at Stable Diffusion 2.1's
widths: its cross-attention width 1024 is fixed in hy3dgen's code and the published views are
64² latents, the channel widths (320-1280, 2 layers per block) are SD 2.1's, assumed, not read
from the published config; the SD VAE and the CLIP ViT-H text encoder; the delight model (an
InstructPix2Pix UNet of 8 input channels at the same assumed widths, same VAE and text
encoder). orfeas/gpu/memory_plan.py holds these counts; tests/test_gpu_memory_plan.py checks
them against this count. Prints a table and one JSON line.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu import FULL_CONFIG  # bench/gpu.py: Hunyuan3D-2's published config.yaml

SD21_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 1024,
    "attention_head_dim": (5, 10, 20, 20),
    "use_linear_projection": True,
}
SD_VAE: dict[str, Any] = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "latent_channels": 4,
    "layers_per_block": 2,
    "sample_size": 512,
}
CLIP_H_TEXT: dict[str, Any] = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 23,
    "num_attention_heads": 16,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "hidden_act": "gelu",
    "projection_dim": 1024,
}


def _count(module: Any) -> int:
    return sum(p.numel() for p in module.parameters()) + sum(b.numel() for b in module.buffers())


def count_params() -> dict[str, int]:
    """Parameter (and buffer) count of each part, built on the meta device."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from orfeas.gpu.texgen_import import import_texgen_module
    from orfeas.gpu.torchvision_standin import import_shapegen

    import_shapegen()
    from hy3dgen.shapegen.pipelines import instantiate_from_config

    unet2p5d = import_texgen_module("hunyuanpaint.unet.modules").UNet2p5DConditionModel
    counts: dict[str, int] = {}
    with torch.device("meta"):
        for part, name in (("model", "shape_dit"), ("vae", "shape_vae"), ("conditioner", "shape_dino")):
            counts[name] = _count(instantiate_from_config(copy.deepcopy(FULL_CONFIG[part])))
        counts["paint_unet2p5d"] = _count(unet2p5d(UNet2DConditionModel(**SD21_UNET)))
        counts["sd_vae"] = _count(AutoencoderKL(**SD_VAE))
        counts["clip_h_text"] = _count(CLIPTextModel(CLIPTextConfig(**CLIP_H_TEXT)))
        counts["delight_unet"] = _count(UNet2DConditionModel(**{**SD21_UNET, "in_channels": 8}))
    return counts


def totals(counts: dict[str, int]) -> dict[str, int]:
    """Per model a worker loads: the shape pipeline, the paint pipeline, the delight pipeline."""
    return {
        "shape": counts["shape_dit"] + counts["shape_vae"] + counts["shape_dino"],
        "paint": counts["paint_unet2p5d"] + counts["sd_vae"] + counts["clip_h_text"],
        "delight": counts["delight_unet"] + counts["sd_vae"] + counts["clip_h_text"],
    }


def main() -> int:
    counts = count_params()
    models = totals(counts)
    print(f"{'part':16} {'params M':>10} {'bf16 GiB':>9}")
    for name, n in {**counts, **models}.items():
        print(f"{name:16} {n / 1e6:10.1f} {n * 2 / 2**30:9.2f}")
    print(json.dumps({"parts": counts, "models": models}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
