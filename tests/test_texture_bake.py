"""Baking views into a UV texture: face colours come back at face centres; holes and seams are filled."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

torch = pytest.importorskip("torch")
pytest.importorskip("xatlas")

from orfeas.texture.bake import PADDING_PX, bake  # noqa: E402
from orfeas.texture.unwrap import unwrap  # noqa: E402
from orfeas.texture.views import PAINT_VIEWS, View, normalise, render  # noqa: E402
from tests.texture_support import sphere_and_box  # noqa: E402


def views_of(vertices, faces, face_colours, views, size=256):
    """Pictures of the mesh from each view, every pixel the colour of the face it sees, white elsewhere."""
    v, f = torch.tensor(vertices, dtype=torch.float32), torch.tensor(faces)
    images = []
    for view in views:
        raster = render(v, f, view, size)
        image = np.full((size, size, 3), 255, np.uint8)
        image[raster.mask.numpy()] = face_colours[raster.face[raster.mask].numpy()]
        images.append(image)
    return images


def at_face_centres(result, uvm):
    centre = uvm.uvs[uvm.faces].mean(axis=1)
    size = result.texture.shape[0]
    rows, cols = (centre[:, 1] * size).astype(int), (centre[:, 0] * size).astype(int)
    return result.texture[rows, cols].astype(int), result.seen[rows, cols]


def test_known_face_colours_come_back_at_face_centres():
    """Each seen face of a sphere pierced by a box reads back its own colour (within 8 levels)."""
    mesh = sphere_and_box(subdivisions=2)
    colours = np.random.default_rng(0).integers(0, 256, (len(mesh.faces), 3), dtype=np.uint8)
    uvm = unwrap(mesh.vertices, mesh.faces)
    assert np.array_equal(uvm.source[uvm.faces], mesh.faces)  # face order kept, so colours map across
    images = views_of(mesh.vertices, mesh.faces, colours, PAINT_VIEWS)
    result = bake(uvm.vertices, uvm.faces, uvm.uvs, PAINT_VIEWS, images, 512)
    got, seen = at_face_centres(result, uvm)
    assert seen.mean() > 0.75  # the box's faces inside the sphere are hidden from every view
    close = np.abs(got - colours.astype(int)).max(axis=1) <= 8
    assert close[seen].mean() >= 0.99


def test_unseen_texels_are_inpainted_and_charts_padded():
    """From the front alone, the back is inpainted from the seen colour and every chart padded with it."""
    sphere = trimesh.creation.icosphere(subdivisions=2)
    vertices = normalise(sphere.vertices)
    red = np.tile(np.array([[200, 30, 40]], np.uint8), (len(sphere.faces), 1))
    uvm = unwrap(vertices, sphere.faces)
    front = [View(0, 0)]
    result = bake(uvm.vertices, uvm.faces, uvm.uvs, front, views_of(vertices, sphere.faces, red, front), 256)
    assert 0.2 < result.seen_share < 0.7
    filled = result.covered & ~result.seen
    assert np.abs(result.texture[filled].astype(int) - red[0]).max(axis=1).mean() < 20
    import cv2

    near = cv2.dilate(
        result.covered.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=PADDING_PX
    ).astype(bool)
    pad = near & ~result.covered
    assert pad.any()
    assert np.abs(result.texture[pad].astype(int) - red[0]).max(axis=1).mean() < 20
    far = ~cv2.dilate(near.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2).astype(bool)
    assert (result.texture[far] == 0).all()
