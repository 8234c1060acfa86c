"""The validated job request: one schema for the CLI, the library and the RunPod worker."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orfeas.backend_names import ShapeName
from orfeas.errors import InvalidInput

MeshFormat = Literal["glb", "stl", "obj", "ply", "3mf"]
ShapeBackendName = Literal["auto", ShapeName]
ALL_FORMATS: tuple[str, ...] = ("glb", "stl", "obj", "ply", "3mf")

# Quality 1..10 → default face budget when `target_faces` is not given (geometric, 20k..400k).
QUALITY_FACES = {q: int(20_000 * (400_000 / 20_000) ** ((q - 1) / 9)) for q in range(1, 11)}


class Dimensions(BaseModel):
    """Exactly one target size; the mesh is scaled uniformly so that axis has this length.

    Axes follow the slicer convention: width = X, depth = Y, height = Z (the build direction).
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    # Under 1 mm nothing prints (orfeas.sizes refuses any axis of the final mesh below it too).
    width_mm: float | None = Field(default=None, ge=1, le=2000)
    height_mm: float | None = Field(default=None, ge=1, le=2000)
    depth_mm: float | None = Field(default=None, ge=1, le=2000)

    @model_validator(mode="after")
    def _exactly_one(self) -> Dimensions:
        given = [n for n in ("width_mm", "height_mm", "depth_mm") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of width_mm, height_mm, depth_mm")
        return self

    @property
    def axis(self) -> int:
        """0 for X (width), 1 for Y (depth), 2 for Z (height)."""
        if self.width_mm is not None:
            return 0
        if self.depth_mm is not None:
            return 1
        return 2

    @property
    def size_mm(self) -> float:
        value = self.width_mm or self.depth_mm or self.height_mm
        assert value is not None
        return value


# hy3dgen's multi-view processor (MVImageProcessorV2) knows these views, in this order of its view
# embedding: front, front turned 90° clockwise (left), back, 270° (right).
VIEW_NAMES: tuple[str, ...] = ("front", "left", "back", "right")


class Views(BaseModel):
    """Pictures of one object from up to four sides, each in any form `image` takes; front is required."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    front: str = Field(min_length=1)
    left: str | None = Field(default=None, min_length=1)
    back: str | None = Field(default=None, min_length=1)
    right: str | None = Field(default=None, min_length=1)

    def given(self) -> dict[str, str]:
        """View name -> source, in VIEW_NAMES order, the views given only."""
        return {name: value for name in VIEW_NAMES if (value := getattr(self, name)) is not None}


class JobRequest(BaseModel):
    """What to make: a picture (or a prompt) and how the mesh should come out."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    image: str | None = Field(default=None, min_length=1)
    # Several views for a multi-view shape model (Hunyuan3D-2mv); instead of `image` or `prompt`.
    images: Views | None = None
    prompt: str | None = Field(default=None, min_length=1, max_length=2000)
    formats: tuple[MeshFormat, ...] = ("glb", "stl")
    quality: int = Field(default=5, ge=1, le=10)
    target_faces: int | None = Field(default=None, ge=500, le=2_000_000)
    dimensions: Dimensions | None = None
    backend: ShapeBackendName = "auto"
    texture: bool = True
    # Separate parts of a flat piece are joined by a thin plate under them (orfeas/shape/backing.py).
    backing: bool = True
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    # A flat-colour picture is cut into at most this many colour regions, one 3MF part (and one
    # filament) each; 4 is what common filament changers hold, 16 the most any does.
    max_colors: int = Field(default=4, ge=1, le=16)
    # Colour regions stand at different heights, so the design reads on a one-colour print;
    # False keeps a flat slab.
    color_relief: bool = True

    @model_validator(mode="before")
    @classmethod
    def _lists_as_tuples(cls, data: Any) -> Any:
        # JSON has no tuples; strict mode would refuse a list for a tuple field.
        if isinstance(data, dict) and isinstance(data.get("formats"), list):
            data = {**data, "formats": tuple(data["formats"])}
        return data

    @model_validator(mode="after")
    def _check(self) -> JobRequest:
        if self.images is not None and (self.image is not None or self.prompt is not None):
            raise ValueError("images: give images alone, without image or prompt")
        if self.images is None and (self.image is None) == (self.prompt is None):
            raise ValueError("give exactly one of image or prompt")
        if not self.formats:
            raise ValueError("formats: give at least one format")
        if len(set(self.formats)) != len(self.formats):
            object.__setattr__(self, "formats", tuple(dict.fromkeys(self.formats)))
        return self

    def views(self) -> dict[str, str]:
        """Picture source per view: `images` as given, or `image` as the front view; {} for a prompt."""
        if self.images is not None:
            return self.images.given()
        return {"front": self.image} if self.image is not None else {}

    @property
    def face_budget(self) -> int:
        return self.target_faces or QUALITY_FACES[self.quality]


def invalid_input_from(exc: ValidationError) -> InvalidInput:
    """Translate pydantic's error into ours: the first problem, with its field as a dotted path."""
    first = exc.errors()[0]
    loc = [str(p) for p in first["loc"] if not str(p).startswith("function-")]
    field = ".".join(loc) or "input"
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    elif first["type"] == "model_type":
        message = "must be a JSON object"
    elif first["type"] == "literal_error" and "expected" in first.get("ctx", {}):
        message = f"must be one of {first['ctx']['expected']}"
    for name in ("formats", "images"):
        if field == "input" and message.startswith(f"{name}:"):
            field, message = name, message.removeprefix(f"{name}: ")
    if field == "input" and "image or prompt" in message:
        field = "image"
    return InvalidInput(message, field=field)


def parse_request(data: Any, model: type[JobRequest] = JobRequest) -> JobRequest:
    """Validate a JSON-like mapping into a request, raising InvalidInput naming the field at fault."""
    if not isinstance(data, dict):
        raise InvalidInput(f"expected a JSON object, got {type(data).__name__}", field="input")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_input_from(exc) from None
