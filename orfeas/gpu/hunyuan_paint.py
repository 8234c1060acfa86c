"""Texture with Hunyuan3D-Paint (hy3dgen.texgen): delighting, multiview diffusion, UV baking.

texgen needs compiled CUDA extensions (its rasteriser) beside the weights. Where it cannot be
imported, or its weights are missing, constructing the backend raises BackendUnavailable or
ModelUnavailable, and the pipeline degrades to the weights-free vertex colours with a warning.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from orfeas.errors import BackendUnavailable, StageFailed
from orfeas.gpu import runtime
from orfeas.gpu.models import resolve_model_dir
from orfeas.settings import Settings

if TYPE_CHECKING:
    import trimesh

    from orfeas.types import Cutout, ShapeResult, StageContext

DELIGHT_SUBFOLDER = "hunyuan3d-delight-v2-0"
PAINT_SUBFOLDER = "hunyuan3d-paint-v2-0"


class HunyuanPaintTexture:
    name = "hunyuan_paint"

    def __init__(self, settings: Settings) -> None:
        try:
            from hy3dgen.texgen import Hunyuan3DPaintPipeline  # noqa: F401
        except Exception as exc:  # ImportError, or an extension built for another torch/CUDA
            raise BackendUnavailable(
                f"Hunyuan3D-Paint is not usable here ({type(exc).__name__}: {exc})", field="texture"
            ) from exc
        self.settings = settings
        self.model = settings.paint_model or settings.shape_model
        self.device = runtime.choose_device(settings)
        if self.device.type != "cuda":
            raise BackendUnavailable("Hunyuan3D-Paint needs a CUDA device", field="texture")
        # Both folders are checked now so that a missing one is reported before any job runs.
        self.delight_dir = resolve_model_dir(settings, self.model, subfolder=DELIGHT_SUBFOLDER)
        self.paint_dir = resolve_model_dir(settings, self.model, subfolder=PAINT_SUBFOLDER)
        self._pipeline: Any = None
        self._lock = threading.Lock()
        if settings.eager_load:
            self.load()

    def load(self) -> Any:
        from hy3dgen.texgen.pipelines import Hunyuan3DPaintPipeline, Hunyuan3DTexGenConfig

        with self._lock:
            if self._pipeline is None:
                with runtime.oom_guard("texture"):
                    config = Hunyuan3DTexGenConfig(str(self.delight_dir), str(self.paint_dir))
                    self._pipeline = Hunyuan3DPaintPipeline(config)
            return self._pipeline

    def apply(self, shape: ShapeResult, cutout: Cutout, ctx: StageContext) -> trimesh.Trimesh:
        pipeline = self.load()
        ctx.report(0.05)
        with runtime.oom_guard(ctx.stage):
            textured = pipeline(shape.mesh, image=cutout.image.convert("RGBA"))
        if textured is None or len(textured.faces) == 0:
            raise StageFailed("Hunyuan3D-Paint returned no mesh", stage=ctx.stage)
        return textured
