"""A UV-textured mesh in every format: GLB with TEXCOORD_0 and an embedded PNG, others sampled colours."""

from __future__ import annotations

import io
import re
import zipfile

import numpy as np
import pytest
import trimesh
from PIL import Image

from orfeas.mesh.export import export_mesh
from tests.gltf_support import assert_textured_glb

pytest.importorskip("xatlas")


def textured_sphere() -> trimesh.Trimesh:
    """A 40 mm sphere unwrapped by xatlas; its texture is red on the atlas's left half, blue on the right."""
    from orfeas.texture.unwrap import unwrap

    sphere = trimesh.creation.icosphere(subdivisions=2, radius=20.0)
    uvm = unwrap(sphere.vertices, sphere.faces)
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, :32] = (220, 30, 30)
    image[:, 32:] = (30, 30, 220)
    uv = np.column_stack([uvm.uvs[:, 0], 1.0 - uvm.uvs[:, 1]])  # trimesh's v counts from the bottom
    visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(image))
    return trimesh.Trimesh(uvm.vertices, uvm.faces, visual=visual, process=False)


def test_glb_has_texcoords_and_a_png_base_colour_texture():
    """The validator accepts the GLB; its material samples an embedded PNG through TEXCOORD_0."""
    mesh = textured_sphere()
    data = export_mesh(mesh, "glb").data
    document, blob, primitive, uv = assert_textured_glb(data)
    assert uv.shape[1] == 2
    material = document["materials"][primitive["material"]]
    texture = document["textures"][material["pbrMetallicRoughness"]["baseColorTexture"]["index"]]
    image = document["images"][texture["source"]]
    view = document["bufferViews"][image["bufferView"]]
    png = blob[view["byteOffset"] : view["byteOffset"] + view["byteLength"]]
    decoded = np.asarray(Image.open(io.BytesIO(png)))
    assert image["mimeType"] == "image/png"
    assert tuple(decoded[10, 5]) == (220, 30, 30)
    assert tuple(decoded[10, 60]) == (30, 30, 220)
    # glTF's v is counted from the top: flipping trimesh's back gives the same texel per vertex.
    np.testing.assert_allclose(uv[:, 1].max(), 1.0 - mesh.visual.uv[:, 1].min(), atol=1e-6)


def test_ply_and_3mf_take_the_texture_at_each_vertex_and_stl_the_geometry():
    """PLY and 3MF colours are the texture's red or blue at each vertex's UV; the STL stays closed."""
    mesh = textured_sphere()
    ply = trimesh.load(io.BytesIO(export_mesh(mesh, "ply").data), file_type="ply", process=False)
    colours = np.asarray(ply.visual.vertex_colors)[:, :3]
    assert len(ply.vertices) < len(mesh.vertices)  # the atlas seams' vertex copies are welded
    # The side of the atlas each PLY vertex's copies lie on (all copies on one side, else -1).
    side: dict[tuple, int] = {}
    for position, u in zip(map(tuple, mesh.vertices.astype(np.float32)), mesh.visual.uv[:, 0], strict=True):
        here = 0 if u < 0.5 - 1.0 / 64 else 1 if u > 0.5 + 1.0 / 64 else -1
        side[position] = here if side.get(position, here) == here else -1
    sides = np.array([side[tuple(p)] for p in ply.vertices.astype(np.float32)])
    left, right = sides == 0, sides == 1
    assert left.sum() > 10
    assert right.sum() > 10
    assert (colours[left] == (220, 30, 30)).all()
    assert (colours[right] == (30, 30, 220)).all()
    with zipfile.ZipFile(io.BytesIO(export_mesh(mesh, "3mf").data)) as archive:
        model = archive.read("3D/3dmodel.model").decode()
    assert set(re.findall(r'color="(#[0-9A-F]+)"', model)) == {"#DC1E1EFF", "#1E1EDCFF"}
    stl = trimesh.load(io.BytesIO(export_mesh(mesh, "stl").data), file_type="stl")
    assert stl.is_watertight


def _face_centre_colours(mesh: trimesh.Trimesh) -> np.ndarray:
    """The texture's RGB at each face's UV centre (nearest texel; trimesh's v counts from the bottom)."""
    material = mesh.visual.material  # a glTF file loads as a PBR material, an MTL as a simple one
    texture = getattr(material, "baseColorTexture", None) or material.image
    image = np.asarray(texture.convert("RGB"))
    uv = np.asarray(mesh.visual.uv)[np.asarray(mesh.faces)].mean(axis=1)
    height, width = image.shape[:2]
    cols = np.clip(np.round(uv[:, 0] * (width - 1)), 0, width - 1).astype(int)
    rows = np.clip(np.round((1.0 - uv[:, 1]) * (height - 1)), 0, height - 1).astype(int)
    return image[rows, cols]


def test_textured_obj_is_an_obj_an_mtl_and_a_png_that_trimesh_opens_as_the_glb(tmp_path):
    """A UV-textured OBJ is model.obj + model.mtl + model.png; loaded from one folder it has the
    GLB's texture: the same colour at every face centre."""
    from orfeas.mesh.export import export_files

    mesh = textured_sphere()
    files = export_files(mesh, "obj")
    assert [f.format for f in files] == ["obj", "mtl", "png"]
    assert [f.content_type for f in files] == ["model/obj", "model/mtl", "image/png"]
    text = files[0].data.decode("ascii")
    assert "mtllib model.mtl" in text
    assert re.search(r"^f \d+/\d+/\d+ ", text, re.M)
    assert "map_Kd model.png" in files[1].data.decode("ascii")
    for f in files:
        (tmp_path / f"model.{f.format}").write_bytes(f.data)
    obj = trimesh.load(tmp_path / "model.obj", process=False, maintain_order=True)
    assert isinstance(obj.visual, trimesh.visual.TextureVisuals)
    assert obj.visual.material.image is not None
    assert len(obj.faces) == len(mesh.faces)
    glb = trimesh.load(io.BytesIO(export_mesh(mesh, "glb").data), file_type="glb", process=False)
    glb_mesh = next(iter(glb.geometry.values())) if isinstance(glb, trimesh.Scene) else glb
    expected = _face_centre_colours(mesh)
    assert {tuple(c) for c in expected} == {(220, 30, 30), (30, 30, 220)}
    np.testing.assert_array_equal(_face_centre_colours(obj), expected)
    np.testing.assert_array_equal(_face_centre_colours(glb_mesh), expected)


def test_untextured_obj_stays_one_file_with_vertex_colours():
    """A mesh without a UV texture gives one OBJ, its colours on the `v` lines and no material."""
    from orfeas.mesh.export import export_files

    mesh = trimesh.creation.box(extents=(10, 10, 10))
    mesh.visual.vertex_colors = np.tile([200, 10, 10, 255], (len(mesh.vertices), 1))
    files = export_files(mesh, "obj")
    assert [f.format for f in files] == ["obj"]
    text = files[0].data.decode("ascii")
    assert "mtllib" not in text
    assert re.search(r"^v \S+ \S+ \S+ 0\.7843 0\.0392 0\.0392$", text, re.M)
