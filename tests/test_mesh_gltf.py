"""GLB by glTF's rules: linear COLOR_0, crease-split normals, a material; checked by the Khronos
validator and by reading the colours back the way a viewer shows them."""

from __future__ import annotations

import base64
import io
from functools import cache

import numpy as np
import pytest
import trimesh

from orfeas.backend_names import WEIGHTS_FREE_SHAPES
from orfeas.mesh.export import BUILD_TO_GLTF, export_mesh
from orfeas.mesh.gltf import (
    _SRGB_TO_LINEAR_U16,
    linear_to_srgb,
    read_accessor,
    read_glb,
    srgb_to_linear,
    write_glb,
)
from orfeas.mesh.read_3mf import read_3mf
from orfeas.pipeline import Pipeline
from orfeas.request import parse_request
from orfeas.settings import Settings
from tests.gltf_support import assert_valid_glb
from tests.inputs_support import EMBLEM

# The sample emblem's colours (its PNG holds exactly these, plus transparency).
RED = (220, 60, 40)
YELLOW = (250, 200, 40)


def _primitive(data: bytes) -> dict[str, np.ndarray]:
    """The first primitive's attributes and indices, decoded as a viewer decodes them."""
    document, blob = read_glb(data)
    primitive = document["meshes"][0]["primitives"][0]
    out = {name: read_accessor(document, blob, index) for name, index in primitive["attributes"].items()}
    out["indices"] = read_accessor(document, blob, primitive["indices"]).reshape(-1, 3)
    return out


def _displayed_srgb(data: bytes) -> np.ndarray:
    """Each vertex's colour as a viewer puts it on screen: COLOR_0 × white base colour, linear,
    encoded to sRGB for display (glTF 2.0 §3.9.2)."""
    return linear_to_srgb(_primitive(data)["COLOR_0"][:, :3])


def _picture_cube(colours: np.ndarray) -> trimesh.Trimesh:
    """A 10 mm cube whose eight corners carry the given eight RGBA colours."""
    box = trimesh.creation.box(extents=(10.0, 10.0, 10.0))
    return trimesh.Trimesh(box.vertices, box.faces, vertex_colors=colours, process=False)


def test_srgb_transfer_function_matches_known_values():
    """sRGB 0, 128 and 255 are 0, 0.2158605 and 1 in linear light, and the inverse gives them back."""
    np.testing.assert_allclose(srgb_to_linear(np.array([0, 128, 255])), [0.0, 0.2158605, 1.0], atol=1e-7)
    np.testing.assert_allclose(linear_to_srgb(srgb_to_linear(np.arange(256))), np.arange(256), atol=1e-9)
    # The washed-out colour a viewer shows for sRGB values stored as if they were linear.
    np.testing.assert_allclose(linear_to_srgb(np.array([220, 30, 30]) / 255.0), [239, 96, 96], atol=0.5)


def test_every_8_bit_level_survives_16_bit_linear_storage():
    """All 256 sRGB levels come back exactly from 16-bit linear; 8-bit linear would merge the darks."""
    back = np.round(linear_to_srgb(_SRGB_TO_LINEAR_U16 / 65535.0))
    np.testing.assert_array_equal(back, np.arange(256))
    eight_bit = np.round(srgb_to_linear(np.arange(256)) * 255.0)
    assert len(np.unique(eight_bit)) < 200  # why COLOR_0 is not UNSIGNED_BYTE


def test_glb_colour_shows_as_the_mesh_colour():
    """Every vertex colour, 8-bit sRGB in the mesh, is displayed as exactly that sRGB colour."""
    rng = np.random.default_rng(5)
    colours = rng.integers(0, 256, (8, 4), dtype=np.uint8)
    colours[:, 3] = 255
    data = export_mesh(_picture_cube(colours), "glb").data
    primitive = _primitive(data)
    shown = np.round(linear_to_srgb(primitive["COLOR_0"][:, :3]))
    # Each output vertex is a copy of one input corner: find it by position.
    source = np.asarray(_picture_cube(colours).vertices) @ BUILD_TO_GLTF.T
    nearest = np.argmin(np.linalg.norm(primitive["POSITION"][:, None, :] - source[None], axis=2), axis=1)
    np.testing.assert_array_equal(shown, colours[nearest, :3])
    np.testing.assert_allclose(primitive["COLOR_0"][:, 3], 1.0)


def test_glb_has_a_matte_white_material_and_normals():
    """The primitive uses a one-sided PBR material with white base colour, metallic 0, rough 0.8."""
    document, _ = read_glb(export_mesh(_picture_cube(np.full((8, 4), 200, np.uint8)), "glb").data)
    primitive = document["meshes"][0]["primitives"][0]
    assert set(primitive["attributes"]) == {"POSITION", "NORMAL", "COLOR_0"}
    material = document["materials"][primitive["material"]]
    assert material["pbrMetallicRoughness"] == {
        "baseColorFactor": [1.0, 1.0, 1.0, 1.0],
        "metallicFactor": 0.0,
        "roughnessFactor": 0.8,
    }
    assert material["doubleSided"] is False
    colour = document["accessors"][primitive["attributes"]["COLOR_0"]]
    assert (colour["componentType"], colour["type"], colour["normalized"]) == (5123, "VEC4", True)


def test_a_box_keeps_flat_faces():
    """A cube's corners are split per side: 24 vertices, each normal its side's axis, none blended."""
    primitive = _primitive(write_glb(trimesh.creation.box().vertices, trimesh.creation.box().faces))
    assert len(primitive["POSITION"]) == 24
    normals = primitive["NORMAL"]
    np.testing.assert_allclose(np.abs(normals).max(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.sort(np.abs(normals), axis=1)[:, :2], 0.0, atol=1e-6)
    tri = primitive["POSITION"][primitive["indices"]]
    face_normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    face_normal /= np.linalg.norm(face_normal, axis=1, keepdims=True)
    for corner in range(3):  # each corner's normal is its own face's: outward, not averaged
        np.testing.assert_allclose(normals[primitive["indices"][:, corner]], face_normal, atol=1e-6)


def test_an_extruded_disc_has_a_flat_cap_and_round_walls():
    """A 64-sided extruded disc: cap corners point straight up, wall corners radially out, and each
    rim vertex is written twice (cap and wall), so neither blends into the other."""
    from shapely.geometry import Point

    disc = trimesh.creation.extrude_polygon(Point(0, 0).buffer(20.0, quad_segs=16), height=4.0)
    vertices = np.asarray(disc.vertices) @ BUILD_TO_GLTF.T
    primitive = _primitive(write_glb(vertices, disc.faces))
    positions, normals = primitive["POSITION"], primitive["NORMAL"]
    top = positions[:, 1] > 0.004 - 1e-7
    on_cap = np.abs(normals[:, 1]) > 0.5
    on_wall = np.abs(normals[:, 1]) < 1e-6
    assert (top & on_cap).sum() == 64
    assert (top & on_wall).sum() == 64
    want = np.where(top[on_cap], 1.0, -1.0)  # top cap up, bottom cap down
    np.testing.assert_allclose(normals[on_cap], np.stack([0 * want, want, 0 * want], axis=1), atol=1e-6)
    radial = positions[on_wall][:, [0, 2]] / np.linalg.norm(
        positions[on_wall][:, [0, 2]], axis=1, keepdims=True
    )
    np.testing.assert_allclose(normals[on_wall][:, [0, 2]], radial, atol=1e-6)
    assert on_cap.sum() + on_wall.sum() == len(positions)


def test_a_smooth_surface_shares_its_vertices():
    """A sphere has no crease: one vertex per input vertex, normals pointing out from the centre."""
    sphere = trimesh.creation.icosphere(subdivisions=3)
    primitive = _primitive(write_glb(sphere.vertices, sphere.faces))
    assert len(primitive["POSITION"]) == len(sphere.vertices)
    outward = primitive["POSITION"] / np.linalg.norm(primitive["POSITION"], axis=1, keepdims=True)
    assert np.einsum("ij,ij->i", primitive["NORMAL"], outward).min() > 0.99


def test_face_colours_stay_sharp_along_their_edges():
    """With one colour per face, a vertex between a red and a blue face is written once per colour."""
    plane = trimesh.Trimesh(
        [[0, 0, 0], [1, 0, 0], [1, 0, -1], [0, 0, -1]], [[0, 1, 2], [0, 2, 3]], process=False
    )
    face_colours = np.array([[255, 0, 0, 255], [0, 0, 255, 255]], np.uint8)
    data = write_glb(plane.vertices, plane.faces, face_colours=face_colours)
    primitive = _primitive(data)
    assert len(primitive["POSITION"]) == 6  # the diagonal's two vertices, twice each
    shown = np.round(linear_to_srgb(primitive["COLOR_0"][:, :3]))
    for face, want in zip(primitive["indices"], face_colours[:, :3], strict=True):
        np.testing.assert_array_equal(shown[face], [want] * 3)


def test_glb_is_deterministic():
    """The same mesh gives the same bytes; one changed colour changes them."""
    colours = np.random.default_rng(1).integers(0, 256, (8, 4), dtype=np.uint8)
    first = export_mesh(_picture_cube(colours), "glb").data
    assert export_mesh(_picture_cube(colours.copy()), "glb").data == first
    colours[0, 0] ^= 1
    assert export_mesh(_picture_cube(colours), "glb").data != first


def test_large_and_degenerate_meshes_are_valid():
    """A mesh past 65535 vertices (32-bit indices) with a zero-area face still validates cleanly."""
    sphere = trimesh.creation.icosphere(subdivisions=7)  # 163842 vertices
    faces = np.vstack([sphere.faces, [[0, 0, 1]]])  # one degenerate face
    rng = np.random.default_rng(2)
    colours = rng.integers(0, 256, (len(sphere.vertices), 4), dtype=np.uint8)
    data = write_glb(sphere.vertices * 0.05, faces, colours)
    document, _ = read_glb(data)
    assert document["accessors"][document["meshes"][0]["primitives"][0]["indices"]]["componentType"] == 5125
    report = assert_valid_glb(data)
    assert report["info"]["totalTriangleCount"] == len(faces)


# -- the pipeline's own files ---------------------------------------------------------------
@cache
def _generate(backend: str, texture: bool, formats: tuple[str, ...] = ("glb",), quality: int = 3) -> dict:
    """The sample emblem through the pipeline (weights-free backends), the artifacts by format."""
    request = parse_request(
        {
            "image": base64.b64encode(EMBLEM.read_bytes()).decode(),
            "backend": backend,
            "texture": texture,
            "formats": list(formats),
            "quality": quality,
        }
    )
    return Pipeline(Settings()).run(request, job_id=f"gltf-{backend}").artifacts


@pytest.mark.parametrize("texture", [True, False], ids=["coloured", "plain"])
@pytest.mark.parametrize("backend", sorted(WEIGHTS_FREE_SHAPES))
def test_every_pipeline_glb_passes_the_khronos_validator(backend, texture):
    """Each weights-free backend's GLB, coloured or not, has no validator error, warning or unwanted hint."""
    data = _generate(backend, texture)["glb"].data
    report = assert_valid_glb(data)
    assert report["info"]["materialCount"] == 1
    attributes = {"POSITION", "NORMAL"} | ({"COLOR_0"} if texture else set())
    document, _ = read_glb(data)
    assert set(document["meshes"][0]["primitives"][0]["attributes"]) == attributes


def _build_frame_bands(positions_mm: np.ndarray, normals_up: np.ndarray) -> dict[str, np.ndarray]:
    """On the emblem's top caps (build frame, picture facing +Z; each colour at its own height): a
    mask of the vertices well inside the red rim and inside the yellow ring, by distance from the
    centre over the rim's radius."""
    top = (positions_mm[:, 2] > 0.5 * positions_mm[:, 2].max()) & normals_up
    centre = (positions_mm[top, :2].min(axis=0) + positions_mm[top, :2].max(axis=0)) / 2
    radius = np.linalg.norm(positions_mm[:, :2] - centre, axis=1)
    share = radius / radius[top].max()
    # The picture: the rim's red from 0.64 to 1.0 of the radius, the yellow ring from 0.34 to
    # 0.64, the hole inside. Each colour is its own solid, so its cap has vertices on its edges
    # alone: the bands take them, and stay clear of the circle where red meets yellow, where both
    # colours' vertices lie.
    return {"red": top & (share > 0.7), "yellow": top & (share > 0.3) & (share < 0.6)}


def test_the_emblem_glb_shows_the_pictures_colours():
    """Read back as a viewer does, the GLB's red rim and yellow ring show the picture's sRGB colours
    within 2 units (sRGB stored as if linear would show the red as about (239, 133, 110))."""
    data = _generate("extrude", True, quality=5)["glb"].data
    primitive = _primitive(data)
    build = (primitive["POSITION"] @ np.linalg.inv(BUILD_TO_GLTF).T).astype(np.float64)
    bands = _build_frame_bands(build, primitive["NORMAL"][:, 1] > 0.99)
    shown = _displayed_srgb(data)
    for name, want in (("red", RED), ("yellow", YELLOW)):
        assert bands[name].sum() > 20, name
        np.testing.assert_allclose(np.median(shown[bands[name]], axis=0), want, atol=2, err_msg=name)
        # Not an average that hides a wash: nine in ten vertices are within 3 units.
        off = np.abs(shown[bands[name]] - np.array(want)).max(axis=1)
        assert np.quantile(off, 0.9) <= 3, name


def test_ply_obj_and_3mf_keep_the_pictures_srgb_colours():
    """PLY, OBJ and 3MF store sRGB as before: the emblem's red rim and yellow ring read back as the
    picture's own 8-bit values."""
    artifacts = _generate("extrude", True, formats=("glb", "ply", "obj", "3mf"), quality=5)
    for fmt in ("ply", "obj"):
        mesh = trimesh.load(io.BytesIO(artifacts[fmt].data), file_type=fmt, process=False, force="mesh")
        vertices = np.asarray(mesh.vertices)
        colours = np.asarray(mesh.visual.vertex_colors)[:, :3].astype(float)
        up = np.zeros(len(vertices), bool)
        up[np.asarray(mesh.faces)[mesh.face_normals[:, 2] > 0.99].ravel()] = True
        bands = _build_frame_bands(vertices, up)
        for name, want in (("red", RED), ("yellow", YELLOW)):
            assert bands[name].sum() > 20, (fmt, name)
            np.testing.assert_allclose(np.median(colours[bands[name]], axis=0), want, atol=1, err_msg=fmt)
    model = read_3mf(artifacts["3mf"].data)
    assert model.unit == "millimeter"
    vertices = np.asarray(model.vertices)
    triangles = np.asarray(model.triangles)
    assert all(c is not None for c in model.corner_colours)
    corners = np.asarray(model.corner_colours, dtype=float)[:, :, :3]  # (faces, 3, rgb)
    tri = vertices[triangles]
    up = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    up = up[:, 2] / np.linalg.norm(up, axis=1) > 0.99
    centres = np.repeat(np.arange(len(triangles)), 3)
    corner_up = up[centres]
    bands = _build_frame_bands(vertices[triangles.ravel()], corner_up)
    flat = corners.reshape(-1, 3)
    for name, want in (("red", RED), ("yellow", YELLOW)):
        assert bands[name].sum() > 20, ("3mf", name)
        np.testing.assert_allclose(np.median(flat[bands[name]], axis=0), want, atol=1, err_msg="3mf")


def _at_offset(array: np.ndarray, offset: int) -> np.ndarray:
    """A copy of `array` whose data starts `offset` bytes into a fresh buffer (4: misaligned)."""
    raw = np.zeros(array.nbytes + offset, np.uint8)
    copy = np.ndarray(array.shape, dtype=array.dtype, buffer=raw, offset=offset)
    copy[...] = array
    return copy


def test_glb_bytes_do_not_depend_on_memory_layout():
    """The same mesh handed over at different memory alignments gives byte-identical GLBs
    (numpy picks vectorised code paths by alignment; a normal's last bit must not follow them)."""
    sphere = trimesh.creation.icosphere(subdivisions=5)
    rng = np.random.default_rng(7)
    vertices = np.asarray(sphere.vertices) * rng.uniform(0.01, 0.1, (1, 3)) + rng.normal(
        0, 1e-4, sphere.vertices.shape
    )
    faces = np.asarray(sphere.faces, dtype=np.int64)
    first = write_glb(vertices, faces)
    for offset in (4, 8, 12, 16, 24, 32, 40, 48, 56):
        assert write_glb(_at_offset(vertices, offset), _at_offset(faces, offset)) == first, offset


def test_export_keeps_face_colours_sharp():
    """A mesh coloured per face exports with every face showing exactly its own colour."""
    box = trimesh.creation.box(extents=(10.0, 10.0, 10.0))
    face_colours = np.random.default_rng(4).integers(0, 256, (len(box.faces), 4), dtype=np.uint8)
    face_colours[:, 3] = 255
    box.visual.face_colors = face_colours
    primitive = _primitive(export_mesh(box, "glb").data)
    shown = np.round(linear_to_srgb(primitive["COLOR_0"][:, :3]))
    # Faces come out in the order they went in.
    for face, want in zip(primitive["indices"], face_colours[:, :3], strict=True):
        np.testing.assert_array_equal(shown[face], [want] * 3)
