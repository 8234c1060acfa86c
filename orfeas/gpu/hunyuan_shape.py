"""Shape generation with Hunyuan3D-2 (hy3dgen): flow-matching DiT + ShapeVAE, image → mesh.

The pipeline is built from the model folder's `config.yaml` and checkpoint with hy3dgen's
`from_single_file` (its `from_pretrained` would download a missing folder); the weights load
once per process. Quality drives the denoising steps, the octree resolution of the volume
decoding and the guidance scale. Hunyuan3D-2 is under the Tencent Hunyuan 3D community licence.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from orfeas.errors import ModelUnavailable, StageFailed
from orfeas.gpu import runtime
from orfeas.gpu.models import resolve_model_dir
from orfeas.gpu.shape_views import CHECKPOINTS, MULTIVIEW_PROCESSOR, shape_model_folder
from orfeas.gpu.torchvision_standin import import_shapegen
from orfeas.settings import Settings
from orfeas.types import ShapeResult

if TYPE_CHECKING:
    import trimesh

    from orfeas.request import JobRequest
    from orfeas.types import Cutout, StageContext

# The turbo VAE is FlashVDM's decoder.
TURBO_VAE_SUBFOLDERS = {
    "Hunyuan3D-2": "hunyuan3d-vae-v2-0-turbo",
    "Hunyuan3D-2mini": "hunyuan3d-vae-v2-mini-turbo",
    "Hunyuan3D-2mv": "hunyuan3d-vae-v2-0-turbo",
}


class ShapeParams(NamedTuple):
    """Sampler and decoder settings of one job (`shape_params`)."""

    steps: int
    octree_resolution: int
    guidance: float
    num_chunks: int = 20_000


def shape_params(quality: int) -> ShapeParams:
    """Quality 1..10 → sampler and decoder settings.

    hy3dgen's defaults (50 steps, octree 384) are quality 10. The octree resolution sets the
    marching-cubes grid (cost grows with its cube: 256 is 0.3× the work of 384); the steps are
    linear in DiT time. Quality 5 (the default) lands on 28 steps at octree 256, close to
    Hunyuan3D's own demo app (30 steps, 256).
    """
    q = min(max(quality, 1), 10)
    steps = round(10 + (50 - 10) * (q - 1) / 9)
    octree = 128 if q <= 2 else 192 if q <= 4 else 256 if q <= 7 else 320 if q <= 9 else 384
    return ShapeParams(steps=steps, octree_resolution=octree, guidance=5.0 + 0.25 * (q - 5))


def _checkpoint(folder: Path) -> Path:
    for name in CHECKPOINTS:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(folder / CHECKPOINTS[0])


class HunyuanShapeBackend(runtime.ModelBackend[Any]):
    name = "hunyuan"
    stage = "shape"

    def __init__(self, settings: Settings, *, params: Callable[[int], ShapeParams] | None = None) -> None:
        self.params = params or shape_params
        self._offloaded = False  # moved to host memory to make room for paint (memory_plan)
        self.flashvdm = False
        super().__init__(settings)

    # -- loading --------------------------------------------------------------------------------
    def load(self) -> Any:
        """Build the pipeline once (thread-safe); later calls return it, back on the device if it
        was moved off."""
        pipeline = self._model.get()
        with self._model.lock:
            if self._offloaded:
                with runtime.oom_guard("shape"):
                    pipeline.to(device=str(self.device))
                self._offloaded = False
        return pipeline

    def resident(self) -> bool:
        """True while the loaded pipeline's weights are on a CUDA device."""
        return self._model.loaded and not self._offloaded and self.device.type == "cuda"

    def offload(self) -> None:
        """Move the pipeline's weights to host memory and give the device memory back."""
        with self._model.lock:
            pipeline = self._model.peek()
            if pipeline is not None and not self._offloaded:
                pipeline.to(device="cpu")
                self._offloaded = True
                runtime.free_device_memory()

    def _build(self) -> Any:
        model = self.settings.shape_model
        folder = shape_model_folder(self.settings)
        # Without torchvision (a CPU smoke-test image) hy3dgen gets its three tensor transforms from
        # a stand-in; with it, this is a plain import. A failure is reported by require() below.
        with contextlib.suppress(ImportError):
            import_shapegen()
        shapegen = runtime.require("hy3dgen.shapegen", self.name)
        ckpt = _checkpoint(folder)
        try:
            pipeline = shapegen.Hunyuan3DDiTFlowMatchingPipeline.from_single_file(
                str(ckpt),
                str(folder / "config.yaml"),
                device=str(self.device),
                dtype=self.dtype,
                use_safetensors=ckpt.suffix == ".safetensors",
            )
        except FileNotFoundError as exc:
            raise ModelUnavailable(f"cannot load {model!r}: {exc}", model=model, path=str(folder)) from exc
        if self.settings.flashvdm:
            self._enable_flashvdm(pipeline, model)
        if self.settings.torch_compile:
            # The DiT runs once per step: it is where compiling pays; the VAE runs once per job.
            pipeline.model = runtime.maybe_compile(pipeline.model, self.settings)
        return pipeline

    def _enable_flashvdm(self, pipeline: Any, model: str) -> None:
        """FlashVDM: hierarchical volume decoding with adaptive KV selection, plus the turbo VAE if baked."""
        from hy3dgen.shapegen.models.autoencoders import ShapeVAE

        subfolder = TURBO_VAE_SUBFOLDERS.get(model.rstrip("/").rsplit("/", 1)[-1])
        if subfolder:
            try:
                folder = resolve_model_dir(
                    self.settings, model, subfolder=subfolder, needs=["config.yaml", "|".join(CHECKPOINTS)]
                )
            except ModelUnavailable:
                folder = None  # the plain VAE still decodes hierarchically, only less fast
            if folder is not None:
                ckpt = _checkpoint(folder)
                pipeline.vae = ShapeVAE.from_single_file(
                    str(ckpt),
                    str(folder / "config.yaml"),
                    device=str(self.device),
                    dtype=self.dtype,
                    use_safetensors=ckpt.suffix == ".safetensors",
                )
        pipeline.vae.enable_flashvdm_decoder(enabled=True, adaptive_kv_selection=True, mc_algo="mc")
        self.flashvdm = True

    # -- generation -----------------------------------------------------------------------------
    def generate(
        self,
        cutout: Cutout,
        request: JobRequest,
        ctx: StageContext,
        *,
        views: Mapping[str, Cutout] | None = None,
    ) -> ShapeResult:
        """The mesh of `cutout` (the front view), or of every view in `views` for a multi-view model."""
        pipeline = self.load()
        params = self.params(request.quality)
        generator = runtime.make_generator(self.device, ctx.seed)

        def on_step(step: int, _t: Any, _outputs: Any) -> None:
            ctx.report(0.9 * (step + 1) / params.steps)
            ctx.check()

        with runtime.oom_guard(ctx.stage), runtime.measure_vram(self.device) as vram:
            meshes = pipeline(
                image=conditioning(pipeline, cutout, views),
                num_inference_steps=params.steps,
                guidance_scale=params.guidance,
                octree_resolution=params.octree_resolution,
                num_chunks=params.num_chunks,
                generator=generator,
                callback=on_step,
                callback_steps=1,
                enable_pbar=False,
            )
        mesh = meshes[0] if meshes else None
        if mesh is None or len(mesh.faces) == 0:
            raise StageFailed("empty surface: the decoded volume has no zero crossing", stage=ctx.stage)
        ctx.report(0.95)
        return ShapeResult(
            mesh=mesh,
            picture_box=picture_box(mesh, cutout.mask),
            stands=True,
            meta={
                "model": self.settings.shape_model,
                "device": self.device.type,
                "dtype": runtime.dtype_name(self.dtype),
                "steps": params.steps,
                "octree_resolution": params.octree_resolution,
                "guidance": params.guidance,
                "flashvdm": self.flashvdm,
                "torch_compile": self.settings.torch_compile,
                "vram_peak_mb": vram.mb,
                **({"views": list(views)} if views else {}),
            },
        )


def conditioning(pipeline: Any, front: Cutout, views: Mapping[str, Cutout] | None) -> Any:
    """What hy3dgen's pipeline takes as `image`: one RGBA picture, or for a multi-view model a dict
    view name -> RGBA picture (its MVImageProcessorV2 recentres each view on its alpha and orders
    them front, left, back, right), the front alone when only it was given."""
    if type(pipeline.image_processor).__name__ != MULTIVIEW_PROCESSOR:
        return front.image.convert("RGBA")
    given = views or {"front": front}
    return {name: view.image.convert("RGBA") for name, view in given.items()}


def picture_box(mesh: trimesh.Trimesh, mask: np.ndarray) -> tuple[float, float, float, float]:
    """The XY rectangle the whole picture covers, given that the foreground spans the mesh's XY extent.

    hy3dgen recentres the foreground to fill the view, so the mesh's X/Y bounds match the mask's
    column/row bounds; the picture's full frame follows by the same scale.
    """
    (x0, y0, _), (x1, y1, _) = mesh.bounds
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0 or len(cols) == 0:
        return float(x0), float(y0), float(x1), float(y1)
    height, width = mask.shape
    c0, c1 = cols[0], cols[-1] + 1
    r0, r1 = rows[0], rows[-1] + 1
    sx = (x1 - x0) / (c1 - c0)
    sy = (y1 - y0) / (r1 - r0)
    # Rows grow downwards, picture Y grows upwards.
    return (
        float(x0 - c0 * sx),
        float(y0 - (height - r1) * sy),
        float(x1 + (width - c1) * sx),
        float(y1 + r0 * sy),
    )
