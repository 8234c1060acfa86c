"""Export: every format reloads with trimesh with its vertices, size and colours; GLB and 3MF specifics."""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile

import numpy as np
import pytest
import trimesh

from orfeas.errors import InvalidInput, StageFailed
from orfeas.mesh.export import CONTENT_TYPES, export_mesh, geometry_only

FORMATS = ["glb", "stl", "obj", "ply", "3mf"]


def _part(seed: int = 0) -> trimesh.Trimesh:
    """A finished-looking part: 10 × 20 × 30 mm box on the plate with random vertex colours."""
    box = trimesh.creation.box(extents=(10.0, 20.0, 30.0)).subdivide()
    vertices = np.array(box.vertices) + np.array([0.0, 0.0, 15.0])
    colours = np.random.default_rng(seed).integers(0, 256, (len(vertices), 4), dtype=np.uint8)
    colours[:, 3] = 255
    return trimesh.Trimesh(vertices, np.array(box.faces), vertex_colors=colours, process=False)


def _load(data: bytes, fmt: str) -> trimesh.Trimesh:
    return trimesh.load(io.BytesIO(data), file_type=fmt, process=False, force="mesh")


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_round_trips(fmt):
    """Reloaded with trimesh, each file has the faces and the size (in its units) it was given."""
    part = _part()
    artifact = export_mesh(part, fmt)
    assert artifact.format == fmt
    assert artifact.content_type == CONTENT_TYPES[fmt]
    assert artifact.sha256 == hashlib.sha256(artifact.data).hexdigest()
    loaded = _load(artifact.data, fmt)
    # STL has no colour: it gets the geometry alone (see test_stl_merges_vertices_that_only_carry_colour).
    assert len(loaded.faces) == len(geometry_only(part).faces if fmt == "stl" else part.faces)
    if fmt == "glb":  # split where faces meet at a crease (a box's edges), never merged further
        assert len(loaded.vertices) >= len(part.vertices)
    elif fmt != "stl":  # STL stores three corners per face, unshared
        assert len(loaded.vertices) == len(part.vertices)
    extents = np.sort(loaded.extents * (1000.0 if fmt == "glb" else 1.0))
    np.testing.assert_allclose(extents, [10.0, 20.0, 30.0], rtol=1e-6)
    merged = loaded.copy()
    merged.merge_vertices()
    assert merged.is_watertight


@pytest.mark.parametrize("fmt", ["obj", "ply"])
def test_vertex_colours_are_kept_where_the_format_has_them(fmt):
    """OBJ (v x y z r g b) and PLY give back each vertex's sRGB colour as it was (GLB's linear
    COLOR_0 is read back in tests/test_mesh_gltf.py)."""
    part = _part()
    loaded = _load(export_mesh(part, fmt).data, fmt)
    assert loaded.visual.kind == "vertex"
    got = np.asarray(loaded.visual.vertex_colors)
    want = np.asarray(part.visual.vertex_colors)
    # OBJ writes colours as 0..1 floats with limited digits: allow one step of rounding.
    np.testing.assert_allclose(got.astype(int), want.astype(int), atol=1 if fmt == "obj" else 0)


def test_glb_is_in_metres_with_y_up():
    """The 30 mm tall (Z) part is 0.03 m along glTF's Y, and its 20 mm depth runs along Z."""
    loaded = _load(export_mesh(_part(), "glb").data, "glb")
    np.testing.assert_allclose(loaded.extents, [0.010, 0.030, 0.020], rtol=1e-6)
    # Resting on the plate at z = 0 → lowest point at y = 0; the part's front (-Y) faces +Z.
    assert loaded.bounds[0, 1] == pytest.approx(0.0, abs=1e-9)
    assert loaded.volume > 0


def test_stl_is_binary_with_one_record_per_face():
    """Binary STL: an 80-byte header, a face count, then 50 bytes per face."""
    part = _part()
    part.visual = trimesh.visual.ColorVisuals(part)  # no colours: every face is kept
    data = export_mesh(part, "stl").data
    (count,) = struct.unpack("<I", data[80:84])
    assert count == len(part.faces)
    assert len(data) == 84 + 50 * count


def test_ply_is_binary():
    """The PLY header declares binary little-endian storage and colour properties."""
    data = export_mesh(_part(), "ply").data
    header = data[: data.index(b"end_header")].decode("ascii")
    assert "format binary_little_endian 1.0" in header
    assert "property uchar red" in header


def test_3mf_is_deterministic():
    """The same mesh gives byte-identical 3MF files; a different one does not."""
    first = export_mesh(_part(), "3mf")
    second = export_mesh(_part(), "3mf")
    assert first.data == second.data
    assert first.sha256 == second.sha256
    assert export_mesh(_part(seed=1), "3mf").data != first.data


def test_3mf_declares_millimetres_and_carries_colours():
    """The model part says unit="millimeter" and colours each triangle corner from a colour group."""
    part = _part()
    with zipfile.ZipFile(io.BytesIO(export_mesh(part, "3mf").data)) as archive:
        names = archive.namelist()
        model = archive.read("3D/3dmodel.model").decode("utf-8")
        stamps = {info.date_time for info in archive.infolist()}
    assert names == ["[Content_Types].xml", "_rels/.rels", "3D/3dmodel.model"]
    assert stamps == {(1980, 1, 1, 0, 0, 0)}
    assert 'unit="millimeter"' in model
    palette = {tuple(c) for c in np.asarray(part.visual.vertex_colors).tolist()}
    assert model.count("<m:color ") == len(palette)
    assert model.count(' p1="') == len(part.faces)


def test_3mf_without_colours_has_no_colour_group():
    """An uncoloured mesh writes plain triangles."""
    box = trimesh.creation.box(extents=(1, 2, 3))
    with zipfile.ZipFile(io.BytesIO(export_mesh(box, "3mf").data)) as archive:
        model = archive.read("3D/3dmodel.model").decode("utf-8")
    assert "colorgroup" not in model
    assert model.count("<triangle ") == 12


def test_an_unknown_format_is_invalid_input():
    """A format we do not write is invalid_input on the formats field."""
    with pytest.raises(InvalidInput) as info:
        export_mesh(_part(), "fbx")
    assert info.value.field == "formats"
    assert "fbx" in info.value.message


def test_writer_errors_become_stage_failed():
    """Something that is not a mesh fails inside the writer and comes out as stage_failed."""
    with pytest.raises(StageFailed) as info:
        export_mesh(object(), "stl")  # type: ignore[arg-type]
    assert info.value.stage == "export"
    assert "stl export failed" in info.value.message


def test_obj_without_colours_writes_plain_vertices():
    """An uncoloured mesh writes `v x y z` lines and 1-based faces that reload to the same mesh."""
    box = trimesh.creation.box(extents=(1, 2, 3))
    text = export_mesh(box, "obj").data.decode("ascii")
    first_vertex = next(line for line in text.splitlines() if line.startswith("v "))
    assert len(first_vertex.split()) == 4
    loaded = _load(text.encode(), "obj")
    np.testing.assert_allclose(loaded.vertices, box.vertices)
    np.testing.assert_array_equal(loaded.faces, box.faces)


def test_stl_merges_vertices_that_only_carry_colour():
    """A closed coloured mesh refined for its colours comes out of STL with its flat faces merged:
    the same solid (volume, bounds) in far fewer faces; without colour nothing is merged."""
    part = _part().subdivide().subdivide()  # 1536 faces over six flat sides
    colours = np.random.default_rng(3).integers(0, 256, (len(part.vertices), 4), dtype=np.uint8)
    part = trimesh.Trimesh(part.vertices, part.faces, vertex_colors=colours, process=False)
    loaded = _load(export_mesh(part, "stl").data, "stl")
    loaded.merge_vertices()
    assert len(loaded.faces) <= 24  # a box needs 12; a few extra diagonals are fine
    assert loaded.is_watertight
    assert loaded.volume == pytest.approx(part.volume, rel=1e-6)
    np.testing.assert_allclose(loaded.bounds, part.bounds, atol=1e-6)
    plain = trimesh.Trimesh(part.vertices, part.faces, process=False)
    assert geometry_only(plain) is plain
