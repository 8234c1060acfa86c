"""Quadric decimation to a face budget: the budget, closedness, shape and colours survive."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from orfeas.mesh.decimate import decimate
from orfeas.mesh.repair import MeshArrays


def _bumpy_sphere(subdivisions: int = 6) -> MeshArrays:
    """A sphere with smooth bumps, red above the equator and blue below."""
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions)
    x = np.array(sphere.vertices)
    radius = 1 + 0.1 * np.sin(5 * x[:, 0]) * np.sin(4 * x[:, 1]) * np.sin(3 * x[:, 2])
    colours = np.where(x[:, 2:3] > 0, [[220, 20, 20, 255]], [[20, 20, 220, 255]]).astype(np.uint8)
    return MeshArrays(x * radius[:, None], np.array(sphere.faces, np.int64), colours)


@pytest.mark.parametrize("budget", [500, 5_000, 40_000])
def test_the_face_budget_is_honoured(budget):
    """Decimating an 82k-face sphere lands within 2 % under the budget and never over it by 1 %."""
    mesh = _bumpy_sphere()
    result = decimate(mesh, budget)
    assert 0.98 * budget <= len(result.faces) <= 1.01 * budget
    assert trimesh.Trimesh(result.vertices, result.faces, process=False).is_watertight


def test_a_mesh_under_budget_is_untouched():
    """A mesh already within the budget comes back as it was."""
    mesh = _bumpy_sphere(3)
    assert decimate(mesh, 100_000) is mesh


def test_the_surface_stays_where_it_was():
    """Every decimated vertex lies within 1 % of the radius of the original surface."""
    mesh = _bumpy_sphere()
    result = decimate(mesh, 5_000)
    original = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    # 10⁶ samples lie about 0.004 apart: a vertex's distance to the nearest one bounds its
    # distance to the surface within that.
    samples, _ = trimesh.sample.sample_surface(original, 1_000_000, seed=0)
    distance, _ = cKDTree(samples).query(result.vertices)
    assert distance.max() < 0.01


def test_colours_survive_decimation():
    """After decimation the upper half is still red and the lower half blue, vertex by vertex."""
    mesh = _bumpy_sphere()
    result = decimate(mesh, 2_000)
    assert result.colours is not None
    assert result.colours.shape == (len(result.vertices), 4)
    z = result.vertices[:, 2]
    upper, lower = result.colours[z > 0.05], result.colours[z < -0.05]
    assert len(upper) > 100
    assert len(lower) > 100
    assert np.all(upper == [220, 20, 20, 255])
    assert np.all(lower == [20, 20, 220, 255])


def test_colours_come_from_the_nearest_original_vertex():
    """A vertex's colour is that of the closest original vertex (random colours, exact match)."""
    mesh = _bumpy_sphere(5)
    rng = np.random.default_rng(3)
    mesh.colours = rng.integers(0, 256, (len(mesh.vertices), 4), dtype=np.uint8)
    result = decimate(mesh, 3_000)
    _, nearest = cKDTree(mesh.vertices).query(result.vertices)
    np.testing.assert_array_equal(result.colours, mesh.colours[nearest])


def test_concurrent_decimations_do_not_mix_meshes():
    """Two threads decimating different meshes at once get what each gets alone."""
    small, large = _bumpy_sphere(5), _bumpy_sphere(6)
    expected = [decimate(small, 1_000), decimate(large, 3_000)]
    results: list[MeshArrays | None] = [None, None]

    def work(i, mesh, budget):
        results[i] = decimate(mesh, budget)

    threads = [
        threading.Thread(target=work, args=(0, small, 1_000)),
        threading.Thread(target=work, args=(1, large, 3_000)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected, strict=True):
        assert got is not None
        np.testing.assert_array_equal(got.faces, want.faces)
        np.testing.assert_allclose(got.vertices, want.vertices)


def test_a_budget_too_small_for_a_solid_is_refused():
    """A budget under four faces (a tetrahedron) is a ValueError, not a broken mesh."""
    with pytest.raises(ValueError, match="face budget"):
        decimate(_bumpy_sphere(2), 3)
