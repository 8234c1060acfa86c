"""Tiny random-weight models in the exact on-disk layouts the GPU backends load, written by the tests.

Nothing is downloaded: each builder instantiates the real architecture from a small config,
saves it where production expects it (a baked `ORFEAS_MODEL_DIR/<org>/<name>` folder), and
returns that folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.gpu_support import import_shapegen, torch

# Hunyuan3D-2's own config.yaml, with every width shrunk: the DiT's context width is the image
# encoder's hidden size, its input channels the VAE's latent width, its rotary dims its head size.
TINY_HUNYUAN_CONFIG: dict[str, Any] = {
    "model": {
        "target": "hy3dgen.shapegen.models.Hunyuan3DDiT",
        "params": {
            "in_channels": 8,
            "context_in_dim": 32,
            "hidden_size": 32,
            "mlp_ratio": 2.0,
            "num_heads": 2,
            "depth": 1,
            "depth_single_blocks": 1,
            "axes_dim": [16],
            "theta": 10000,
            "qkv_bias": True,
        },
    },
    "vae": {
        "target": "hy3dgen.shapegen.models.ShapeVAE",
        "params": {
            "num_latents": 16,
            "embed_dim": 8,
            "num_freqs": 4,
            "include_pi": False,
            "heads": 2,
            "width": 32,
            "num_decoder_layers": 1,
            "qkv_bias": False,
            "qk_norm": True,
            "scale_factor": 0.9990943042622529,
        },
    },
    "conditioner": {
        "target": "hy3dgen.shapegen.models.SingleImageEncoder",
        "params": {
            "main_image_encoder": {
                "type": "DinoImageEncoder",
                "kwargs": {
                    "config": {
                        "hidden_size": 32,
                        "num_hidden_layers": 1,
                        "num_attention_heads": 2,
                        "mlp_ratio": 2,
                        "image_size": 28,
                        "patch_size": 14,
                        "num_channels": 3,
                        "qkv_bias": True,
                        "use_swiglu_ffn": False,
                        "layer_norm_eps": 1e-6,
                        "model_type": "dinov2",
                    },
                    "image_size": 28,
                },
            }
        },
    },
    "scheduler": {
        "target": "hy3dgen.shapegen.schedulers.FlowMatchEulerDiscreteScheduler",
        "params": {"num_train_timesteps": 1000},
    },
    "image_processor": {
        "target": "hy3dgen.shapegen.preprocessors.ImageProcessorV2",
        "params": {"size": 32, "border_ratio": 0.15},
    },
}


def write_tiny_hunyuan(
    model_dir: Path, repo: str = "tencent/Hunyuan3D-2", subfolder: str = "hunyuan3d-dit-v2-0", seed: int = 0
) -> Path:
    """Write config.yaml and model.fp16.safetensors (keys prefixed model./vae./conditioner.)."""
    import safetensors.torch

    import_shapegen()
    from hy3dgen.shapegen.pipelines import instantiate_from_config

    torch.manual_seed(seed)
    folder = model_dir / repo / subfolder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(TINY_HUNYUAN_CONFIG))
    tensors = {}
    for part in ("model", "vae", "conditioner"):
        module = instantiate_from_config(TINY_HUNYUAN_CONFIG[part])
        for key, value in module.state_dict().items():
            tensors[f"{part}.{key}"] = value.detach().clone().contiguous()
    safetensors.torch.save_file(tensors, str(folder / "model.fp16.safetensors"))
    return folder


def write_tiny_vae(model_dir: Path, repo: str, subfolder: str) -> Path:
    """A ShapeVAE folder as the turbo VAE is published: its own config.yaml (target + params) and weights."""
    import safetensors.torch

    import_shapegen()
    from hy3dgen.shapegen.models import ShapeVAE

    folder = model_dir / repo / subfolder
    folder.mkdir(parents=True, exist_ok=True)
    config = TINY_HUNYUAN_CONFIG["vae"]
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    vae = ShapeVAE(**config["params"])
    safetensors.torch.save_file(
        {k: v.detach().clone().contiguous() for k, v in vae.state_dict().items()},
        str(folder / "model.fp16.safetensors"),
    )
    return folder


def write_tiny_clip_tokenizer(folder: Path) -> None:
    """A byte-pair CLIP tokenizer over lower-case letters, built from its vocab and merges and saved."""
    from transformers import CLIPTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz"
    tokens = ["<|startoftext|>", "<|endoftext|>", "!"]
    tokens += list(letters) + [c + "</w>" for c in letters]
    merges = ["a n", "t h", "th e</w>", "c u", "cu b", "cub e</w>"]
    tokens += ["an", "th", "the</w>", "cu", "cub", "cube</w>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[tuple(m.split()) for m in merges], model_max_length=16)
    tokenizer.save_pretrained(str(folder))


def write_tiny_text_to_image(model_dir: Path, repo: str = "tiny/sd-turbo", seed: int = 0) -> Path:
    """A Stable Diffusion pipeline of tiny UNet, VAE and CLIP text model, saved with save_pretrained."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    folder = model_dir / repo
    tok_dir = folder.parent / (folder.name + "-tokenizer-src")
    write_tiny_clip_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=16,
            projection_dim=16,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 8),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(steps_offset=1, clip_sample=False, set_alpha_to_one=False),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(folder))
    return folder


def write_tiny_segmentation(model_dir: Path, repo: str = "tiny/segformer-fg", seed: int = 0) -> Path:
    """A two-class (background, foreground) SegFormer with random weights, saved with save_pretrained."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    torch.manual_seed(seed)
    folder = model_dir / repo
    config = SegformerConfig(
        num_channels=3,
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        patch_sizes=[7, 3],
        strides=[4, 2],
        num_attention_heads=[1, 2],
        mlp_ratios=[2, 2],
        decoder_hidden_size=16,
        num_labels=2,
        id2label={0: "background", 1: "foreground"},
        label2id={"background": 0, "foreground": 1},
        image_size=64,
    )
    SegformerForSemanticSegmentation(config).save_pretrained(str(folder))
    return folder
