"""The `inflate` backend: a silhouette as a rounded closed solid, front and back, on a flat base."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import trimesh

from orfeas.pipeline import Pipeline
from orfeas.request import JobRequest, parse_request
from orfeas.samples import photos
from orfeas.settings import Settings
from orfeas.shape.inflate import InflateBackend
from orfeas.texture.vertex_colors import VertexColorTexture
from tests.shape_support import assert_closed_solid, cutout_from, grid, make_ctx

BACKEND = InflateBackend(Settings())


def disc_cutout(size: int = 200, radius: float = 80.0):
    y, x = grid(size, size)
    mask = np.hypot(x - size / 2, y - size / 2) < radius
    rgb = np.zeros((size, size, 3), np.uint8)
    rgb[mask] = (210, 40, 40)
    return cutout_from(mask, rgb, method="graphcut")


def test_disc_inflates_to_a_closed_ball_standing_on_a_flat_base() -> None:
    """A disc becomes a closed, round solid (depth = width) that stands on a flat cut base."""
    ctx, _ = make_ctx()
    result = BACKEND.generate(disc_cutout(), JobRequest(image="x", quality=4), ctx)
    mesh = result.mesh
    assert_closed_solid(mesh)
    assert result.stands is True
    width, height, depth = mesh.extents
    assert depth == pytest.approx(width, rel=0.05)
    assert height == pytest.approx(width * 0.97, rel=0.02)  # 3 % cut off for the base
    base_y = mesh.bounds[0][1]
    on_base = np.all(np.abs(mesh.vertices[mesh.faces][:, :, 1] - base_y) < 1e-9, axis=1)
    # The cut through a sphere 3 % of its diameter up: a disc of radius 2·sqrt(0.03·0.97)·R ≈ 0.34 R.
    assert mesh.area_faces[on_base].sum() == pytest.approx(np.pi * (0.34 * width / 2) ** 2, rel=0.15)


def test_both_sides_take_the_picture_colours() -> None:
    """The vertex texture projects the picture onto the front and the back of the inflated solid."""
    ctx, _ = make_ctx()
    cutout = disc_cutout()
    shape = BACKEND.generate(cutout, JobRequest(image="x"), ctx)
    coloured = VertexColorTexture(Settings()).apply(shape, cutout, ctx)
    z = coloured.vertices[:, 2]
    colours = coloured.visual.vertex_colors[:, :3].astype(int)
    for side in (z > 0.5 * z.max(), z < 0.5 * z.min()):
        assert side.sum() > 100
        assert (colours[side] == (210, 40, 40)).all()


def test_a_wide_top_on_a_narrow_foot_lies_on_its_back() -> None:
    """A shape whose centre of mass is off its foot does not stand: it lies on a flat-cut back."""
    mask = np.zeros((200, 300), dtype=bool)
    mask[20:70, 20:280] = True  # a wide bar ...
    mask[70:190, 240:270] = True  # ... on a post at its right end
    ctx, _ = make_ctx()
    result = BACKEND.generate(cutout_from(mask, method="graphcut"), JobRequest(image="x"), ctx)
    assert result.stands is False
    mesh = result.mesh
    assert_closed_solid(mesh)
    back = mesh.bounds[0][2]
    flat = np.all(np.abs(mesh.vertices[mesh.faces][:, :, 2] - back) < 1e-9, axis=1)
    assert mesh.area_faces[flat].sum() > 0.3 * mask.sum() / 300.0**2


def test_quality_sets_the_grid() -> None:
    """Higher quality meshes the same silhouette on a finer grid, with more faces."""
    ctx, _ = make_ctx()
    low = BACKEND.generate(disc_cutout(), JobRequest(image="x", quality=1), ctx)
    high = BACKEND.generate(disc_cutout(), JobRequest(image="x", quality=8), ctx)
    assert high.meta["grid"][0] > 2 * low.meta["grid"][0]
    assert len(high.mesh.faces) > 3 * len(low.mesh.faces)


def test_ball_photo_comes_out_round() -> None:
    """A photo of a ball on a gradient, through `auto`, is an inflated ball whose extents are within 6 %."""
    sample = photos.ball_on_gradient()
    picture = base64.b64encode(sample.data).decode()
    request = parse_request({"image": picture, "formats": ["stl"], "quality": 3})
    result = Pipeline(Settings()).run(request, job_id="ball")
    assert result.backend == "inflate"
    assert result.extra["background"]["method"] == "graphcut"
    width, depth, height = result.mesh.extents_mm
    assert height / width == pytest.approx(1.0, abs=0.06)
    assert depth / width == pytest.approx(1.0, abs=0.06)
    mesh = trimesh.load(trimesh.util.wrap_as_stream(result.artifacts["stl"].data), file_type="stl")
    assert mesh.is_watertight
    assert len(mesh.split(only_watertight=False)) == 1


def test_inflate_is_a_request_backend() -> None:
    """`inflate` is accepted as a backend by name."""
    assert parse_request({"image": "x", "backend": "inflate"}).backend == "inflate"
