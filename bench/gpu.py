"""Hunyuan3D-2 shape generation on a GPU: ORFEAS's backend against hy3dgen's own default call.

    .venv/bin/python bench/gpu.py [--quality 5] [--repeat 2] [--variants fp16,bf16,bf16+compile,bf16+flashvdm]

The real architectures at full size (Hunyuan3D-2's DiT, ShapeVAE and DINOv2-giant conditioner,
as in its published config.yaml) with random weights, written once to a temporary folder in the
published layout; speed does not depend on weight values, only on shapes (the marching-cubes
time does depend on how much surface the field has: both sides decode the same random field
at their own octree resolution). Per variant: model load seconds, DiT sampling seconds, volume
decoding + surface extraction seconds, total, peak VRAM (torch.cuda.max_memory_allocated), and
the ratio to hy3dgen's default call (fp16, 50 steps, octree 384, plain volume decoding) measured
in the same run on the same device. Goal: ≤ 0.5× its time, ≤ 24 GB (an RTX 5090 has 32 GB).

Without CUDA it prints why and exits 0: no figures are invented on a CPU.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orfeas.gpu.hunyuan_config import hunyuan_config  # importable once the root is on the path

# Hunyuan3D-2's published config.yaml (hunyuan3d-dit-v2-0): DiT, ShapeVAE, DINOv2-giant.
FULL_CONFIG: dict[str, Any] = hunyuan_config(
    dit={
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
    },
    vae={
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
    },
    dino={
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
    },
    image_size=518,
    processor_size=512,
)
REPO = "tencent/Hunyuan3D-2"
SUBFOLDER = "hunyuan3d-dit-v2-0"
TURBO_VAE = "hunyuan3d-vae-v2-0-turbo"


def write_full_size_model(root: Path, config: dict[str, Any] = FULL_CONFIG, device: str = "cuda") -> Path:
    """Random full-size weights in the published layout (fp16 safetensors, keys part-prefixed)."""
    import safetensors.torch
    import torch
    import yaml
    from hy3dgen.shapegen.pipelines import instantiate_from_config

    folder = root / REPO / SUBFOLDER
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    tensors = {}
    with torch.device(device):
        for part in ("model", "vae", "conditioner"):
            module = instantiate_from_config(copy.deepcopy(config[part]))
            for key, value in module.state_dict().items():
                tensors[f"{part}.{key}"] = value.detach().to("cpu", torch.float16).contiguous()
            del module
    safetensors.torch.save_file(tensors, str(folder / "model.fp16.safetensors"))
    # FlashVDM's turbo VAE has the plain VAE's architecture (distilled weights): same shapes.
    vae_folder = root / REPO / TURBO_VAE
    vae_folder.mkdir(parents=True, exist_ok=True)
    (vae_folder / "config.yaml").write_text(yaml.safe_dump(config["vae"]))
    safetensors.torch.save_file(
        {k.removeprefix("vae."): v for k, v in tensors.items() if k.startswith("vae.")},
        str(vae_folder / "model.fp16.safetensors"),
    )
    return folder


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def bench_picture() -> Any:
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[:1024, :1024]
    mask = ((yy - 512) ** 2 + (xx - 512) ** 2) < 380**2
    rgba = np.zeros((1024, 1024, 4), np.uint8)
    rgba[..., 0] = 180
    rgba[..., 1] = (xx // 4).astype(np.uint8)
    rgba[..., 3] = mask * 255
    return Image.fromarray(rgba, "RGBA"), mask


def run_baseline(folder: Path, image: Any, seed: int, device: str = "cuda") -> dict[str, Any]:
    """hy3dgen's own call: from_single_file in fp16, then pipeline(image) with its defaults."""
    import torch
    from hy3dgen.shapegen import Hunyuan3DDiTFlowMatchingPipeline

    cuda = device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    pipe = Hunyuan3DDiTFlowMatchingPipeline.from_single_file(
        str(folder / "model.fp16.safetensors"),
        str(folder / "config.yaml"),
        device=device,
        dtype=torch.float16 if cuda else torch.float32,
        use_safetensors=True,
    )
    sync()
    load_s = time.perf_counter() - started
    marks: list[float] = []
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    out = pipe(
        image=image,
        generator=torch.Generator(device).manual_seed(seed),
        callback=lambda *a: (sync(), marks.append(time.perf_counter())),
        callback_steps=1,
    )
    sync()
    total = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    del pipe
    return {
        "variant": "hy3dgen default (fp16, 50 steps, octree 384)",
        "load_s": load_s,
        "sampling_s": (marks[-1] - started) if marks else None,
        "decode_s": (time.perf_counter() - marks[-1]) if marks else None,
        "total_s": total,
        "peak_vram_gb": peak,
        "surface": out[0] is not None,
    }


def run_ours(
    root: Path, image: Any, mask: Any, variant: str, quality: int, seed: int, device: str = "cuda", **kw: Any
) -> dict[str, Any]:
    import torch

    from orfeas.deadline import Deadline
    from orfeas.errors import StageFailed
    from orfeas.gpu.hunyuan_shape import HunyuanShapeBackend
    from orfeas.request import JobRequest
    from orfeas.settings import Settings
    from orfeas.types import Cutout, StageContext

    dtype, *flags = variant.split("+")
    settings = Settings(
        model_dir=root,
        device=device,
        dtype=dtype,
        torch_compile="compile" in flags,
        flashvdm="flashvdm" in flags,
    )
    if device == "cuda":
        torch.cuda.empty_cache()
    started = time.perf_counter()
    backend = HunyuanShapeBackend(settings, **kw)
    backend.load()
    sync()
    load_s = time.perf_counter() - started
    cutout = Cutout(image, mask, "alpha")
    request = JobRequest(image="bench", backend="hunyuan", quality=quality)
    rows = []
    # With torch.compile the first call compiles: it is timed apart, the second is the steady state.
    for _attempt in range(2 if "compile" in flags else 1):
        marks: list[float] = []
        ctx = StageContext(
            job_id="bench",
            stage="shape",
            settings=settings,
            report=lambda f, marks=marks: (sync(), marks.append(time.perf_counter())),
            deadline=Deadline(3600),
            seed=seed,
        )
        started = time.perf_counter()
        surface = True
        meta: dict[str, Any] = {}
        try:
            meta = backend.generate(cutout, request, ctx).meta
        except StageFailed:
            surface = False
        sync()
        total = time.perf_counter() - started
        params = backend.params(quality)
        sampling_end = marks[params.steps - 1] if len(marks) >= params.steps else None
        rows.append(
            {
                "variant": f"orfeas {variant} (quality {quality})",
                "load_s": load_s,
                "sampling_s": (sampling_end - started) if sampling_end else None,
                "decode_s": (started + total - sampling_end) if sampling_end else None,
                "total_s": total,
                "peak_vram_gb": (meta.get("vram_peak_mb") or 0) / 1024 or None,
                "surface": surface,
                "steps": params.steps,
                "octree_resolution": params.octree_resolution,
            }
        )
    del backend
    return rows[-1] if len(rows) == 1 else {**rows[-1], "compile_first_call_s": rows[0]["total_s"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default="fp16,bf16,bf16+compile,bf16+flashvdm")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("bench/gpu.py: torch is not installed; nothing measured.")
        return 0
    if not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA device here; GPU figures need a GPU, nothing measured.")
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from orfeas.gpu.torchvision_standin import import_shapegen

    import_shapegen()  # torchvision stand-in only where torchvision cannot load

    image, mask = bench_picture()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = write_full_size_model(root)
        if not args.skip_baseline:
            results.append(run_baseline(folder, image, args.seed))
        for variant in args.variants.split(","):
            results.append(run_ours(root, image, mask, variant, args.quality, args.seed))
    base = results[0]["total_s"] if not args.skip_baseline else None
    print(f"device: {torch.cuda.get_device_name()} (capability {torch.cuda.get_device_capability()})")
    print(
        f"{'variant':55} {'load s':>7} {'sample s':>9} {'decode s':>9} {'total s':>8}"
        f" {'× base':>7} {'VRAM GB':>8}"
    )
    for r in results:
        ratio = f"{r['total_s'] / base:.2f}" if base else "-"
        fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else "-"  # noqa: E731
        print(
            f"{r['variant']:55} {fmt(r['load_s']):>7} {fmt(r['sampling_s']):>9} {fmt(r['decode_s']):>9}"
            f" {fmt(r['total_s']):>8} {ratio:>7} {fmt(r['peak_vram_gb']):>8}"
        )
        r["ratio_to_baseline"] = (r["total_s"] / base) if base else None
    print(json.dumps({"device": torch.cuda.get_device_name(), "quality": args.quality, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
