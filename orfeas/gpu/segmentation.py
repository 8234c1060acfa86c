"""Background removal with an image-segmentation model from transformers (BiRefNet, RMBG, SegFormer…).

Models in transformers' own semantic-segmentation table load with `trust_remote_code=False`.
BiRefNet and RMBG ship their modelling code inside the model folder (`auto_map` in config.json):
that code is run from the local folder only, since nothing is fetched at run time.
The foreground probability is read from whichever output the model gives: one logit channel
(sigmoid), or class logits where class 0 is the background (1 − softmax[0]).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from orfeas.errors import BackendUnavailable, StageFailed
from orfeas.gpu import runtime
from orfeas.gpu.models import resolve_model_dir
from orfeas.settings import SEGMENTATION_MODEL, Settings
from orfeas.types import Cutout

if TYPE_CHECKING:
    from PIL import Image

    from orfeas.types import StageContext

# ImageNet statistics: BiRefNet, RMBG-2.0 and SegFormer are all trained with them.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# BiRefNet and RMBG-2.0 are trained at 1024 × 1024.
DEFAULT_SIZE = 1024
THRESHOLD = 0.5


class SegmentationBackgroundRemover(runtime.ModelBackend[Any]):
    name = "segmentation"
    stage = "background"

    def __init__(self, settings: Settings) -> None:
        if not settings.segmentation_model:
            raise BackendUnavailable(
                f"set {SEGMENTATION_MODEL} to use the segmentation background remover", field="background"
            )
        self.model_name = settings.segmentation_model
        self._size = DEFAULT_SIZE
        super().__init__(settings)

    def _build(self) -> Any:
        from transformers import AutoConfig, AutoModelForImageSegmentation, AutoModelForSemanticSegmentation
        from transformers.models.auto.modeling_auto import MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES

        folder = resolve_model_dir(self.settings, self.model_name, needs=["config.json"])
        remote = "auto_map" in (folder / "config.json").read_text()
        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=remote, local_files_only=True)
        if config.model_type in MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES:
            auto: Any = AutoModelForSemanticSegmentation
        else:
            auto = AutoModelForImageSegmentation
        model = auto.from_pretrained(
            str(folder), config=config, trust_remote_code=remote, local_files_only=True, dtype=self.dtype
        )
        model.to(self.device).eval()
        size = getattr(config, "image_size", None)
        self._size = int(size) if isinstance(size, int) and size > 0 else DEFAULT_SIZE
        return model

    def remove(self, image: Image.Image, ctx: StageContext) -> Cutout:
        model = self.load()
        rgba = image.convert("RGBA")
        rgb = rgba.convert("RGB").resize((self._size, self._size))
        x = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1)
        x = (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
        x = x.unsqueeze(0).to(self.device, self.dtype)
        ctx.report(0.2)
        with runtime.oom_guard(ctx.stage), torch.inference_mode():
            prob = foreground_probability(model(pixel_values=x))
            prob = torch.nn.functional.interpolate(
                prob[None, None].float(), size=(rgba.height, rgba.width), mode="bilinear", align_corners=False
            )[0, 0]
        ctx.report(0.8)
        mask = (prob > THRESHOLD).cpu().numpy()
        if not mask.any():
            raise StageFailed(f"{self.model_name} found no foreground", stage=ctx.stage)
        out = np.asarray(rgba).copy()
        out[..., 3] = mask.astype(np.uint8) * 255
        from PIL import Image as PILImage

        return Cutout(image=PILImage.fromarray(out, "RGBA"), mask=mask, method=self.model_name)


def foreground_probability(outputs: Any) -> torch.Tensor:
    """(h, w) foreground probability of the first picture, from logits in any of the usual shapes."""
    logits = getattr(outputs, "logits", None)
    if logits is None:
        # BiRefNet returns a list of side outputs, the finest last; others a tuple (logits, ...).
        logits = outputs[-1] if isinstance(outputs, (list, tuple)) else outputs
        if isinstance(logits, (list, tuple)):
            logits = logits[-1]
    logits = logits.float()
    if logits.dim() == 4:
        logits = logits[0]
    if logits.dim() == 3 and logits.shape[0] > 1:
        background: torch.Tensor = logits.softmax(dim=0)[0]
        return 1.0 - background
    foreground: torch.Tensor = logits.reshape(logits.shape[-2], logits.shape[-1]).sigmoid()
    return foreground
