"""Mesh repair: merging, degenerate and duplicate faces, winding, outward orientation, hole closing."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from orfeas.mesh.repair import (
    EdgeTable,
    MeshArrays,
    clean,
    close_holes,
    fix_winding,
    orient_outward,
    winding_is_consistent,
)


def _arrays(mesh: trimesh.Trimesh, colours: np.ndarray | None = None) -> MeshArrays:
    return MeshArrays(np.array(mesh.vertices, float), np.array(mesh.faces, np.int64), colours)


def _trimesh(arrays: MeshArrays) -> trimesh.Trimesh:
    return trimesh.Trimesh(arrays.vertices, arrays.faces, process=False)


def _sphere(subdivisions: int = 3) -> MeshArrays:
    return _arrays(trimesh.creation.icosphere(subdivisions=subdivisions))


def test_same_winding_duplicate_faces_collapse_to_one():
    """A face repeated (in any rotation of its corners) is kept once and the mesh stays closed."""
    sphere = _sphere()
    extra = np.roll(sphere.faces[:5], 1, axis=1)
    cleaned, report = clean(MeshArrays(sphere.vertices, np.concatenate([sphere.faces, extra])))
    assert report.duplicate_faces == 5
    assert len(cleaned.faces) == len(sphere.faces)
    assert _trimesh(cleaned).is_watertight


def test_a_face_and_its_reverse_cancel():
    """A flap (a face plus the same face reversed) is dropped entirely, with its lone vertex."""
    box = _arrays(trimesh.creation.box())
    tip = len(box.vertices)
    vertices = np.vstack([box.vertices, [[0.0, 0.0, 3.0]]])
    flap = np.array([[0, 1, tip], [1, 0, tip]])
    cleaned, report = clean(MeshArrays(vertices, np.concatenate([box.faces, flap])))
    assert report.duplicate_faces == 2
    assert report.unreferenced_vertices == 1
    assert len(cleaned.faces) == 12
    assert _trimesh(cleaned).is_watertight


def test_close_vertices_merge_and_degenerate_faces_go():
    """A box with every face's corners unshared (and jittered by 1e-9) merges back to 8 corners."""
    box = trimesh.creation.box(extents=(10, 20, 30))
    loose = box.copy()
    loose.unmerge_vertices()
    vertices = np.array(loose.vertices) + np.random.default_rng(1).normal(0, 1e-9, (len(loose.vertices), 3))
    degenerate = np.array([[0, 0, 1], [2, 3, 3]])
    faces = np.concatenate([np.array(loose.faces), degenerate])
    cleaned, report = clean(MeshArrays(vertices, faces))
    assert len(cleaned.vertices) == 8
    assert report.merged_vertices == len(vertices) - 8
    assert report.degenerate_faces == 2
    assert len(cleaned.faces) == 12
    assert _trimesh(cleaned).is_watertight
    assert _trimesh(cleaned).volume == pytest.approx(6000)


def test_unreferenced_vertices_are_dropped_with_their_colours():
    """Vertices no face uses disappear and the remaining colours stay with their vertices."""
    box = _arrays(trimesh.creation.box())
    vertices = np.vstack([[[9.0, 9.0, 9.0]], box.vertices])
    colours = np.zeros((len(vertices), 4), np.uint8)
    colours[:, 0] = np.arange(len(vertices))
    cleaned, report = clean(MeshArrays(vertices, box.faces + 1, colours))
    assert report.unreferenced_vertices == 1
    np.testing.assert_array_equal(cleaned.vertices, box.vertices)
    np.testing.assert_array_equal(cleaned.colours[:, 0], np.arange(1, len(vertices)))


def test_scrambled_winding_is_made_consistent_and_outward():
    """A sphere with every third face reversed gets one winding, and after orientation volume > 0."""
    sphere = _sphere()
    reference = _trimesh(sphere).volume
    faces = sphere.faces.copy()
    faces[::3] = faces[::3, ::-1]
    scrambled = MeshArrays(sphere.vertices, faces)
    assert not winding_is_consistent(faces)
    fixed, flipped = fix_winding(scrambled)
    assert flipped > 0
    assert winding_is_consistent(fixed.faces)
    outward, _ = orient_outward(fixed)
    mesh = _trimesh(outward)
    assert mesh.is_winding_consistent
    assert mesh.volume == pytest.approx(reference)


def test_an_inverted_mesh_is_turned_outward():
    """A closed mesh with every face reversed (negative volume) comes out with positive volume."""
    box = _arrays(trimesh.creation.box(extents=(1, 2, 3)))
    inverted = MeshArrays(box.vertices, box.faces[:, ::-1].copy())
    assert _trimesh(inverted).volume < 0
    fixed, flipped = orient_outward(inverted)
    assert flipped == 12
    assert _trimesh(fixed).volume == pytest.approx(6.0)


def test_a_cavity_keeps_its_inward_faces():
    """A hollow box (outer shell outward, inner shell facing the hollow) is not 'fixed' into two solids."""
    outer = trimesh.creation.box(extents=(4, 4, 4))
    inner = trimesh.creation.box(extents=(2, 2, 2))
    inner.invert()
    hollow = _arrays(trimesh.util.concatenate([outer, inner]))
    fixed, flipped = orient_outward(hollow)
    assert flipped == 0
    assert _trimesh(fixed).volume == pytest.approx(64 - 8)


def test_separate_bodies_are_oriented_each_on_its_own():
    """Of two disjoint boxes, only the inverted one is flipped."""
    left = trimesh.creation.box(extents=(1, 1, 1))
    right = trimesh.creation.box(extents=(1, 1, 1))
    right.apply_translation((3, 0, 0))
    right.invert()
    fixed, flipped = orient_outward(_arrays(trimesh.util.concatenate([left, right])))
    assert flipped == 12
    assert _trimesh(fixed).volume == pytest.approx(2.0)


def test_small_holes_are_closed():
    """A sphere missing a patch of faces around one vertex (a 5-edge hole) and a single face is closed."""
    sphere = _sphere(4)
    reference = _trimesh(sphere).volume
    around = np.flatnonzero(np.any(sphere.faces == 0, axis=1))
    holed = np.delete(sphere.faces, [*around, len(sphere.faces) - 1], axis=0)
    opened = MeshArrays(sphere.vertices, holed)
    assert not _trimesh(opened).is_watertight
    closed, report = close_holes(opened)
    assert report.filled == 2
    assert report.left_open == 0
    mesh = _trimesh(closed)
    assert mesh.is_watertight
    assert mesh.is_winding_consistent
    assert mesh.volume == pytest.approx(reference, rel=1e-3)


def test_a_long_wavy_hole_is_capped_without_folds():
    """A cylinder missing its top cap (a 64-edge loop) gets a flat, consistently wound cap."""
    tube = trimesh.creation.cylinder(radius=1.0, height=6.0, sections=64)
    arrays = _arrays(tube)
    top = arrays.vertices[:, 2] > 2.9
    keep = ~np.all(top[arrays.faces], axis=1)
    closed, report = close_holes(MeshArrays(arrays.vertices, arrays.faces[keep]))
    assert report.filled == 1
    mesh = _trimesh(closed)
    assert mesh.is_watertight
    assert mesh.is_winding_consistent
    assert mesh.volume == pytest.approx(tube.volume, rel=1e-6)


def test_an_open_sheet_is_left_alone():
    """A flat grid's rim is its whole outline, not a hole: nothing is added and it is reported open."""
    grid = trimesh.creation.box(extents=(10, 10, 1)).subdivide().subdivide()
    arrays = _arrays(grid)
    top = np.all(arrays.vertices[arrays.faces][:, :, 2] > 0.4, axis=1)
    sheet = MeshArrays(arrays.vertices, arrays.faces[top])
    closed, report = close_holes(sheet)
    assert report.filled == 0
    assert report.left_open == 1
    assert len(closed.faces) == len(sheet.faces)


def test_the_edge_table_counts_edge_uses():
    """A closed sphere uses every edge twice; removing a face leaves three edges used once."""
    sphere = _sphere(2)
    assert set(EdgeTable.of(sphere.faces).counts.tolist()) == {2}
    counts = EdgeTable.of(sphere.faces[1:]).counts
    assert int((counts == 1).sum()) == 3
