"""Tiny random-weight models in the exact on-disk layouts the GPU backends load.

Nothing is downloaded: each builder instantiates the real architecture from a small config,
saves it where production expects it (a baked `ORFEAS_MODEL_DIR/<org>/<name>` folder), and
returns that folder. `python -m orfeas tiny-models DIR` writes them all (`write_all`), so
`ORFEAS_MODEL_DIR=DIR` runs every GPU code path on a CPU in seconds: CI, and a smoke test of an
image without its weights. The outputs are noise; the code paths, shapes and layouts are real.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml

from orfeas.gpu.hunyuan_config import HUNYUAN3D_2_DIT, HUNYUAN3D_2_VAE, hunyuan_config
from orfeas.gpu.torchvision_standin import import_shapegen

# Hunyuan3D-2's own config.yaml, with every width shrunk: the DiT's context width is the image
# encoder's hidden size, its input channels the VAE's latent width, its rotary dims its head size.
TINY_HUNYUAN_WIDTHS: dict[str, Any] = {
    "dit": {
        **HUNYUAN3D_2_DIT,
        **{"in_channels": 8, "context_in_dim": 32, "hidden_size": 32, "mlp_ratio": 2.0},
        **{"num_heads": 2, "depth": 1, "depth_single_blocks": 1, "axes_dim": [16]},
    },
    "vae": {
        **HUNYUAN3D_2_VAE,
        **{"num_latents": 16, "embed_dim": 8, "num_freqs": 4, "heads": 2, "width": 32},
        "num_decoder_layers": 1,
    },
    "dino": {
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
    "processor_size": 32,
}
TINY_HUNYUAN_CONFIG: dict[str, Any] = hunyuan_config(**TINY_HUNYUAN_WIDTHS)
# Hunyuan3D-2mv's layout at the same widths: the view-embedding encoder and the multi-view processor.
TINY_HUNYUAN_MV_CONFIG: dict[str, Any] = hunyuan_config(**TINY_HUNYUAN_WIDTHS, multiview=True)


def write_tiny_hunyuan(
    model_dir: Path,
    repo: str = "tencent/Hunyuan3D-2",
    subfolder: str = "hunyuan3d-dit-v2-0",
    seed: int = 0,
    *,
    multiview: bool = False,
) -> Path:
    """Write config.yaml and model.fp16.safetensors (keys prefixed model./vae./conditioner.)."""
    torch.manual_seed(seed)
    config = TINY_HUNYUAN_MV_CONFIG if multiview else TINY_HUNYUAN_CONFIG
    return write_hunyuan_folder(model_dir / repo / subfolder, config)


def write_hunyuan_folder(
    folder: Path, config: dict[str, Any], *, device: str = "cpu", dtype: torch.dtype | None = None
) -> Path:
    """config.yaml and model.fp16.safetensors (keys prefixed model./vae./conditioner.) of `config`
    with the current random weights, built on `device` (a full-size model builds fast on a GPU)."""
    import copy

    import safetensors.torch

    import_shapegen()
    from hy3dgen.shapegen.pipelines import instantiate_from_config

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    tensors = {}
    with torch.device(device):
        for part in ("model", "vae", "conditioner"):
            module = instantiate_from_config(copy.deepcopy(config[part]))
            for key, value in module.state_dict().items():
                tensors[f"{part}.{key}"] = value.detach().to("cpu", dtype).contiguous()
            del module
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
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[tuple(m.split()) for m in merges], model_max_length=16)  # type: ignore[misc]  # the slow tokenizer takes merge pairs; its stub says list[str]
    tokenizer.save_pretrained(str(folder))


def write_tiny_text_to_image(model_dir: Path, repo: str = "tiny/sd-turbo", seed: int = 0) -> Path:
    """A Stable Diffusion pipeline of tiny UNet, VAE and CLIP text model, saved with save_pretrained."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    torch.manual_seed(seed)
    folder = model_dir / repo
    # Built in this order (text model, UNet, VAE) so a seed gives the same weights as it always has.
    tokenizer = _tiny_clip_tokenizer()
    text_encoder = _tiny_text_encoder(tokenizer, hidden_size=16, max_positions=16)
    unet = _tiny_sd_unet(in_channels=4)
    vae = _tiny_sd_vae()
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
    pipe.save_pretrained(str(folder))  # type: ignore[attr-defined]  # save_pretrained comes from DiffusionPipeline, which diffusers' lazy module hides
    return folder


def write_tiny_segmentation(model_dir: Path, repo: str = "tiny/segformer-fg", seed: int = 0) -> Path:
    """A two-class (background, foreground) SegFormer with random weights, saved with save_pretrained."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    torch.manual_seed(seed)
    folder = model_dir / repo
    config = SegformerConfig(  # type: ignore[call-arg]  # num_labels and image_size go through PretrainedConfig **kwargs, untyped
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


def _tiny_clip_tokenizer() -> Any:
    """The tiny CLIP tokenizer, written to a scratch folder and loaded back as diffusers loads it."""
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tok_dir:
        write_tiny_clip_tokenizer(Path(tok_dir))
        return CLIPTokenizer.from_pretrained(tok_dir)


def _tiny_text_encoder(tokenizer: Any, *, hidden_size: int, max_positions: int) -> Any:
    """A one-layer CLIP text model over `tokenizer`'s vocabulary."""
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=max_positions,
            projection_dim=16,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )


def _tiny_sd_unet(*, in_channels: int) -> Any:
    """A two-level Stable Diffusion UNet of 4 latent channels out, cross-attending 16-wide text."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8,
        in_channels=in_channels,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=4,
    )


def _tiny_sd_vae() -> Any:
    """A two-level KL autoencoder of 4 latent channels (a factor 2 between pixels and latents)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 8),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    )


def _tiny_sd_parts(*, cross_attention_dim: int = 16) -> dict[str, Any]:
    """Tokenizer, CLIP text model and VAE of a Stable Diffusion folder, shrunk."""
    tokenizer = _tiny_clip_tokenizer()
    text_encoder = _tiny_text_encoder(tokenizer, hidden_size=cross_attention_dim, max_positions=77)
    return {"tokenizer": tokenizer, "text_encoder": text_encoder, "vae": _tiny_sd_vae()}


def write_tiny_delight(
    model_dir: Path,
    repo: str = "tencent/Hunyuan3D-2",
    subfolder: str = "hunyuan3d-delight-v2-0",
    seed: int = 0,
) -> Path:
    """The delighting model as published: an InstructPix2Pix pipeline folder (a UNet of 8 inputs)."""
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline

    torch.manual_seed(seed)
    folder = model_dir / repo / subfolder
    parts = _tiny_sd_parts()
    unet = _tiny_sd_unet(in_channels=8)  # the noisy latent and the picture's latent, side by side
    pipe = StableDiffusionInstructPix2PixPipeline(
        unet=unet,
        scheduler=EulerAncestralDiscreteScheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
        **parts,
    )
    pipe.save_pretrained(str(folder))  # type: ignore[attr-defined]  # save_pretrained comes from DiffusionPipeline, which diffusers' lazy module hides
    return folder


# hy3dgen's UNet2p5DConditionModel fixes two widths in code: the learned text tokens are 1024 wide
# (cross_attention_dim) and the camera embedding 1280 (the time embedding); the rest shrinks.
PAINT_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 16,  # × the tiny VAE's factor 2: 32-pixel views (the published model: 64 × 8)
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 1,
    "block_out_channels": [8, 16],
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 1024,
    "attention_head_dim": 4,
    "norm_num_groups": 4,
    "time_embedding_dim": 1280,
}


def write_tiny_paint(
    model_dir: Path, repo: str = "tencent/Hunyuan3D-2", subfolder: str = "hunyuan3d-paint-v2-0", seed: int = 0
) -> Path:
    """The multiview paint model as published: model_index.json, unet/ (config.json, .bin), vae/, ...

    The UNet is hy3dgen's UNet2p5DConditionModel (dual stream, multiview and reference attention,
    camera embedding) around a tiny UNet2DConditionModel, saved as hy3dgen's own loader reads it.
    """
    import json

    from diffusers import EulerAncestralDiscreteScheduler, UNet2DConditionModel

    from orfeas.gpu.texgen_import import import_texgen_module

    UNet2p5DConditionModel = import_texgen_module("hunyuanpaint.unet.modules").UNet2p5DConditionModel

    torch.manual_seed(seed)
    folder = model_dir / repo / subfolder
    parts = _tiny_sd_parts()
    for name in ("vae", "text_encoder", "tokenizer"):
        parts[name].save_pretrained(str(folder / name))
    EulerAncestralDiscreteScheduler().save_pretrained(str(folder / "scheduler"))  # type: ignore[attr-defined]  # save_pretrained comes from ConfigMixin, which diffusers' lazy module hides
    unet = UNet2p5DConditionModel(UNet2DConditionModel(**PAINT_UNET_CONFIG))
    (folder / "unet").mkdir(parents=True, exist_ok=True)
    (folder / "unet" / "config.json").write_text(json.dumps(PAINT_UNET_CONFIG, indent=1))
    torch.save(unet.state_dict(), folder / "unet" / "diffusion_pytorch_model.bin")
    index = {
        "_class_name": "HunyuanPaintPipeline",
        "_diffusers_version": "0.30.0",
        "feature_extractor": [None, None],
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "EulerAncestralDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["modules", "UNet2p5DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=1))
    return folder


def write_all(model_dir: Path, *, seed: int = 0) -> dict[str, Path]:
    """Every tiny model under `model_dir`, named by what it stands for; returns name -> folder."""
    model_dir.mkdir(parents=True, exist_ok=True)
    folders = {
        "shape": write_tiny_hunyuan(model_dir, seed=seed),
        "shape_turbo_vae": write_tiny_vae(model_dir, "tencent/Hunyuan3D-2", "hunyuan3d-vae-v2-0-turbo"),
        "shape_mini": write_tiny_hunyuan(
            model_dir, repo="tencent/Hunyuan3D-2mini", subfolder="hunyuan3d-dit-v2-mini", seed=seed
        ),
        "shape_mv": write_tiny_hunyuan(
            model_dir,
            repo="tencent/Hunyuan3D-2mv",
            subfolder="hunyuan3d-dit-v2-mv",
            seed=seed,
            multiview=True,
        ),
        "delight": write_tiny_delight(model_dir, seed=seed),
        "paint": write_tiny_paint(model_dir, seed=seed),
        "text_to_image": write_tiny_text_to_image(model_dir, seed=seed),
        "segmentation": write_tiny_segmentation(model_dir, seed=seed),
    }
    return folders
