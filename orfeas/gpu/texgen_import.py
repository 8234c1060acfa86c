"""hy3dgen.texgen's diffusion modules imported without its renderer.

`import hy3dgen.texgen` runs its `__init__`, which imports the pipeline, which imports
`custom_rasterizer` and the `mesh_processor` extension: compiled CUDA code that is not on PyPI
and that the worker does not use (orfeas/texture/raster.py renders and bakes instead). The
multiview UNet (`hunyuanpaint/unet/modules.py`) and the paint diffusion pipeline
(`hunyuanpaint/pipeline.py`) need only diffusers and einops, so the `hy3dgen.texgen` package
is entered here with its path but without running its `__init__`.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

TEXGEN = "hy3dgen.texgen"
# Modules that must never be imported by the worker's texture path (a test checks sys.modules).
RENDERER_MODULES = ("custom_rasterizer", "mesh_processor", "hy3dgen.texgen.differentiable_renderer")


def texgen_dir() -> Path:
    spec = importlib.util.find_spec("hy3dgen")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("hy3dgen is not installed", name="hy3dgen")
    return Path(next(iter(spec.submodule_search_locations))) / "texgen"


def import_texgen_module(name: str) -> Any:
    """`hy3dgen.texgen.<name>` (e.g. "hunyuanpaint.unet.modules"), with texgen's own __init__ left unrun."""
    if TEXGEN not in sys.modules:
        importlib.import_module("hy3dgen")
        package = types.ModuleType(TEXGEN)
        package.__path__ = [str(texgen_dir())]
        package.__package__ = TEXGEN
        sys.modules[TEXGEN] = package
    return importlib.import_module(f"{TEXGEN}.{name}")
