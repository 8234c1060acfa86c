"""The data that flows between stages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from orfeas.deadline import Deadline
from orfeas.settings import Settings

if TYPE_CHECKING:
    import trimesh
    from PIL import Image


class SettingsBackend:
    """A backend that needs only the settings (the weights-free ones): the registry builds each
    with them, once per process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings


@dataclass(frozen=True)
class StageContext:
    """What a stage may use besides its input: settings, progress within the stage, the deadline."""

    job_id: str
    stage: str
    settings: Settings
    report: Callable[[float], None]  # the stage's own progress, 0..1
    deadline: Deadline
    seed: int | None = None
    warnings: list[str] = field(default_factory=list)
    # The job's face budget, for a stage that decimates before export (paint unwraps at most this).
    face_budget: int | None = None

    def check(self) -> None:
        """Raise StageTimeout if the job's deadline (or this stage's limit) has passed."""
        self.deadline.check(self.stage)

    def warn(self, message: str) -> None:
        self.warnings.append(message)


@dataclass(frozen=True)
class Cutout:
    """The picture with its foreground separated.

    `image` is RGBA with the original colours and alpha = mask * 255; `mask` is a bool array
    (rows, cols) where True is foreground. `method` says how the mask was found
    ("alpha", "border", "graphcut", or a model's name). `confidence` (0..1) says how far the
    method trusts its mask: 1 for an alpha channel or a model's own mask, 0 when no foreground
    was found and the whole picture is kept. `upscale` is how many times the picture was
    enlarged (both `image` and `mask`) to give a small picture a smooth, sub-pixel outline; 1
    when it was not.
    """

    image: Image.Image
    mask: np.ndarray
    method: str
    confidence: float = 1.0
    upscale: int = 1


@dataclass
class ShapeResult:
    """A closed mesh in the *picture frame*, plus how it maps back onto the picture.

    Picture frame: +X is the picture's right, +Y the picture's up, +Z towards the viewer.
    `picture_box` = (x0, y0, x1, y1): the XY rectangle that the whole picture covers, so a
    texture can project pixel colours onto vertices along Z.
    `stands` says how it goes on a build plate: False for a flat piece lying on its back
    (picture frame Z is the build Z; extrude, relief), True for an object standing up
    (picture frame Y is the build Z; generated 3D shapes, inflate).
    """

    mesh: trimesh.Trimesh
    picture_box: tuple[float, float, float, float]
    stands: bool
    meta: dict[str, Any] = field(default_factory=dict)
    # (faces, 4) uint8 RGBA when the shape is made of colour regions (a flat-colour picture's
    # palette): the texture stage gives each face this colour instead of projecting the picture.
    face_colours: np.ndarray | None = None


@dataclass(frozen=True)
class Artifact:
    """One exported file, in memory."""

    format: str
    data: bytes
    content_type: str
    sha256: str

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class MeshStats:
    vertices: int
    faces: int
    watertight: bool
    extents_mm: tuple[float, float, float]

    def as_dict(self) -> dict[str, Any]:
        return {
            "vertices": self.vertices,
            "faces": self.faces,
            "watertight": self.watertight,
            "extents_mm": [round(v, 3) for v in self.extents_mm],
        }


@dataclass
class PipelineResult:
    """Everything a job produced; callers turn `artifacts` into files or S3 objects."""

    job_id: str
    backend: str
    artifacts: dict[str, Artifact]
    mesh: MeshStats
    timings: dict[str, float]
    warnings: list[str]
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self, meshes: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The result JSON, given how each artifact was delivered (path or key/url, per caller)."""
        data = {
            "job_id": self.job_id,
            "backend": self.backend,
            "meshes": meshes,
            "mesh": self.mesh.as_dict(),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "warnings": list(self.warnings),
        }
        data.update(self.extra)
        return data
