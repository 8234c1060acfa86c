"""Every backend's name, once: the request schema, the settings, the CLI and the registry read
them from here (no imports, so `orfeas.settings` can use it without loading a backend)."""

from __future__ import annotations

from typing import Literal, get_args

WeightsFreeShape = Literal["extrude", "relief", "inflate"]
ShapeName = Literal["extrude", "relief", "inflate", "hunyuan"]

WEIGHTS_FREE_SHAPES: frozenset[str] = frozenset(get_args(WeightsFreeShape))
SHAPES: tuple[str, ...] = get_args(ShapeName)
BACKGROUNDS: tuple[str, ...] = ("classic", "segmentation")
TEXTURES: tuple[str, ...] = ("vertex", "hunyuan_paint")
TEXT_TO_IMAGE: tuple[str, ...] = ("diffusers",)
# ORFEAS_AUTO_SHAPE_BACKEND: what `backend: "auto"` picks among.
AUTO_SHAPES: tuple[str, ...] = ("weights_free", "hunyuan")
