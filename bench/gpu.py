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
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orfeas.gpu.hunyuan_config import HUNYUAN3D_2_CONFIG  # importable once the root is on the path

# Hunyuan3D-2's published config.yaml (hunyuan3d-dit-v2-0): DiT, ShapeVAE, DINOv2-giant.
FULL_CONFIG: dict[str, Any] = HUNYUAN3D_2_CONFIG
REPO = "tencent/Hunyuan3D-2"
SUBFOLDER = "hunyuan3d-dit-v2-0"
TURBO_VAE = "hunyuan3d-vae-v2-0-turbo"
SEGMENTATION = "tiny/segformer-fg"


def write_full_size_model(root: Path, config: dict[str, Any] = FULL_CONFIG, device: str = "cuda") -> Path:
    """Random full-size weights in the published layout (fp16 safetensors, keys part-prefixed)."""
    import safetensors.torch
    import torch
    import yaml

    from orfeas.gpu.tiny_models import write_hunyuan_folder

    folder = write_hunyuan_folder(root / REPO / SUBFOLDER, config, device=device, dtype=torch.float16)
    # FlashVDM's turbo VAE has the plain VAE's architecture (distilled weights): same shapes.
    tensors = safetensors.torch.load_file(str(folder / "model.fp16.safetensors"))
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


def write_tiny_texture_models(root: Path) -> None:
    """The tiny paint, delight and segmentation models beside the shape model (orfeas/gpu/tiny_models.py)."""
    from orfeas.gpu.tiny_models import write_tiny_delight, write_tiny_paint, write_tiny_segmentation

    write_tiny_delight(root)
    write_tiny_paint(root)
    write_tiny_segmentation(root, SEGMENTATION)


def run_paint(root: Path, device: str) -> dict[str, Any]:
    """Hunyuan3D-Paint (the tiny models) on a 20k-face sphere: load, then render, paint and bake."""
    import numpy as np
    import trimesh

    from orfeas.deadline import Deadline
    from orfeas.gpu.hunyuan_paint import HunyuanPaintTexture
    from orfeas.mesh.export import uv_texture
    from orfeas.settings import Settings
    from orfeas.types import Cutout, ShapeResult, StageContext

    settings = Settings(model_dir=root, device=device, texture_backend="hunyuan_paint")
    started = time.perf_counter()
    paint = HunyuanPaintTexture(settings)
    paint.load()
    sync()
    load_s = time.perf_counter() - started
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=50.0)  # 20,480 faces
    image, mask = bench_picture()
    shape = ShapeResult(mesh=sphere, picture_box=(-50.0, -50.0, 50.0, 50.0), stands=True)
    ctx = StageContext(
        job_id="bench", stage="texture", settings=settings, report=lambda f: None, deadline=Deadline(3600)
    )
    started = time.perf_counter()
    textured = paint.apply(shape, Cutout(image, np.asarray(mask), "alpha"), ctx)
    sync()
    return {
        "variant": f"orfeas hunyuan_paint (tiny models, {len(sphere.faces)} faces)",
        "load_s": load_s,
        "total_s": time.perf_counter() - started,
        "uv_texture": uv_texture(textured) is not None,
    }


def run_worker_job(root: Path, device: str, quality: int, seed: int) -> dict[str, Any]:
    """One RunPod job through orfeas_worker (segmentation, Hunyuan shape, paint, GLB + OBJ, local store)."""
    import base64
    import io

    from orfeas.settings import Settings
    from orfeas.storage.local import LocalStore
    from orfeas_worker.job import Worker

    image, _ = bench_picture()
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    settings = Settings(
        model_dir=root,
        device=device,
        background_backend="segmentation",
        segmentation_model=SEGMENTATION,
        texture_backend="hunyuan_paint",
    )
    with tempfile.TemporaryDirectory() as out:
        worker = Worker(settings, LocalStore(Path(out)))
        job = {
            "id": "bench-job",
            "input": {
                "image": base64.b64encode(buffer.getvalue()).decode("ascii"),
                "backend": "hunyuan",
                "formats": ["glb", "obj"],
                "quality": quality,
                "seed": seed,
            },
        }
        started = time.perf_counter()
        result = worker.run(job)
        total = time.perf_counter() - started
    if "error" in result:
        return {"variant": "worker job", "total_s": total, "error": result["error"]}
    return {
        "variant": f"worker job end to end (quality {quality})",
        "total_s": total,
        "stages_s": result["timings"],
        "vram_peak_mb": result.get("vram_peak_mb"),
        "memory_plan": result.get("memory_plan"),
        "meshes": sorted(result["meshes"]),
        "warnings": result["warnings"],
    }


def run_step(step: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One measured step in this process (a subprocess of the CPU run: its peak RSS is the step's)."""
    import resource

    image, mask = bench_picture()
    imported_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if step == "baseline":
        row = run_baseline(root / REPO / SUBFOLDER, image, args.seed, device=args.device)
    elif step == "ours":
        row = run_ours(root, image, mask, "fp32", args.quality, args.seed, device=args.device)
    elif step == "paint":
        row = run_paint(root, args.device)
    else:
        row = run_worker_job(root, args.device, args.quality, args.seed)
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row["rss_after_imports_mb"] = imported_mb
    return row


def main_cpu(args: argparse.Namespace) -> int:
    """The same comparison on the CPU with the tiny models, each step in its own process."""
    import subprocess

    from orfeas.gpu.tiny_models import write_tiny_hunyuan

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_tiny_hunyuan(root)
        write_tiny_texture_models(root)
        steps = ["ours", "paint", "worker"] if args.skip_baseline else ["baseline", "ours", "paint", "worker"]
        for step in steps:
            done = subprocess.run(
                [
                    *(sys.executable, __file__, "--device", "cpu", "--step", step, "--root", tmp),
                    *("--quality", str(args.quality), "--seed", str(args.seed)),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # hy3dgen's progress bars
                text=True,
                timeout=args.timeout,
                check=False,
            )
            lines = done.stdout.strip().splitlines()
            results.append(
                json.loads(lines[-1])
                if done.returncode == 0 and lines
                else {"variant": step, "error": done.returncode}
            )
    base = results[0].get("total_s") if not args.skip_baseline else None
    print("device: cpu (no GPU here), tiny random-weight models: CPU figures at the smallest size")
    print(
        f"{'step':55} {'load s':>7} {'sample s':>9} {'decode s':>9} {'total s':>8} {'× base':>7}"
        f" {'peak RSS MB':>12}"
    )
    fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else "-"  # noqa: E731
    for r in results:
        shape_step = "sampling_s" in r
        ratio = f"{r['total_s'] / base:.3f}" if base and shape_step and "total_s" in r else "-"
        r["ratio_to_baseline"] = (r["total_s"] / base) if base and shape_step else None
        print(
            f"{r['variant']:55} {fmt(r.get('load_s')):>7} {fmt(r.get('sampling_s')):>9}"
            f" {fmt(r.get('decode_s')):>9} {fmt(r.get('total_s')):>8} {ratio:>7}"
            f" {fmt(r.get('peak_rss_mb')):>12}"
        )
        if "stages_s" in r:
            print("    stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in r["stages_s"].items()))
    print(json.dumps({"device": "cpu", "models": "tiny", "quality": args.quality, "results": results}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default="fp16,bf16,bf16+compile,bf16+flashvdm")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per CPU step")
    parser.add_argument("--step", choices=("baseline", "ours", "paint", "worker"), help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("bench/gpu.py: torch is not installed; nothing measured.")
        return 0
    from orfeas.gpu.torchvision_standin import import_shapegen

    import_shapegen()  # torchvision stand-in only where torchvision cannot load
    if args.step is not None:
        print(json.dumps(run_step(args.step, args.root, args)))
        return 0
    if args.device == "cpu":
        return main_cpu(args)
    if not torch.cuda.is_available():
        print(
            "bench/gpu.py: no CUDA device here; GPU figures need a GPU, nothing measured"
            " (--device cpu runs the tiny models on the CPU instead)."
        )
        return 0

    image, mask = bench_picture()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = write_full_size_model(root)
        write_tiny_texture_models(root)
        if not args.skip_baseline:
            results.append(run_baseline(folder, image, args.seed))
        for variant in args.variants.split(","):
            results.append(run_ours(root, image, mask, variant, args.quality, args.seed))
        paint = run_paint(root, "cuda")
        worker = run_worker_job(root, "cuda", args.quality, args.seed)
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
    print(f"paint (tiny models): {paint['total_s']:.2f} s; worker job: {worker['total_s']:.2f} s")
    results += [paint, worker]
    print(json.dumps({"device": torch.cuda.get_device_name(), "quality": args.quality, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
