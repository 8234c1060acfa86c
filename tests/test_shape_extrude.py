"""The `extrude` shape: a mask's outline as a closed flat solid, holes kept."""

from __future__ import annotations

import numpy as np
import pytest

from orfeas.errors import StageFailed, StageTimeout
from orfeas.registry import Backends
from orfeas.request import JobRequest
from orfeas.settings import Settings
from orfeas.shape.extrude import THICKNESS_RATIO, ExtrudeBackend
from orfeas.types import ShapeResult
from tests.shape_support import (
    assert_closed_solid,
    cutout_from,
    emblem_cutout,
    letters_mask,
    make_ctx,
    ring_mask,
    two_blobs_mask,
    vertical_hits,
)


def _extrude(mask: np.ndarray, quality: int = 5) -> tuple[ShapeResult, list[float]]:
    ctx, reports = make_ctx()
    # Loose parts as they are extruded; the backing plate that joins them is tested in test_shape_backing.py.
    request = JobRequest(image="x", quality=quality, backing=False)
    return ExtrudeBackend(Settings()).generate(cutout_from(mask), request, ctx), reports


def test_square_with_hole_has_the_right_volume() -> None:
    """A 100 px square with a 40 px square hole extrudes to (100² − 40²) px² × 8 % of 100 px."""
    mask = np.zeros((300, 300), dtype=bool)
    mask[50:150, 60:160] = True
    mask[80:120, 90:130] = False
    result, _ = _extrude(mask)
    mesh = result.mesh
    assert_closed_solid(mesh)
    unit = 1 / 300
    thickness = THICKNESS_RATIO * 100 * unit
    assert mesh.volume == pytest.approx((100**2 - 40**2) * unit**2 * thickness, rel=0.01)
    assert mesh.bounds[:, 2] == pytest.approx([0.0, thickness], rel=0.01)
    # The square sits at columns 60..160 and rows 50..150 of a picture 300 px tall (+Y up).
    assert mesh.bounds[0, :2] == pytest.approx([60 * unit, 150 * unit], abs=unit)
    assert mesh.bounds[1, :2] == pytest.approx([160 * unit, 250 * unit], abs=unit)
    assert vertical_hits(mesh, 110 * unit, 200 * unit) == 0  # through the hole
    assert vertical_hits(mesh, 70 * unit, 200 * unit) == 2  # through the frame: front and back


def test_ring_keeps_its_hole_and_aspect() -> None:
    """A ring is one closed part with a through hole; its extents are the ring's, not the picture's."""
    result, reports = _extrude(ring_mask(200, 300, outer=80, inner=35))
    mesh = result.mesh
    assert_closed_solid(mesh)
    assert result.meta["parts"] == 1
    assert result.meta["holes"] == 1
    assert result.stands is False
    assert result.picture_box == pytest.approx((0.0, 0.0, 1.0, 200 / 300))
    cx, cy = 150.5 / 300, (200 - 100.5) / 300
    assert vertical_hits(mesh, cx + 0.001, cy + 0.0013) == 0
    assert vertical_hits(mesh, cx + 57 / 300, cy + 0.0013) == 2
    assert mesh.extents[0] == pytest.approx(160 / 300, rel=0.02)
    assert mesh.extents[0] / mesh.extents[1] == pytest.approx(1.0, rel=0.01)
    assert reports == sorted(reports)
    assert reports[-1] == 1.0


def test_two_blobs_stay_two_bodies() -> None:
    """Separate blobs extrude to separate closed bodies, and the aspect follows the mask's."""
    result, _ = _extrude(two_blobs_mask())
    mesh = result.mesh
    assert_closed_solid(mesh)
    assert result.meta["parts"] == 2
    assert mesh.body_count == 2
    # Discs of radius 50 at x = 80 and radius 40 at x = 240 (pixels): x 30..280, y 30..130.
    assert mesh.extents[0] / mesh.extents[1] == pytest.approx(250 / 100, rel=0.02)


def test_letters_keep_the_counter_of_the_o() -> None:
    """Block letters O, L, T: three bodies, one hole (the O's counter), each letter solid."""
    result, _ = _extrude(letters_mask(), quality=8)
    mesh = result.mesh
    assert_closed_solid(mesh)
    assert mesh.body_count == 3
    assert result.meta["holes"] == 1
    unit = 1 / 260
    assert vertical_hits(mesh, 50.3 * unit, (120 - 60.2) * unit) == 0  # inside the O's counter
    assert vertical_hits(mesh, 26.3 * unit, (120 - 60.2) * unit) == 2  # the O's left stroke
    assert vertical_hits(mesh, 205.3 * unit, (120 - 60.2) * unit) == 2  # the T's stem


def test_emblem_sample() -> None:
    """The bundled emblem extrudes to a closed solid with its central hole."""
    cutout = emblem_cutout()
    ctx, _ = make_ctx()
    result = ExtrudeBackend(Settings()).generate(cutout, JobRequest(image="x"), ctx)
    assert_closed_solid(result.mesh)
    assert result.meta["holes"] >= 1
    rows, cols = np.nonzero(cutout.mask)
    aspect = (np.ptp(cols) + 1) / (np.ptp(rows) + 1)
    assert result.mesh.extents[0] / result.mesh.extents[1] == pytest.approx(aspect, rel=0.02)


def test_quality_raises_the_face_count() -> None:
    """Higher quality traces a finer outline: the face count never drops and grows overall."""
    mask = ring_mask(1200, 1600, outer=560, inner=230)
    faces = [len(_extrude(mask, quality=q)[0].mesh.faces) for q in (1, 4, 7, 10)]
    assert faces == sorted(faces)
    assert faces[-1] > 2 * faces[0]


def test_empty_mask_fails_the_stage() -> None:
    """Nothing to extrude is a stage failure naming the stage, not a crash."""
    with pytest.raises(StageFailed, match="empty") as info:
        _extrude(np.zeros((50, 60), dtype=bool))
    assert info.value.stage == "shape"
    assert info.value.code == "stage_failed"


def test_only_specks_fails_the_stage() -> None:
    """A mask of scattered single pixels has no part large enough to extrude."""
    mask = np.zeros((400, 400), dtype=bool)
    mask[::50, ::50] = True
    with pytest.raises(StageFailed, match="specks"):
        _extrude(mask)


def test_expired_deadline_stops_the_stage() -> None:
    """The backend checks the deadline between steps."""
    ctx, _ = make_ctx(seconds=0.0)
    with pytest.raises(StageTimeout):
        ExtrudeBackend(Settings()).generate(cutout_from(ring_mask()), JobRequest(image="x"), ctx)


def test_registry_builds_the_backend_by_name() -> None:
    """The pipeline's registry finds the backend under its name."""
    backend = Backends(Settings()).shape("extrude")
    assert backend.name == "extrude"
    assert isinstance(backend, ExtrudeBackend)


@pytest.mark.parametrize("quality", [1, 5])
def test_many_parts_and_many_holes_are_all_kept(quality: int) -> None:
    """A 30 × 30 pattern of dots gives 900 bodies; its negative, one plate with 900 holes.

    The dots are 2 % of the picture across: small, but parts of the design, even at quality 1.
    """
    y, x = np.mgrid[0:600, 0:600]
    dots = np.hypot(y % 20 - 9.5, x % 20 - 9.5) < 6
    result, _ = _extrude(dots, quality)
    assert_closed_solid(result.mesh)
    assert result.meta["parts"] == 900
    assert result.mesh.body_count == 900
    plate, _ = _extrude(~dots, quality)
    assert_closed_solid(plate.mesh)
    assert plate.meta["parts"] == 1
    assert plate.meta["holes"] == 900
