"""finish_mesh: the whole post-processing chain as the pipeline's export stage calls it."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from orfeas.errors import StageFailed, StageTimeout
from orfeas.mesh.finish import finish_mesh
from orfeas.request import Dimensions
from tests.shape_support import make_ctx


def _messy_sphere() -> trimesh.Trimesh:
    """A coloured 20k-face sphere with reversed faces, duplicates, a hole and split vertices."""
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=3.0)
    faces = np.array(sphere.faces)
    faces[::5] = faces[::5, ::-1]
    faces = np.concatenate([faces[1:], faces[10:20]])  # a 1-face hole and 10 duplicates
    vertices = np.array(sphere.vertices)
    # Split vertex 7 off from its faces: a copy a hair away takes its place.
    vertices = np.vstack([vertices, vertices[7] + 1e-9])
    faces[faces == 7] = len(vertices) - 1
    colours = np.where(vertices[:, 2:3] > 0, [[255, 0, 0, 255]], [[0, 0, 255, 255]]).astype(np.uint8)
    return trimesh.Trimesh(vertices, faces, vertex_colors=colours, process=False)


def _finish(mesh, *, ctx=None, **kw):
    ctx = ctx or make_ctx("export")[0]
    args = {"stands": False, "face_budget": 5_000, "dimensions": None, "default_size_mm": 100.0, **kw}
    return finish_mesh(mesh, ctx=ctx, **args)


def test_a_messy_mesh_comes_out_printable():
    """Repair, closing, decimation and placement give a closed, outward, budget-sized part."""
    ctx, reports = make_ctx("export")
    finished = _finish(_messy_sphere(), ctx=ctx, dimensions=Dimensions(width_mm=80.0))
    assert finished.is_watertight
    assert finished.is_winding_consistent
    assert finished.volume > 0
    assert 4_900 <= len(finished.faces) <= 5_050
    assert finished.extents[0] == pytest.approx(80.0, rel=1e-6)
    assert finished.bounds[0, 2] == 0.0
    assert ctx.warnings == []
    assert reports == sorted(reports)
    assert reports[0] > 0
    assert reports[-1] <= 0.5


def test_colours_reach_the_finished_mesh():
    """The red top and blue bottom survive every step."""
    finished = _finish(_messy_sphere())
    colours = np.asarray(finished.visual.vertex_colors)
    z = np.asarray(finished.vertices)[:, 2]
    middle = (z.min() + z.max()) / 2
    assert np.all(colours[z > middle + 2] == [255, 0, 0, 255])
    assert np.all(colours[z < middle - 2] == [0, 0, 255, 255])


def test_a_mesh_without_colours_stays_uncoloured():
    """No colours in, none made up on the way out."""
    finished = _finish(trimesh.creation.box(extents=(10, 10, 10)))
    assert finished.visual.kind is None


def test_an_open_mesh_is_finished_with_a_warning():
    """A bowl (a hemisphere, rim as wide as the part) stays open and the result says so."""
    sphere = trimesh.creation.icosphere(subdivisions=4)
    keep = sphere.triangles_center[:, 2] < 0
    bowl = trimesh.Trimesh(sphere.vertices, sphere.faces[keep], process=False)
    ctx, _ = make_ctx("export")
    finished = _finish(bowl, ctx=ctx)
    assert not finished.is_watertight
    assert len(ctx.warnings) == 1
    assert "not watertight" in ctx.warnings[0]
    assert "too large" in ctx.warnings[0]


def test_a_standing_mesh_is_stood_up():
    """stands=True turns picture-up into build-up before the height is measured."""
    tall = trimesh.creation.box(extents=(10, 40, 5))
    finished = _finish(tall, stands=True, dimensions=Dimensions(height_mm=20.0))
    np.testing.assert_allclose(finished.extents, [5.0, 2.5, 20.0], rtol=1e-9)


def test_an_empty_mesh_is_a_stage_failure():
    """No faces at all: stage_failed on the calling stage."""
    with pytest.raises(StageFailed) as info:
        _finish(trimesh.Trimesh(np.zeros((3, 3)), np.zeros((0, 3), int), process=False))
    assert info.value.stage == "export"
    assert "no faces" in info.value.message


def test_library_errors_become_stage_failed():
    """A mesh flat along the asked axis (a ValueError underneath) is stage_failed, chained."""
    flat = trimesh.Trimesh(
        [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], [[0, 1, 2], [1, 3, 2]], process=False
    )
    with pytest.raises(StageFailed) as info:
        _finish(flat, dimensions=Dimensions(height_mm=5.0))
    assert info.value.code == "stage_failed"
    assert info.value.stage == "export"
    assert isinstance(info.value.__cause__, ValueError)


def test_non_finite_vertices_are_refused():
    """NaN coordinates cannot be scaled or placed: stage_failed saying so."""
    box = trimesh.creation.box()
    vertices = np.array(box.vertices)
    vertices[0, 0] = np.nan
    with pytest.raises(StageFailed, match="not finite"):
        _finish(trimesh.Trimesh(vertices, box.faces, process=False))


def test_a_passed_deadline_stops_finishing():
    """With the job's deadline already passed, finishing stops with stage_timeout."""
    ctx, _ = make_ctx("export", seconds=0.0)
    with pytest.raises(StageTimeout):
        _finish(_messy_sphere(), ctx=ctx)


def test_an_edge_shared_by_four_faces_is_reported():
    """Two cubes touching along one edge cannot be watertight; the warning names the shared edge."""
    first = trimesh.creation.box(extents=(1, 1, 1))
    second = trimesh.creation.box(extents=(1, 1, 1))
    second.apply_translation((1, 1, 0))
    touching = trimesh.util.concatenate([first, second])
    touching.merge_vertices()
    ctx, _ = make_ctx("export")
    finished = _finish(touching, ctx=ctx)
    assert not finished.is_watertight
    assert len(ctx.warnings) == 1
    assert "shared by more than two faces" in ctx.warnings[0]


def test_parts_lost_to_a_tiny_budget_are_reported():
    """Two hundred separate cubes cannot all fit 500 faces: what collapses away is counted in a warning."""
    cubes = []
    for i in range(200):
        cube = trimesh.creation.box(extents=(1, 1, 1))
        cube.apply_translation((3 * (i % 20), 3 * (i // 20), 0))
        cubes.append(cube)
    ctx, _ = make_ctx("export")
    finished = _finish(trimesh.util.concatenate(cubes), ctx=ctx, face_budget=500)
    kept = len(finished.split(only_watertight=False))
    assert kept < 200
    assert f"{200 - kept} small part(s) collapsed away" in " ".join(ctx.warnings)


def test_the_input_mesh_is_left_untouched():
    """Finishing works on copies: the shape's mesh keeps its vertices, faces and colours."""
    mesh = _messy_sphere()
    vertices, faces = np.array(mesh.vertices), np.array(mesh.faces)
    colours = np.array(mesh.visual.vertex_colors)
    _finish(mesh, dimensions=Dimensions(width_mm=80.0))
    np.testing.assert_array_equal(mesh.vertices, vertices)
    np.testing.assert_array_equal(mesh.faces, faces)
    np.testing.assert_array_equal(mesh.visual.vertex_colors, colours)


def test_colour_parts_over_budget_are_decimated_a_colour_at_a_time() -> None:
    """A mesh of two colour solids over the budget comes out within it, every face still in one
    colour and each colour still a closed solid."""
    from orfeas.mesh.export import colour_parts

    left = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    right = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    right.apply_translation((2.0, 0.0, 0.0))  # touching the first at one point
    red = np.tile(np.array([[220, 30, 30, 255]], np.uint8), (len(left.vertices), 1))
    blue = np.tile(np.array([[30, 60, 200, 255]], np.uint8), (len(right.vertices), 1))
    both = trimesh.Trimesh(
        vertices=np.vstack([left.vertices, right.vertices]),
        faces=np.vstack([left.faces, right.faces + len(left.vertices)]),
        vertex_colors=np.vstack([red, blue]),
        process=False,
    )
    ctx, _ = make_ctx("export")
    out = finish_mesh(both, stands=False, face_budget=2000, dimensions=None, default_size_mm=100.0, ctx=ctx)
    assert len(out.faces) <= 2000 * 1.01
    parts = colour_parts(out)
    assert parts is not None
    assert [tuple(c[:3]) for c, _ in parts] == [(220, 30, 30), (30, 60, 200)]
