"""Vertex colours read out of any trimesh visual, and carried to new vertices by nearest neighbour."""

from __future__ import annotations

import numpy as np
import trimesh
from PIL import Image

from orfeas.mesh.colors import nearest_colours, vertex_colours


def test_a_mesh_without_colours_has_none():
    """The default visual carries no colour: None, not trimesh's default grey."""
    assert vertex_colours(trimesh.creation.box()) is None


def test_vertex_colours_come_back_as_rgba_bytes():
    """Per-vertex colours are returned one uint8 RGBA row per vertex."""
    box = trimesh.creation.box()
    box.visual.vertex_colors = [10, 20, 30, 255]
    colours = vertex_colours(box)
    assert colours is not None
    assert colours.dtype == np.uint8
    assert colours.shape == (8, 4)
    assert np.all(colours == [10, 20, 30, 255])


def test_face_colours_spread_onto_vertices():
    """A mesh coloured per face gets per-vertex colours from the faces around each vertex."""
    box = trimesh.creation.box()
    box.visual.face_colors = [200, 0, 0, 255]
    colours = vertex_colours(box)
    assert colours is not None
    assert np.all(colours == [200, 0, 0, 255])


def test_a_uv_texture_is_sampled_at_each_vertex():
    """A textured quad (left half red, right half blue) gives its vertices the colour under their UVs."""
    vertices = np.array([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    uv = np.array([[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]])
    pixels = np.zeros((8, 8, 3), np.uint8)
    pixels[:, :4] = (255, 0, 0)
    pixels[:, 4:] = (0, 0, 255)
    visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(pixels))
    quad = trimesh.Trimesh(vertices, faces, visual=visual, process=False)
    colours = vertex_colours(quad)
    assert colours is not None
    np.testing.assert_array_equal(colours[:, :3], [[255, 0, 0], [0, 0, 255], [0, 0, 255], [255, 0, 0]])


def test_nearest_colours_take_the_closest_source_vertex():
    """Each new point takes the colour of the closest source point."""
    source = np.array([[0.0, 0, 0], [10, 0, 0]])
    colours = np.array([[255, 0, 0, 255], [0, 255, 0, 255]], np.uint8)
    got = nearest_colours(source, colours, np.array([[1.0, 0, 0], [9, 1, 0], [4.9, 0, 0]]))
    np.testing.assert_array_equal(got, colours[[0, 1, 0]])
