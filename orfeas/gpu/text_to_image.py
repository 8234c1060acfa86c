"""Prompt → picture with a diffusers pipeline (e.g. SDXL-Turbo, FLUX.1-schnell) from a local folder.

`AutoPipelineForText2Image` picks the pipeline class from the folder's `model_index.json`; the
weights load once per process. Distilled models (turbo, schnell, lightning) are made for a
handful of steps without classifier-free guidance; other models get the usual 30 steps at 5.0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orfeas.errors import BackendUnavailable, StageFailed
from orfeas.gpu import runtime
from orfeas.gpu.models import resolve_model_dir
from orfeas.settings import TEXT_TO_IMAGE_MODEL, Settings

if TYPE_CHECKING:
    from PIL import Image

    from orfeas.types import StageContext

DISTILLED_MARKERS = ("turbo", "schnell", "lightning", "lcm")


@dataclass(frozen=True)
class SamplerParams:
    steps: int
    guidance: float


def sampler_params(model: str) -> SamplerParams:
    """4 steps without guidance for distilled models (their training setting), else 30 steps at 5.0."""
    if any(marker in model.lower() for marker in DISTILLED_MARKERS):
        return SamplerParams(steps=4, guidance=0.0)
    return SamplerParams(steps=30, guidance=5.0)


class DiffusersTextToImage(runtime.ModelBackend[Any]):
    name = "diffusers"
    stage = "text_to_image"

    def __init__(self, settings: Settings, *, params: SamplerParams | None = None) -> None:
        if not settings.text_to_image_model:
            raise BackendUnavailable(f"set {TEXT_TO_IMAGE_MODEL} to use text-to-image", field="prompt")
        self.model = settings.text_to_image_model
        self.params = params or sampler_params(self.model)
        super().__init__(settings)

    def _build(self) -> Any:
        from diffusers import AutoPipelineForText2Image

        folder = resolve_model_dir(self.settings, self.model, needs=["model_index.json"])
        pipeline = AutoPipelineForText2Image.from_pretrained(
            str(folder), dtype=self.dtype, local_files_only=True
        )
        pipeline.to(self.device)
        denoiser_name = "transformer" if getattr(pipeline, "transformer", None) is not None else "unet"
        denoiser = getattr(pipeline, denoiser_name)
        runtime.use_sdpa(denoiser, getattr(pipeline, "vae", None))
        if self.settings.torch_compile:
            setattr(pipeline, denoiser_name, runtime.maybe_compile(denoiser, self.settings))
        pipeline.set_progress_bar_config(disable=True)
        return pipeline

    def generate(self, prompt: str, ctx: StageContext) -> Image.Image:
        pipeline = self.load()
        steps = self.params.steps

        def on_step_end(_pipe: Any, step: int, _timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            ctx.report((step + 1) / steps)
            ctx.check()
            return kwargs

        with runtime.oom_guard(ctx.stage):
            output = pipeline(
                prompt=prompt,
                num_inference_steps=steps,
                guidance_scale=self.params.guidance,
                generator=runtime.make_generator(self.device, ctx.seed),
                callback_on_step_end=on_step_end,
            )
        images = getattr(output, "images", None)
        if not images:
            raise StageFailed("the text-to-image model returned no picture", stage=ctx.stage)
        picture: Image.Image = images[0].convert("RGB")
        return picture
