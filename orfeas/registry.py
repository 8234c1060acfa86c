"""Backends by name, imported lazily and built once per process.

Heavy modules (torch, diffusers, hy3dgen) are imported only when a backend that needs them is
first asked for, so `import orfeas` and the weights-free path never load them.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import threading
from typing import Any

from orfeas.errors import BackendUnavailable, InvalidInput
from orfeas.settings import Settings

SHAPE_BACKENDS = {
    "extrude": "orfeas.shape.extrude:ExtrudeBackend",
    "relief": "orfeas.shape.relief:ReliefBackend",
    "inflate": "orfeas.shape.inflate:InflateBackend",
    "hunyuan": "orfeas.gpu.hunyuan_shape:HunyuanShapeBackend",
}
BACKGROUND_BACKENDS = {
    "classic": "orfeas.background.classic:ClassicBackgroundRemover",
    "segmentation": "orfeas.gpu.segmentation:SegmentationBackgroundRemover",
}
TEXTURE_BACKENDS = {
    "vertex": "orfeas.texture.vertex_colors:VertexColorTexture",
    "hunyuan_paint": "orfeas.gpu.hunyuan_paint:HunyuanPaintTexture",
}
TEXT_TO_IMAGE_BACKENDS = {
    "diffusers": "orfeas.gpu.text_to_image:DiffusersTextToImage",
}
# Native extensions a backend's import chain loads that must be first imported on the main
# thread, keyed by the package that brings them in. pymeshlab (hy3dgen.shapegen's mesh
# post-processing) first imported in a stage's thread after torch leaves the heap corrupt, and
# the interpreter aborts at exit with "malloc_consolidate(): unaligned fastbin chunk" (exit 134;
# tests/test_main_thread_imports.py). Importing it alone costs about 0.35 s of CPU, once.
MAIN_THREAD_IMPORTS = {"hy3dgen": ("pymeshlab",)}


class Backends:
    """The process-wide set of backend instances; thread-safe, each built at most once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._instances: dict[str, Any] = {}
        self._lock = threading.Lock()
        import_native_extensions()

    def _get(self, table: dict[str, str], name: str, what: str) -> Any:
        target = table.get(name)
        if target is None:
            raise InvalidInput(f"unknown {what} backend {name!r}", field="backend")
        with self._lock:
            if target not in self._instances:
                self._instances[target] = _build(target, name, self.settings)
            return self._instances[target]

    def shape(self, name: str) -> Any:
        return self._get(SHAPE_BACKENDS, name, "shape")

    def background(self) -> Any:
        return self._get(BACKGROUND_BACKENDS, self.settings.background_backend, "background")

    def texture(self) -> Any:
        return self._get(TEXTURE_BACKENDS, self.settings.texture_backend, "texture")

    def vertex_texture(self) -> Any:
        """The weights-free texture, used when a model texture fails or is missing."""
        return self._get(TEXTURE_BACKENDS, "vertex", "texture")

    def text_to_image(self) -> Any:
        if not self.settings.text_to_image_model:
            raise BackendUnavailable(
                "no text-to-image model is configured (set ORFEAS_TEXT_TO_IMAGE_MODEL)",
                field="prompt",
            )
        return self._get(TEXT_TO_IMAGE_BACKENDS, "diffusers", "text-to-image")

    def preload(self, shape_names: list[str]) -> None:
        """Build backends now (eager loading at worker start) instead of on the first job."""
        self.background()
        self.texture()
        for name in shape_names:
            self.shape(name)
        if self.settings.text_to_image_model:
            self.text_to_image()

    def make_room_for_texture(self) -> Any:
        """Before the texture stage: the memory plan (orfeas/gpu/memory_plan.py) when Hunyuan3D-Paint
        follows a resident Hunyuan shape model on a CUDA device, the shape model moved to host
        memory when paint would not fit beside it; None when there is nothing to decide."""
        if self.settings.texture_backend != "hunyuan_paint":
            return None
        shape = self._instances.get(SHAPE_BACKENDS["hunyuan"])
        if shape is None or not shape.resident():
            return None
        from orfeas.gpu.memory_plan import device_free_bytes, plan_residency

        free = device_free_bytes()
        if free is None:
            return None
        plan = plan_residency(free, self.texture().memory_need(), mode=self.settings.model_residency)
        if not plan.keep_shape_resident:
            shape.offload()
        return plan

    def free_memory(self) -> None:
        """Give cached device memory back after an out-of-memory error (only if torch is loaded)."""
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()


def import_native_extensions() -> list[str]:
    """Import, on the main thread, the native extensions of the installed GPU backends.

    Backends are built lazily inside a stage's thread (and the worker runs each job in a thread),
    so it runs when the Backends object is made: Pipeline() in the CLI, and in handler.py at import.
    Off the main thread it does nothing, since importing there is what it guards against.
    Returns the modules now loaded; none of torch, diffusers or hy3dgen is imported."""
    if threading.current_thread() is not threading.main_thread():
        return []
    loaded = []
    for package, modules in MAIN_THREAD_IMPORTS.items():
        if importlib.util.find_spec(package) is None:
            continue
        for module in modules:
            # A missing extension is reported by the backend that needs it, when it is built.
            with contextlib.suppress(ImportError):
                importlib.import_module(module)
                loaded.append(module)
    return loaded


def _build(target: str, name: str, settings: Settings) -> Any:
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(
            f"backend {name!r} is not installed here ({exc.name or exc}); "
            "install requirements-gpu.txt for the GPU backends",
            field="backend",
        ) from exc
    return getattr(module, class_name)(settings)
