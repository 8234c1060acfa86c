"""Degenerate sizes are invalid_input naming the field, before the work they would waste: strips
of pictures (from their header), subjects that crop to a sliver, and meshes under 1 mm or over 10 m."""

from __future__ import annotations

import base64
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
import trimesh
from PIL import Image

from orfeas.errors import InvalidInput
from orfeas.inputs.decode import decode_image
from orfeas.pipeline import Pipeline
from orfeas.registry import Backends
from orfeas.request import parse_request
from orfeas.settings import Settings
from orfeas.sizes import check_extents, check_frame
from orfeas.types import Cutout, ShapeResult
from tests.inputs_support import encode, png_chunk


def strip_png(width: int, height: int) -> bytes:
    """A complete, valid 1-bit grey PNG of width x height (every pixel black), compressed."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    idat = zlib.compress(row * height, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def test_a_40_million_by_1_picture_is_refused_from_its_header() -> None:
    """A 40,000,000 x 1 PNG (within the 40 MP cap, 160 MB as RGBA) is refused before any pixel is
    decoded: no allocation near its frame's size happens."""
    data = strip_png(40_000_000, 1)
    assert len(data) < 16 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput, match="40000000x1 pixels: its short side is under 8 px") as caught:
            decode_image(data, max_pixels=40_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.field == "image"
    assert peak < 1024 * 1024


@pytest.mark.parametrize(
    ("size", "message"),
    [((100, 7), "short side is under 8 px"), ((7, 100), "short side is under 8 px"), ((408, 8), "1:50")],
)
def test_slivers_are_refused_and_the_limits_themselves_pass(size: tuple[int, int], message: str) -> None:
    """A short side under 8 px or an aspect past 1:50 is refused; 8 px and exactly 1:50 decode."""
    with pytest.raises(InvalidInput, match=message):
        decode_image(encode(Image.new("RGB", size)), max_pixels=40_000_000)
    assert decode_image(encode(Image.new("RGB", (400, 8))), max_pixels=40_000_000).size == (400, 8)


class _Spy:
    """Background: the picture's alpha as the mask; shape: records that it was asked, gives a box."""

    name = "spy"

    def __init__(self, extents: tuple[float, float, float] = (32, 32, 4)) -> None:
        self.extents = extents
        self.shapes = 0

    def remove(self, image, ctx):
        rgba = np.asarray(image)
        return Cutout(image=image, mask=rgba[..., 3] > 0, method="test")

    def generate(self, cutout, request, ctx):
        self.shapes += 1
        mesh = trimesh.creation.box(extents=self.extents)
        return ShapeResult(mesh=mesh, picture_box=(-16.0, -16.0, 16.0, 16.0), stands=False)


class _Backends(Backends):
    def __init__(self, settings: Settings, spy: _Spy) -> None:
        super().__init__(settings)
        self.spy = spy

    def background(self):
        return self.spy

    def shape(self, name):
        return self.spy


def _picture(subject: tuple[int, int], frame: tuple[int, int] = (200, 200)) -> str:
    rgba = np.zeros((frame[1], frame[0], 4), np.uint8)
    rgba[10 : 10 + subject[1], 10 : 10 + subject[0]] = (200, 30, 30, 255)
    return base64.b64encode(encode(Image.fromarray(rgba, "RGBA"))).decode()


def _run(request: dict, spy: _Spy) -> InvalidInput:
    settings = Settings(texture_backend="vertex")
    with pytest.raises(InvalidInput) as caught:
        Pipeline(settings, _Backends(settings, spy)).run(parse_request(request), job_id="sizes")
    return caught.value


def test_a_subject_that_crops_to_a_sliver_is_refused_before_the_shape() -> None:
    """A 200x200 picture whose subject is 150x3 px is invalid_input (image) and no shape is made."""
    spy = _Spy()
    error = _run({"image": _picture((150, 3)), "backend": "extrude", "texture": False}, spy)
    assert error.field == "image"
    assert "subject (after cropping) is 150x3 pixels" in error.message
    assert spy.shapes == 0


def test_a_width_that_would_make_the_other_axis_under_1_mm_is_refused_before_the_shape() -> None:
    """5 mm wide, a 180x18 px subject would be 0.5 mm tall: invalid_input naming dimensions.width_mm."""
    spy = _Spy()
    request = {"image": _picture((180, 18)), "backend": "extrude", "dimensions": {"width_mm": 5}}
    error = _run(request, spy)
    assert error.field == "dimensions.width_mm"
    assert "0.5 mm tall" in error.message
    assert spy.shapes == 0


def test_a_final_mesh_thinner_than_1_mm_is_refused_naming_the_dimension() -> None:
    """A square subject scaled to 10 mm wide with a shape 1/40 as thick gives a 0.25 mm axis:
    refused before any format is written, naming the asked dimension."""
    spy = _Spy(extents=(40, 40, 1))
    request = {
        "image": _picture((100, 100)),
        "backend": "extrude",
        "dimensions": {"width_mm": 10},
        "texture": False,
    }
    error = _run(request, spy)
    assert error.field == "dimensions.width_mm"
    assert "0.25 mm along its height (Z)" in error.message
    assert spy.shapes == 1


def test_the_mesh_limits_are_1_mm_and_10_m() -> None:
    """check_extents passes [1, 10000] mm on every axis and refuses just outside, naming the field."""
    check_extents((1.0, 10_000.0, 50.0), None)
    with pytest.raises(InvalidInput) as caught:
        check_extents((0.999, 5.0, 5.0), None)
    assert caught.value.field == "image"
    dims = parse_request({"image": "x", "dimensions": {"height_mm": 2000}}).dimensions
    with pytest.raises(InvalidInput) as caught:
        check_extents((10_001.0, 5.0, 2000.0), dims)
    assert caught.value.field == "dimensions.height_mm"
    check_frame(8, 400)
    with pytest.raises(InvalidInput, match="1:50"):
        check_frame(8, 401)
