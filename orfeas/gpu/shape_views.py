"""Which views of the object a shape model takes, decided from its files before any model loads.

A multi-view Hunyuan3D model (Hunyuan3D-2mv) is the one whose config.yaml builds hy3dgen's
`MVImageProcessorV2` (and the `DinoImageEncoderMV` conditioner behind it): it takes any of front,
left, back and right. Every other shape model (Hunyuan3D-2, 2mini, the weights-free backends)
takes the front view alone. Reading the config is stdlib + yaml, so a job asking for views its
model cannot take is refused in milliseconds, not after a model of several GB has loaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from orfeas.errors import InvalidInput
from orfeas.gpu.models import resolve_model_dir
from orfeas.request import VIEW_NAMES
from orfeas.settings import Settings

# The DiT subfolder of each published Hunyuan3D-2 repository.
DIT_SUBFOLDERS = {
    "Hunyuan3D-2": "hunyuan3d-dit-v2-0",
    "Hunyuan3D-2mini": "hunyuan3d-dit-v2-mini",
    "Hunyuan3D-2mv": "hunyuan3d-dit-v2-mv",
}
CHECKPOINTS = ("model.fp16.safetensors", "model.safetensors", "model.fp16.ckpt", "model.ckpt")
MULTIVIEW_PROCESSOR = "MVImageProcessorV2"


def dit_subfolder(model: str) -> str:
    return DIT_SUBFOLDERS.get(model.rstrip("/").rsplit("/", 1)[-1], DIT_SUBFOLDERS["Hunyuan3D-2"])


def shape_model_folder(settings: Settings) -> Path:
    """The folder of the configured Hunyuan shape model's DiT (ModelUnavailable when absent)."""
    model = settings.shape_model
    return resolve_model_dir(
        settings, model, subfolder=dit_subfolder(model), needs=["config.yaml", "|".join(CHECKPOINTS)]
    )


def is_multiview_config(config_yaml: Path) -> bool:
    """True when the config builds hy3dgen's multi-view image processor."""
    import yaml

    config = yaml.safe_load(config_yaml.read_text()) or {}
    target = str((config.get("image_processor") or {}).get("target", ""))
    return target.rsplit(".", 1)[-1] == MULTIVIEW_PROCESSOR


def views_taken(settings: Settings, backend: str) -> tuple[str, ...]:
    """The views `backend` (a shape backend's name, `auto` resolved as far as the settings go) takes."""
    if backend == "hunyuan" and is_multiview_config(shape_model_folder(settings) / "config.yaml"):
        return VIEW_NAMES
    return ("front",)


def check_views(views: Iterable[str], settings: Settings, backend: str) -> None:
    """InvalidInput naming the first view the shape model cannot take (field `images.<view>`)."""
    given = list(views)
    if given == ["front"] or not given:
        return  # one picture: every shape model takes it
    taken = views_taken(settings, backend)
    for view in given:
        if view not in taken:
            model = settings.shape_model if backend == "hunyuan" else f"the {backend} backend"
            raise InvalidInput(
                f"{model} takes one picture (front) only; several views need a multi-view model"
                " such as tencent/Hunyuan3D-2mv (ORFEAS_SHAPE_MODEL) with backend hunyuan",
                field=f"images.{view}",
            )
