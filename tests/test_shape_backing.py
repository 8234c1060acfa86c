"""Loose parts of a flat piece joined by a backing plate (orfeas/shape/backing.py), and the field that
turns it off."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import trimesh
from PIL import Image
from shapely.geometry import MultiPolygon, box

from orfeas.pipeline import Pipeline
from orfeas.request import JobRequest, parse_request
from orfeas.settings import Settings
from orfeas.shape.backing import backing_outline
from orfeas.shape.extrude import ExtrudeBackend
from orfeas.shape.relief import ReliefBackend
from tests.shape_support import assert_closed_solid, cutout_from, gradient_photo, make_ctx, two_blobs_mask
from tests.test_shape_random import _blobs


def banner_png(width: int = 4000, height: int = 500) -> bytes:
    """A 4000 x 500 banner: twelve separate block 'letters' (two with a counter) on transparency."""
    rgba = np.zeros((height, width, 4), np.uint8)
    for i in range(12):
        x0 = 120 + i * 320
        rgba[100:400, x0 : x0 + 200] = (20, 40, 160, 255)
        if i % 5 == 0:
            rgba[180:320, x0 + 60 : x0 + 140] = 0  # a counter, as in an "O"
    out = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(out, format="PNG")
    return out.getvalue()


def run(picture: bytes, **fields) -> tuple[trimesh.Trimesh, dict]:
    request = parse_request(
        {"image": base64.b64encode(picture).decode(), "formats": ["stl"], "backend": "extrude", **fields}
    )
    result = Pipeline(Settings()).run(request, job_id="banner")
    mesh = trimesh.load(trimesh.util.wrap_as_stream(result.artifacts["stl"].data), file_type="stl")
    return mesh, result.as_dict({})


def test_banner_is_one_body_on_a_plate() -> None:
    """A banner of twelve loose letters prints as one closed body: the letters on a thin plate."""
    mesh, result = run(banner_png(), dimensions={"width_mm": 50.0})
    assert mesh.is_watertight
    assert len(mesh.split(only_watertight=False)) == 1
    assert result["shape"]["parts"] == 12
    assert result["shape"]["backing_plate"] == pytest.approx(0.4 * result["shape"]["thickness"], rel=1e-4)
    assert mesh.extents[0] == pytest.approx(50.0, rel=1e-6)
    # The plate is under the letters, not over them: the piece is as thick as its letters, which
    # at the same 50 mm width are a little smaller than without the plate's margin.
    _, loose = run(banner_png(), dimensions={"width_mm": 50.0}, backing=False)
    ratio = loose["mesh"]["extents_mm"][0] / loose["mesh"]["extents_mm"][2]
    assert mesh.extents[0] / mesh.extents[2] > ratio


def test_backing_false_keeps_the_letters_loose() -> None:
    """With `backing` false the same banner stays twelve separate bodies."""
    mesh, result = run(banner_png(), backing=False)
    assert len(mesh.split(only_watertight=False)) == 12
    assert result["shape"]["backing_plate"] is None


def test_one_part_gets_no_plate() -> None:
    """A single part needs no plate: the outline is left as it is."""
    assert backing_outline(MultiPolygon([box(0, 0, 1, 1)])) is None


def test_far_apart_parts_are_joined_by_their_hull() -> None:
    """Parts too far apart for the grown outlines to meet get a plate over their convex hull."""
    parts = MultiPolygon([box(0, 0, 0.1, 0.1), box(0.9, 0.9, 1.0, 1.0)])
    plate = backing_outline(parts)
    assert plate is not None
    assert plate.covers(parts)
    assert plate.contains(box(0.45, 0.45, 0.55, 0.55))  # the hull's middle, between the parts
    assert len(plate.interiors) == 0


@pytest.mark.parametrize("seed", range(4))
def test_random_blobs_on_a_plate_are_one_closed_body(seed: int) -> None:
    """Random blobs of many parts, joined by their plate, are one closed, consistently wound solid."""
    mask = _blobs(seed, specks=False)
    ctx, _ = make_ctx()
    result = ExtrudeBackend(Settings()).generate(cutout_from(mask), JobRequest(image="x", quality=3), ctx)
    assert_closed_solid(result.mesh)
    assert result.meta["parts"] >= 2  # 8 to 38 blobs for these seeds
    assert result.meta["backing_plate"] is not None
    assert result.mesh.body_count == 1


@pytest.mark.parametrize(("backing", "bodies"), [(True, 1), (False, 2)])
def test_relief_of_two_parts_stands_on_one_plate(backing: bool, bodies: int) -> None:
    """A relief cut to two separate blobs is one body on a plate as thick as its base, unless turned off."""
    mask = two_blobs_mask()
    cutout = cutout_from(mask, gradient_photo(*mask.shape), method="border")
    ctx, _ = make_ctx()
    request = JobRequest(image="x", quality=3, backing=backing)
    result = ReliefBackend(Settings()).generate(cutout, request, ctx)
    assert_closed_solid(result.mesh)
    assert result.mesh.body_count == bodies
    assert (result.meta["backing_plate"] is not None) is backing
