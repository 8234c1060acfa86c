"""The interfaces every stage backend implements, weights-free (CPU) and GPU alike.

A backend is a class constructed once per process as `Backend(settings)` and reused by every
job, so model weights load once. Backends raise OrfeasError subclasses; anything else that
escapes is translated by the pipeline into `stage_failed` for that stage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import trimesh
    from PIL import Image

    from orfeas.request import JobRequest
    from orfeas.types import Cutout, ShapeResult, StageContext


class TextToImage(Protocol):
    name: str

    def generate(self, prompt: str, ctx: StageContext) -> Image.Image:
        """Return an RGB(A) picture for the prompt (ctx.seed makes it reproducible)."""
        ...


class BackgroundRemover(Protocol):
    name: str

    def remove(self, image: Image.Image, ctx: StageContext) -> Cutout:
        """Separate the foreground of an RGBA picture."""
        ...


class ShapeBackend(Protocol):
    name: str

    def generate(self, cutout: Cutout, request: JobRequest, ctx: StageContext) -> ShapeResult:
        """Make a closed mesh in the picture frame (see ShapeResult)."""
        ...


class TextureBackend(Protocol):
    name: str

    def apply(self, shape: ShapeResult, cutout: Cutout, ctx: StageContext) -> trimesh.Trimesh:
        """Return the shape's mesh coloured from the picture (vertex colours or a texture)."""
        ...
