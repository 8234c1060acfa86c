"""Mesh clean-up after manifold3d: slivers flipped away and tiny edges collapsed, solids kept closed."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from trimesh.triangles import nondegenerate

from orfeas.shape.polygons import collapse_short_edges, flip_slivers
from tests.shape_support import assert_closed_solid


def _prism(outline: np.ndarray, cap: list[tuple[int, int, int]]) -> trimesh.Trimesh:
    """A closed prism of height 1 over a CCW outline, with the given triangulation of its caps."""
    n = len(outline)
    vertices = np.vstack([np.column_stack([outline, np.zeros(n)]), np.column_stack([outline, np.ones(n)])])
    top = [(a + n, b + n, c + n) for a, b, c in cap]
    bottom = [(a, c, b) for a, b, c in cap]
    walls = []
    for i in range(n):
        j = (i + 1) % n
        walls += [(i, j, j + n), (i, j + n, i + n)]
    return trimesh.Trimesh(vertices=vertices, faces=np.array(top + bottom + walls), process=False)


def test_sliver_in_a_cap_is_flipped_away() -> None:
    """A cap triangle of three all but collinear vertices is replaced; the prism stays closed."""
    # D sits 1e-10 above the line C–E: triangle (C, D, E) is a sliver.
    outline = np.array([[0, 0], [1, 0], [1, 1], [0.5, 1 + 1e-10], [0, 1]], dtype=float)
    mesh = _prism(outline, [(0, 1, 2), (0, 2, 4), (2, 3, 4)])
    assert mesh.is_watertight
    assert not nondegenerate(mesh.triangles, height=1e-7).all()
    fixed = flip_slivers(mesh, 1e-7)
    assert_closed_solid(fixed)
    assert nondegenerate(fixed.triangles, height=1e-7).all()
    assert fixed.volume == pytest.approx(mesh.volume)


def test_short_edge_is_collapsed() -> None:
    """Two vertices 1e-9 apart merge into one; the prism stays closed with the same volume."""
    outline = np.array([[0, 0], [1, 0], [1, 1], [1 - 1e-9, 1], [0, 1]], dtype=float)
    mesh = _prism(outline, [(0, 1, 2), (0, 2, 3), (0, 3, 4)])
    assert not mesh.nondegenerate_faces().all()
    fixed = collapse_short_edges(mesh, 1e-6)
    assert_closed_solid(fixed)
    assert len(fixed.vertices) == len(mesh.vertices) - 2
    assert fixed.volume == pytest.approx(1.0)


def test_clean_meshes_come_back_unchanged() -> None:
    """Without slivers or short edges, both steps return the very same mesh."""
    box = trimesh.creation.box()
    assert flip_slivers(box, 1e-7) is box
    assert collapse_short_edges(box, 1e-6) is box
