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
