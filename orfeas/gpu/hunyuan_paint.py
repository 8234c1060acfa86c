"""Texture with Hunyuan3D-Paint's models, rendered and baked by our own PyTorch code (CPU or CUDA).

hy3dgen.texgen's pipeline needs compiled CUDA extensions (`custom_rasterizer`, the
`mesh_processor` inpainting) that are not on PyPI; none of it is imported here. Its two
diffusion models are: the delighting model (an InstructPix2Pix pipeline) and the multiview
paint pipeline (`hunyuanpaint/pipeline.py` with its UNet2p5D, entered without texgen's
`__init__`, see orfeas/gpu/texgen_import.py). The rest is ours:

    mesh (any shape backend, build frame) → Hunyuan's frame (Y up, longest side 1.15)
    → decimate to the job's budget (≤ 40k), xatlas unwrap          (orfeas/texture/unwrap.py)
    → normal and position maps from the six views             (orfeas/texture/views.py)
    → delight the picture, paint the six views                (hy3dgen's models)
    → bake the views into the atlas, inpaint, pad             (orfeas/texture/bake.py)
    → a trimesh with TextureVisuals, back in the build frame   (GLB writes it as a PNG texture)

The view size is the paint UNet's own (its sample_size × the VAE's scale factor: 512 for the
published model), the texture 4× the view size up to 2048 (hy3dgen bakes 2048²).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from orfeas.errors import BackendUnavailable, StageFailed
from orfeas.gpu import runtime
from orfeas.gpu.models import resolve_model_dir
from orfeas.settings import Settings

if TYPE_CHECKING:
    import trimesh
    from PIL import Image

    from orfeas.types import Cutout, ShapeResult, StageContext

# Native modules the texture path imports (all PyPI wheels): UV unwrapping, hole filling.
NATIVE_WHEELS = ("xatlas", "cv2")
DELIGHT_SUBFOLDER = "hunyuan3d-delight-v2-0"
PAINT_SUBFOLDER = "hunyuan3d-paint-v2-0"
# Decimate before unwrapping: xatlas on 40k faces is ~25 s on one core (bench/texture.py);
# 400k-face meshes are what takes hy3dgen's own unwrap 10-60 minutes.
TEXTURE_FACE_BUDGET = 40_000
MAX_TEXTURE = 2048
DELIGHT_STEPS = 50  # hy3dgen's Light_Shadow_Remover
PAINT_STEPS = 30  # hy3dgen's Multiview_Diffusion_Net
# Build frame (Z up, front -Y) → Hunyuan's (Y up, front +Z): x, z, -y.
BUILD_TO_PAINT = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def camera_index(azim: float, elev: float) -> int:
    """hy3dgen's camera embedding index of a view (its pipeline's table, for its 0/±20/±90 elevations)."""
    step = {-20: 1, 0: 1, 20: 1, -90: 3, 90: 3}[int(elev)]
    offset = {-20: 0, 0: 12, 20: 24, -90: 36, 90: 40}[int(elev)]
    return (((int(azim) // 30) + 9) % 12) // step + offset


@dataclass
class _Models:
    delight: Any
    paint: Any
    view_size: int


class HunyuanPaintTexture(runtime.ModelBackend[_Models]):
    name = "hunyuan_paint"
    stage = "texture"

    def __init__(self, settings: Settings) -> None:
        self.model = settings.paint_model or settings.shape_model
        try:
            import diffusers  # noqa: F401

            from orfeas.gpu.texgen_import import import_texgen_module

            import_texgen_module("hunyuanpaint.pipeline")
        except Exception as exc:  # ImportError, or a diffusers too old for hy3dgen's modules
            raise BackendUnavailable(
                f"Hunyuan3D-Paint is not usable here ({type(exc).__name__}: {exc})", field="texture"
            ) from exc
        # The texture path's only native pieces are PyPI wheels (torch, xatlas, OpenCV); nothing is
        # compiled for it (docs/backends.md). A missing wheel is refused here, where the backend is
        # built (at worker start with ORFEAS_EAGER_LOAD), not met halfway through a job.
        missing = [name for name in NATIVE_WHEELS if importlib.util.find_spec(name) is None]
        if missing:
            raise BackendUnavailable(
                f"Hunyuan3D-Paint needs {', '.join(missing)} (requirements.txt); not installed here",
                field="texture",
            )
        # Both folders are checked now so that a missing one is reported before any job runs.
        self.delight_dir = resolve_model_dir(settings, self.model, subfolder=DELIGHT_SUBFOLDER)
        self.paint_dir = resolve_model_dir(
            settings, self.model, subfolder=PAINT_SUBFOLDER, needs=["unet/config.json"]
        )
        super().__init__(settings)

    def memory_need(self) -> int:
        """Device bytes the texture stage still needs (orfeas/gpu/memory_plan.py): the weights while
        they are not loaded, plus the activation peak at this model's view size."""
        import json

        from orfeas.gpu.memory_plan import paint_need_bytes

        unet = json.loads((self.paint_dir / "unet" / "config.json").read_text())
        vae_config = self.paint_dir / "vae" / "config.json"
        levels = (
            len(json.loads(vae_config.read_text()).get("block_out_channels", [0] * 4))
            if vae_config.is_file()
            else 4
        )
        view_size = int(unet.get("sample_size", 64)) * 2 ** (levels - 1)
        width = 4 if self.dtype == runtime.DTYPES["fp32"] else 2
        return paint_need_bytes(loaded=self._model.loaded, view_size=view_size, bytes_per_param=width)

    def _build(self) -> _Models:
        from diffusers import (
            AutoencoderKL,
            EulerAncestralDiscreteScheduler,
            StableDiffusionInstructPix2PixPipeline,
        )
        from transformers import CLIPTextModel, CLIPTokenizer

        from orfeas.gpu.texgen_import import import_texgen_module

        dtype = self.dtype
        delight = StableDiffusionInstructPix2PixPipeline.from_pretrained(
            str(self.delight_dir), dtype=dtype, safety_checker=None, local_files_only=True
        )
        delight.scheduler = EulerAncestralDiscreteScheduler.from_config(delight.scheduler.config)
        delight.set_progress_bar_config(disable=True)
        delight.to(self.device)
        paint_module = import_texgen_module("hunyuanpaint.pipeline")
        unet = paint_module.UNet2p5DConditionModel.from_pretrained(
            str(self.paint_dir / "unet"), torch_dtype=dtype
        )
        scheduler = EulerAncestralDiscreteScheduler.from_pretrained(str(self.paint_dir / "scheduler"))
        scheduler = EulerAncestralDiscreteScheduler.from_config(scheduler.config, timestep_spacing="trailing")
        paint = paint_module.HunyuanPaintPipeline(
            vae=AutoencoderKL.from_pretrained(str(self.paint_dir / "vae"), dtype=dtype),
            text_encoder=CLIPTextModel.from_pretrained(str(self.paint_dir / "text_encoder"), dtype=dtype),
            tokenizer=CLIPTokenizer.from_pretrained(str(self.paint_dir / "tokenizer")),
            unet=unet,
            scheduler=scheduler,
            feature_extractor=None,
        )
        paint.set_progress_bar_config(disable=True)
        paint.to(self.device)
        view_size = int(unet.unet.config.sample_size) * paint.vae_scale_factor
        return _Models(delight=delight, paint=paint, view_size=view_size)

    def apply(self, shape: ShapeResult, cutout: Cutout, ctx: StageContext) -> trimesh.Trimesh:
        models = self.load()
        ctx.report(0.05)
        with runtime.oom_guard(ctx.stage):
            textured = self.paint(shape.mesh, cutout.image.convert("RGBA"), models, ctx)
        if textured is None or len(textured.faces) == 0:
            raise StageFailed("Hunyuan3D-Paint returned no mesh", stage=ctx.stage)
        return textured

    def paint(
        self, mesh: trimesh.Trimesh, picture: Image.Image, models: _Models, ctx: StageContext
    ) -> trimesh.Trimesh:
        import torch
        import trimesh as tm
        from PIL import Image as PILImage

        from orfeas.texture.bake import bake
        from orfeas.texture.unwrap import unwrap
        from orfeas.texture.views import PAINT_VIEWS, conditioning_maps, normalise

        size = models.view_size
        build = np.asarray(mesh.vertices, dtype=np.float64)
        # Unwrapped within the job's own budget too: export keeps a UV texture only on a mesh within
        # it (orfeas/texture/finish_uv.py), and quality 1-3 budgets are 20k-39k faces.
        budget = min(TEXTURE_FACE_BUDGET, ctx.face_budget or TEXTURE_FACE_BUDGET)
        uvm = unwrap(build, np.asarray(mesh.faces, dtype=np.int64), budget)
        ctx.report(0.15)
        paint_frame = normalise(uvm.vertices @ BUILD_TO_PAINT.T)
        v = torch.as_tensor(paint_frame, dtype=torch.float32, device=self.device)
        f = torch.as_tensor(uvm.faces, dtype=torch.int64, device=self.device)
        normals, positions = [], []
        for view in PAINT_VIEWS:
            normal_rgb, position_rgb, _ = conditioning_maps(v, f, view, size)
            normals.append(normal_rgb)
            positions.append(position_rgb)
        reference = self._delight(models, _recentre(picture), size)
        ctx.report(0.3)
        views = self._paint_views(models, reference, normals, positions, size)
        ctx.report(0.85)
        texture_size = min(MAX_TEXTURE, 4 * size)
        baked = bake(paint_frame, uvm.faces, uvm.uvs, PAINT_VIEWS, views, texture_size, device=self.device)
        image = PILImage.fromarray(baked.texture)
        uv_trimesh = np.column_stack([uvm.uvs[:, 0], 1.0 - uvm.uvs[:, 1]])  # trimesh counts v from the bottom
        visual = tm.visual.TextureVisuals(uv=uv_trimesh, image=image)
        ctx.report(0.95)
        return tm.Trimesh(uvm.vertices, uvm.faces, visual=visual, process=False)

    def _delight(self, models: _Models, picture: Image.Image, size: int) -> Image.Image:
        """The picture without baked-in light and shadow, on white, at the view size."""
        import torch
        from PIL import Image as PILImage

        rgba = np.asarray(picture.convert("RGBA").resize((size, size)), dtype=np.float32) / 255.0
        rgb = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
        on_white = PILImage.fromarray((rgb * 255 + 0.5).astype(np.uint8))
        generator = torch.Generator(device="cpu").manual_seed(42)
        out = models.delight(
            prompt="",
            image=on_white,
            generator=generator,
            height=size,
            width=size,
            num_inference_steps=DELIGHT_STEPS,
            image_guidance_scale=1.5,  # hy3dgen's cfg_image and cfg_text
            guidance_scale=1.0,
        ).images[0]
        delit: Image.Image = out.convert("RGB")
        return delit

    def _paint_views(
        self,
        models: _Models,
        reference: Image.Image,
        normals: list[np.ndarray],
        positions: list[np.ndarray],
        size: int,
    ) -> list[np.ndarray]:
        """Six views painted by the multiview model, (size, size, 3) uint8 each."""
        import torch

        pipe = models.paint
        dtype = pipe.vae.dtype

        def stack(
            images: list[np.ndarray],
        ) -> torch.Tensor:  # (1, N, 3, H, W) in 0..1, what encode_images takes
            t = torch.as_tensor(np.stack(images), dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
            return t[None].to(device=self.device, dtype=dtype)

        from orfeas.texture.views import PAINT_VIEWS

        cameras = [[camera_index(view.azim, view.elev) for view in PAINT_VIEWS]]
        generator = torch.Generator(device="cpu").manual_seed(0)
        images = pipe(
            reference.resize((size, size)),
            num_inference_steps=PAINT_STEPS,
            width=size,
            height=size,
            generator=generator,
            num_in_batch=len(PAINT_VIEWS),
            camera_info_gen=cameras,
            camera_info_ref=[[0]],
            normal_imgs=stack(normals),
            position_imgs=stack(positions),
        ).images
        return [np.asarray(image.convert("RGB").resize((size, size))) for image in images]


def _recentre(picture: Image.Image, border: float = 0.2) -> Image.Image:
    """Crop to the cutout's opaque box, add `border` of it around, and square it (hy3dgen's recenter)."""
    from PIL import Image as PILImage

    alpha = np.asarray(picture)[..., 3]
    rows, cols = np.nonzero(alpha > 0)
    if len(rows) == 0:
        return picture
    crop = picture.crop((cols.min(), rows.min(), cols.max() + 1, rows.max() + 1))
    w, h = crop.size
    bw, bh = int(w * border), int(h * border)
    side = max(w + 2 * bw, h + 2 * bh)
    square = PILImage.new("RGBA", (side, side), (255, 255, 255, 0))
    square.paste(crop, ((side - w) // 2, (side - h) // 2))
    return square
