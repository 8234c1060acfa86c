"""The `vertex` texture: the picture's colours projected onto the mesh's vertices along Z."""

from __future__ import annotations

import numpy as np
import pytest

from orfeas.errors import StageFailed
from orfeas.registry import Backends
from orfeas.request import JobRequest
from orfeas.settings import Settings
from orfeas.shape.extrude import ExtrudeBackend
from orfeas.shape.raster import PictureFrame
from orfeas.shape.relief import ReliefBackend, heightfield_solid
from orfeas.texture.vertex_colors import VertexColorTexture
from orfeas.types import Cutout, ShapeResult
from tests.shape_support import cutout_from, emblem_cutout, gradient_photo, make_ctx, ring_mask

RED, BLUE = (220, 20, 30), (10, 40, 230)


def _texture(shape: ShapeResult, cutout: Cutout):
    ctx, reports = make_ctx("texture")
    return VertexColorTexture(Settings()).apply(shape, cutout, ctx), reports


def _shape(backend: type, cutout: Cutout, quality: int = 5) -> ShapeResult:
    ctx, _ = make_ctx()
    return backend(Settings()).generate(cutout, JobRequest(image="x", quality=quality), ctx)


def _pixel_under(vertices: np.ndarray, box: tuple[float, float, float, float], shape: tuple[int, int]):
    x0, y0, x1, y1 = box
    rows, cols = shape
    col = np.clip(((vertices[:, 0] - x0) / (x1 - x0) * cols).astype(int), 0, cols - 1)
    row = np.clip(((y1 - vertices[:, 1]) / (y1 - y0) * rows).astype(int), 0, rows - 1)
    return row, col


def test_relief_vertices_take_the_pixel_colours_under_them() -> None:
    """On a full-frame relief every vertex's colour is the picture's pixel at its (x, y)."""
    photo = gradient_photo(90, 120)
    cutout = cutout_from(np.ones(photo.shape[:2], dtype=bool), photo, "border")
    shape = _shape(ReliefBackend, cutout, quality=3)  # 101 cells on 120 px: vertices off pixel borders
    coloured, reports = _texture(shape, cutout)
    colours = coloured.visual.vertex_colors
    assert colours.dtype == np.uint8
    assert colours.shape == (len(shape.mesh.vertices), 4)
    assert np.all(colours[:, 3] == 255)
    # Sample points away from pixel borders, where "the pixel under" is unambiguous.
    v = coloured.vertices
    frac_x = (v[:, 0] * 120) % 1
    frac_y = ((0.75 - v[:, 1]) * 120) % 1
    clear = (np.abs(frac_x - 0.5) < 0.4) & (np.abs(frac_y - 0.5) < 0.4)
    assert clear.sum() > 100
    row, col = _pixel_under(v[clear], shape.picture_box, photo.shape[:2])
    assert np.array_equal(colours[clear, :3], photo[row, col])
    assert reports == sorted(reports)


def test_front_and_back_share_the_colour_and_edges_take_the_foreground() -> None:
    """A red ring on blue: front, back and side vertices are all red, none blue."""
    mask = ring_mask()
    rgb = np.empty((*mask.shape, 3), dtype=np.uint8)
    rgb[:] = BLUE
    rgb[mask] = RED
    cutout = cutout_from(mask, rgb, "border")
    shape = _shape(ExtrudeBackend, cutout)
    coloured, _ = _texture(shape, cutout)
    colours = coloured.visual.vertex_colors[:, :3]
    assert np.all(colours == RED)
    # Without the snap to the foreground, the outline's vertices would have picked up blue.
    row, col = _pixel_under(coloured.vertices, shape.picture_box, mask.shape)
    assert not mask[row, col].all()


def test_emblem_colours_come_from_the_emblem() -> None:
    """Every vertex colour of the textured emblem is one of the emblem's foreground colours."""
    cutout = emblem_cutout()
    shape = _shape(ExtrudeBackend, cutout)
    coloured, _ = _texture(shape, cutout)
    rgba = np.asarray(cutout.image)
    foreground = {tuple(c) for c in rgba[cutout.mask][:, :3].tolist()}
    assert {tuple(c) for c in coloured.visual.vertex_colors[:, :3].tolist()} <= foreground


def test_the_shape_is_left_untouched() -> None:
    """The texture returns a coloured copy with the same geometry; the shape's mesh is unchanged."""
    cutout = emblem_cutout()
    shape = _shape(ExtrudeBackend, cutout)
    before = shape.mesh.vertices.copy()
    coloured, _ = _texture(shape, cutout)
    assert coloured is not shape.mesh
    assert np.array_equal(coloured.vertices, before)
    assert np.array_equal(coloured.faces, shape.mesh.faces)
    assert shape.mesh.visual.kind is None
    assert coloured.is_watertight


def test_large_mesh_is_coloured_whole() -> None:
    """A 1.3M-face heightfield is coloured in one pass, every vertex from the picture."""
    photo = gradient_photo(600, 600)
    frame = PictureFrame(600, 600)
    z = np.full((807, 807), 0.05)
    mesh = heightfield_solid(frame, (0, 600, 0, 600), z)
    assert len(mesh.faces) > 1_300_000
    shape = ShapeResult(mesh=mesh, picture_box=frame.box, stands=False)
    cutout = cutout_from(np.ones((600, 600), dtype=bool), photo, "border")
    coloured, _ = _texture(shape, cutout)
    colours = coloured.visual.vertex_colors
    assert colours.shape == (len(mesh.vertices), 4)
    row, col = _pixel_under(mesh.vertices[::997], frame.box, (600, 600))
    near = np.abs(colours[::997, :3].astype(int) - photo[row, col].astype(int))
    # Vertices on a pixel border may take the neighbour: a ramp changes < 16 levels per pixel.
    assert near.max() < 16


def _photo_ring():
    """A photo-like picture cut out as a ring: no palette, so colours are projected."""
    mask = ring_mask()
    return cutout_from(mask, gradient_photo(*mask.shape))


def test_empty_picture_box_fails_the_stage() -> None:
    """A shape without a usable picture box cannot be coloured: a stage failure, not a crash."""
    cutout = _photo_ring()
    shape = _shape(ExtrudeBackend, cutout)
    assert shape.face_colours is None
    shape.picture_box = (0.0, 0.0, 0.0, 1.0)
    with pytest.raises(StageFailed, match="picture box") as info:
        _texture(shape, cutout)
    assert info.value.stage == "texture"


def test_registry_builds_the_texture_by_name() -> None:
    """The pipeline's registry finds the vertex texture under its name."""
    backend = Backends(Settings()).vertex_texture()
    assert backend.name == "vertex"
    assert isinstance(backend, VertexColorTexture)


def test_mask_at_another_resolution_is_scaled_to_the_picture() -> None:
    """A mask at twice the picture's resolution is scaled to it: edges still snap to the foreground."""
    mask = ring_mask(200, 300)
    rgb = np.empty((*mask.shape, 3), dtype=np.uint8)
    rgb[:] = BLUE
    rgb[mask] = RED
    cutout = cutout_from(mask, rgb, "border")
    shape = _shape(ExtrudeBackend, cutout)
    double = Cutout(image=cutout.image, mask=mask.repeat(2, axis=0).repeat(2, axis=1), method="border")
    coloured, _ = _texture(shape, double)
    assert np.all(coloured.visual.vertex_colors[:, :3] == RED)


def test_a_background_pixel_snaps_to_a_nearest_foreground_pixel() -> None:
    """Off the mask, the pixel taken is inside it and as near as the exact distance transform says."""
    from scipy.ndimage import distance_transform_edt

    from orfeas.texture.vertex_colors import nearest_inside

    rng = np.random.default_rng(7)
    mask = np.zeros((120, 160), dtype=bool)
    for _ in range(6):  # a few blobs of various sizes, some touching the picture's border
        r, c, radius = rng.integers(0, 120), rng.integers(0, 160), rng.integers(3, 25)
        yy, xx = np.ogrid[:120, :160]
        mask |= (yy - r) ** 2 + (xx - c) ** 2 <= radius**2
    rows, cols = np.nonzero(~mask)
    pick = rng.choice(len(rows), size=500, replace=False)
    rows, cols = rows[pick], cols[pick]
    got_r, got_c = nearest_inside(mask, rows, cols)
    assert mask[got_r, got_c].all()
    exact = distance_transform_edt(~mask)[rows, cols]
    assert np.allclose(np.hypot(got_r - rows, got_c - cols), exact)


@pytest.mark.parametrize("quality", [1, 5])
def test_an_extruded_photo_carries_its_colours_inside_the_outline(quality: int) -> None:
    """A photo extruded as a logo has no palette: its front cap is refined so vertex colours
    follow the picture inside the outline, within the face budget and still closed."""
    cutout = _photo_ring()
    request = JobRequest(image="x", quality=quality)
    ctx, _ = make_ctx()
    shape = ExtrudeBackend(Settings()).generate(cutout, request, ctx)
    assert shape.face_colours is None
    assert len(shape.mesh.faces) <= request.face_budget
    coloured, _ = _texture(shape, cutout)
    assert coloured.is_watertight
    v = coloured.vertices
    front = v[:, 2] > v[:, 2].max() - 1e-9
    row, col = _pixel_under(v[front], shape.picture_box, cutout.mask.shape)
    inside = cutout.mask[row, col]
    picture = np.asarray(cutout.image)[..., :3][row, col]
    colours = coloured.visual.vertex_colors[front, :3]
    assert inside.sum() > 500  # vertices spread over the cap, not only along the outline
    assert np.all(colours[inside] == picture[inside], axis=1).mean() > 0.98


def test_an_extruded_logo_has_one_palette_colour_per_face() -> None:
    """The emblem's front faces each carry one of its palette colours, the colour of the picture
    under the face (away from edges), its yellow ring included, at a tenth of the faces that
    refining the caps for vertex colours spent."""
    from orfeas.shape.extrude import extrude_outline, refine_for_colour, trace_outline

    cutout = emblem_cutout()
    request = JobRequest(image="x")
    ctx, _ = make_ctx()
    shape = ExtrudeBackend(Settings()).generate(cutout, request, ctx)
    assert shape.face_colours is not None
    assert len(shape.face_colours) == len(shape.mesh.faces)
    frame = PictureFrame(cutout.mask.shape[1], cutout.mask.shape[0])
    outline = trace_outline(cutout.mask, frame, request.quality, ctx)
    refined = refine_for_colour(extrude_outline(outline, ctx)[0], request.face_budget)
    assert len(shape.mesh.faces) * 10 < len(refined.faces)
    coloured, _ = _texture(shape, cutout)
    corner = coloured.visual.vertex_colors[coloured.faces]
    assert np.all(corner == corner[:, :1])  # one colour per face
    normals = coloured.face_normals
    top = normals[:, 2] > 0.99
    centre = coloured.triangles_center[top]
    row, col = _pixel_under(centre, shape.picture_box, cutout.mask.shape)
    picture = np.asarray(cutout.image)[..., :3].astype(int)
    from scipy.ndimage import maximum_filter, minimum_filter

    flat = np.all(maximum_filter(picture, size=(5, 5, 1)) == minimum_filter(picture, size=(5, 5, 1)), axis=-1)
    clear = cutout.mask[row, col] & flat[row, col]
    assert clear.sum() > 100
    assert np.array_equal(corner[top][clear, 0, :3], picture[row[clear], col[clear]])
    yellow = (corner[top][:, 0, 0] > 200) & (corner[top][:, 0, 1] > 150) & (corner[top][:, 0, 2] < 100)
    assert yellow.any()


def test_without_texture_the_outline_is_not_refined() -> None:
    """With texture off there is nothing to carry: the caps keep the outline's triangulation."""
    cutout = _photo_ring()
    ctx, _ = make_ctx()
    plain = ExtrudeBackend(Settings()).generate(cutout, JobRequest(image="x", texture=False), ctx)
    textured = ExtrudeBackend(Settings()).generate(cutout, JobRequest(image="x"), ctx)
    assert len(plain.mesh.faces) * 10 < len(textured.mesh.faces)
    assert plain.mesh.volume == pytest.approx(textured.mesh.volume, rel=1e-6)
