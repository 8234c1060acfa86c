"""Colour regions of an extruded flat-colour picture: an exact tiling, one colour per face, raised."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import shapely

from orfeas.mesh.export import colour_parts, export_mesh
from orfeas.mesh.finish import finish_mesh
from orfeas.request import JobRequest
from orfeas.samples import logos
from orfeas.settings import Settings
from orfeas.shape.extrude import ExtrudeBackend, WorkingGrid, label_lookup, trace_outline
from orfeas.shape.raster import PictureFrame
from orfeas.shape.regions import partition
from orfeas.texture.palette import find_palette
from orfeas.texture.vertex_colors import VertexColorTexture
from tests.shape_support import assert_closed_solid, cutout_from, make_ctx


def _cutout(sample: logos.Sample):
    rgba = np.asarray(sample.image.convert("RGBA"))
    return cutout_from(sample.labels >= 0, rgba[..., :3], "alpha")


def _coloured(sample: logos.Sample, **fields):
    cutout = _cutout(sample)
    shape = ExtrudeBackend(Settings()).generate(cutout, JobRequest(image="x", **fields), make_ctx()[0])
    mesh = shape.mesh
    if shape.face_colours is not None:
        mesh = VertexColorTexture(Settings()).apply(shape, cutout, make_ctx("texture")[0])
    return shape, mesh


@pytest.mark.parametrize("name", ["logo", "icon", "letter_tile"])
def test_regions_tile_the_outline(name: str) -> None:
    """The colour regions are pairwise disjoint and their union is the outline (no gap, no overlap)."""
    sample = logos.ALL[name]()
    cutout = _cutout(sample)
    frame = PictureFrame(cutout.mask.shape[1], cutout.mask.shape[0])
    ctx, _ = make_ctx()
    outline = trace_outline(cutout.mask, frame, 5, ctx)
    palette = find_palette(cutout, 4)
    assert palette is not None
    grid = WorkingGrid.of(cutout.mask, 5)
    assert grid is not None
    from orfeas.shape.polygons import polygons_from_rings

    tol = 0.35 * grid.cell(frame)
    traced = [
        polygons_from_rings(
            grid.rings(grid.field(palette.labels == i), frame), min_area=grid.speck_area(frame), tolerance=tol
        )
        for i in range(len(palette))
    ]
    regions = partition(
        outline, traced, label_lookup(palette.labels, frame), min_area=grid.speck_area(frame), tolerance=tol
    )
    assert sum(not r.is_empty for r in regions) == len(sample.colours)
    for i in range(len(regions)):
        for j in range(i + 1, len(regions)):
            assert shapely.intersection(regions[i], regions[j]).area < 1e-9 * outline.area
    union = shapely.union_all(regions)
    assert shapely.symmetric_difference(union, outline).area < 1e-6 * outline.area


@pytest.mark.parametrize("name", ["logo", "smiley", "icon"])
def test_each_face_has_one_colour_of_the_palette(name: str) -> None:
    """Every face's three corners share one colour, a palette colour; each colour is a closed solid."""
    sample = logos.ALL[name]()
    _, mesh = _coloured(sample)
    corner = np.asarray(mesh.visual.vertex_colors)[mesh.faces][:, :, :3]
    assert np.all(corner == corner[:, :1])
    colours = {tuple(c) for c in corner[:, 0].tolist()}
    assert len(colours) == len(sample.colours)
    parts = colour_parts(mesh)
    assert parts is not None
    assert len(parts) == len(sample.colours)


def test_colour_regions_are_raised_and_the_stl_is_watertight() -> None:
    """The smiley's eyes and mouth stand above the disc; the finished STL is one closed solid
    with two top heights, and admesh finds nothing to fix."""
    import io

    import trimesh

    from orfeas.samples.judge import top_heights

    _, mesh = _coloured(logos.smiley())
    ctx, _ = make_ctx("export")
    finished = finish_mesh(
        mesh, stands=False, face_budget=20_000, dimensions=None, default_size_mm=100.0, ctx=ctx
    )
    assert ctx.warnings == []
    stl = trimesh.load(io.BytesIO(export_mesh(finished, "stl").data), file_type="stl")
    assert_closed_solid(stl)
    assert len(trimesh.graph.connected_components(stl.face_adjacency)) == 1
    heights = top_heights(stl)
    assert len(heights) == 2
    assert heights[1] - heights[0] == pytest.approx(0.8, abs=0.02)  # one step on a 100 mm part
    if shutil.which("admesh"):
        with __import__("tempfile").NamedTemporaryFile(suffix=".stl") as f:
            f.write(export_mesh(finished, "stl").data)
            f.flush()
            report = subprocess.run(
                ["admesh", "--exact", f.name], capture_output=True, text=True, timeout=60
            ).stdout
        for line in ("Degenerate facets", "Edges fixed", "Facets removed", "Facets added", "Facets reversed"):
            assert f"{line}" in report
            assert report.split(line)[1].split(":")[1].split()[0] == "0"


def test_the_flat_slab_field_keeps_one_height() -> None:
    """color_relief=False keeps every colour at the base thickness: one top height, same colours."""
    from orfeas.samples.judge import top_heights

    shape, mesh = _coloured(logos.smiley(), color_relief=False)
    assert len(top_heights(mesh)) == 1
    assert colour_parts(mesh) is not None
    raised, _ = _coloured(logos.smiley())
    assert raised.mesh.volume > shape.mesh.volume


def test_without_texture_the_regions_are_one_raised_solid() -> None:
    """With texture off the colour solids are joined: one closed, uncoloured solid, still raised."""
    from orfeas.samples.judge import top_heights

    shape, mesh = _coloured(logos.smiley(), texture=False)
    assert shape.face_colours is None
    assert mesh.visual.kind is None
    assert_closed_solid(mesh)
    assert len(top_heights(mesh)) == 2


def test_an_anti_aliased_boundary_is_traced_between_pixels() -> None:
    """A red | blue boundary at x = 100.3 px (pixel 100 is 30 % red) comes out within 0.15 px of
    100.3, where a boundary on the pixel grid would sit at 100 or 101."""
    rgb = np.zeros((100, 200, 3), dtype=np.uint8)
    rgb[:, :100] = logos.RED
    rgb[:, 101:] = logos.BLUE
    rgb[:, 100] = np.round(0.3 * np.array(logos.RED) + 0.7 * np.array(logos.BLUE))
    mask = np.zeros((100, 200), dtype=bool)
    mask[20:80, 20:180] = True
    cutout = cutout_from(mask, rgb, "alpha")
    shape = ExtrudeBackend(Settings()).generate(cutout, JobRequest(image="x", quality=10), make_ctx()[0])
    assert shape.face_colours is not None
    red = np.all(shape.face_colours[:, :3] == logos.RED, axis=1)
    edge_x = np.asarray(shape.mesh.vertices)[np.unique(shape.mesh.faces[red])][:, 0].max()
    assert edge_x * 200 == pytest.approx(100.3, abs=0.15)
