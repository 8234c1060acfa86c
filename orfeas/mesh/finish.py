"""`finish_mesh`: a shape's mesh → a clean, closed, budget-sized part in millimetres on the build plate.

Order matters: cleaning first (decimation assumes a manifold input), holes closed before the
orientation check (only a closed body has an inside), decimation before placement (the quadric
error is scale-free, and scaling last keeps the asked dimension exact rather than approximate:
decimation moves the extreme vertices).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypedDict

import numpy as np

from orfeas.errors import OrfeasError, StageFailed
from orfeas.mesh.colors import vertex_colours
from orfeas.mesh.decimate import BUDGET_SLACK, decimate
from orfeas.mesh.placement import place
from orfeas.mesh.repair import EdgeTable, MeshArrays, clean, close_holes, fix_winding, orient_outward

if TYPE_CHECKING:
    import trimesh

    from orfeas.request import Dimensions
    from orfeas.types import StageContext

# This function's share of the export stage's progress (the pipeline reports 0.5 after it).
_SPAN = 0.5


class Finishing(TypedDict):
    """What both finishers (this one and orfeas.texture.finish_uv's) are told about the job."""

    stands: bool
    face_budget: int
    dimensions: Dimensions | None
    default_size_mm: float
    ctx: StageContext


def finish_mesh(
    mesh: trimesh.Trimesh,
    *,
    stands: bool,
    face_budget: int,
    dimensions: Dimensions | None,
    default_size_mm: float,
    ctx: StageContext,
) -> trimesh.Trimesh:
    """Repair, close, decimate, orient, scale and place `mesh`; problems that remain become warnings.

    Errors of the libraries underneath are raised as StageFailed for the calling stage.
    """
    with _as_stage_failure(ctx):
        arrays = MeshArrays(
            np.asarray(mesh.vertices, dtype=np.float64),
            np.asarray(mesh.faces, dtype=np.int64).reshape(-1, 3),
            vertex_colours(mesh),
        )
        if len(arrays.faces) == 0:
            raise StageFailed("the mesh has no faces", stage=ctx.stage)
        if not np.isfinite(arrays.vertices).all():
            raise StageFailed("the mesh has vertices that are not finite numbers", stage=ctx.stage)

        arrays, _ = clean(arrays)
        if len(arrays.faces) == 0:
            raise StageFailed("the mesh has only degenerate faces", stage=ctx.stage)
        table = EdgeTable.of(arrays.faces)
        arrays, flipped = fix_winding(arrays, table)
        if flipped:
            table = EdgeTable.of(arrays.faces)
        ctx.report(0.1 * _SPAN)
        ctx.check()

        arrays, holes = close_holes(arrays, table)
        if holes.filled:
            table = EdgeTable.of(arrays.faces)
        arrays, _ = orient_outward(arrays, table)
        ctx.report(0.2 * _SPAN)
        ctx.check()

        before = len(arrays.faces)
        if before > face_budget:
            parts = _count_parts(table, before)
            arrays = _decimate_by_colour(arrays, face_budget)
            # A collapse can, rarely, tear a closed surface (a flap cancelled by `clean`); close what
            # it opened. The edges of a 100k-face result take ~0.05 s to check.
            table = EdgeTable.of(arrays.faces)
            arrays, holes = close_holes(arrays, table)
            if holes.filled:
                table = EdgeTable.of(arrays.faces)
            lost = parts - _count_parts(table, len(arrays.faces))
            if lost > 0:
                # Edge collapses never join parts, so fewer parts means some collapsed to nothing.
                ctx.warn(f"{lost} small part(s) collapsed away to fit the budget of {face_budget} faces")
        if len(arrays.faces) > face_budget * (1 + BUDGET_SLACK):
            # Many small separate parts: each keeps at least a tetrahedron's faces.
            ctx.warn(f"mesh kept {len(arrays.faces)} faces, over the budget of {face_budget}")
        ctx.report(0.9 * _SPAN)
        ctx.check()

        vertices = place(
            arrays.vertices, stands=stands, dimensions=dimensions, default_size_mm=default_size_mm
        )
        finished = _to_trimesh(MeshArrays(vertices, arrays.faces, arrays.colours))
        _warn_if_open(finished, holes.left_open, holes.nonmanifold_edges, ctx)
        ctx.report(_SPAN)
        return finished


@contextmanager
def _as_stage_failure(ctx: StageContext) -> Iterator[None]:
    """Errors of the libraries underneath become StageFailed for the calling stage; ours and
    MemoryError pass unchanged."""
    try:
        yield
    except (OrfeasError, MemoryError):
        raise
    except Exception as exc:
        raise StageFailed(f"mesh finishing failed: {type(exc).__name__}: {exc}", stage=ctx.stage) from exc


def _decimate_by_colour(arrays: MeshArrays, face_budget: int) -> MeshArrays:
    """Decimation that keeps colour regions crisp: a mesh of colour parts (every face in one of a
    few colours, as the extrude backend makes for a flat-colour picture) is decimated a colour at
    a time, each with its share of the budget, so every face keeps its colour exactly; any other
    mesh is decimated whole, colours following the nearest original vertex."""
    groups = _colour_groups(arrays)
    if groups is None:
        return decimate(arrays, face_budget)
    total = len(arrays.faces)
    pieces = []
    for faces in groups:
        keep, renumbered = np.unique(arrays.faces[faces], return_inverse=True)
        part = arrays.subset_vertices(keep, renumbered.reshape(-1, 3))
        pieces.append(_decimate_closed(part, max(MIN_PART_FACES, face_budget * len(faces) // total)))
    offsets = np.cumsum([0] + [len(p.vertices) for p in pieces])
    return MeshArrays(
        np.concatenate([p.vertices for p in pieces]),
        np.concatenate([p.faces + offsets[i] for i, p in enumerate(pieces)]),
        np.concatenate([p.colours for p in pieces if p.colours is not None]),
    )


def _decimate_closed(part: MeshArrays, budget: int) -> MeshArrays:
    """A closed colour part decimated to `budget`, or, if that leaves it open or pinched (a thin
    part collapsed onto itself: the logo's bar at 120 faces), at twice the budget, else as it was:
    a part that stays closed matters more to a slicer than a few faces over the budget."""
    for target in (budget, 2 * budget):
        if target >= len(part.faces):
            break
        out = decimate(part, target)
        if len(out.faces) and np.all(EdgeTable.of(out.faces).uses() == 2):
            return out
    return part


# At most this many colours make a mesh of colour parts (the request's limit on a palette).
MAX_COLOUR_PARTS = 16
# A colour part's own budget never goes below a closed mesh's few faces (a tetrahedron has 4).
MIN_PART_FACES = 8


def _colour_groups(arrays: MeshArrays) -> list[np.ndarray] | None:
    """Face indices per colour when every face's corners share one colour and there are 2 to 16
    colours; else None."""
    if arrays.colours is None:
        return None
    packed = np.ascontiguousarray(arrays.colours).view(np.uint32).ravel()[arrays.faces]
    if not np.all(packed == packed[:, :1]):
        return None
    values, owner = np.unique(packed[:, 0], return_inverse=True)
    if not 2 <= len(values) <= MAX_COLOUR_PARTS:
        return None
    return [np.flatnonzero(owner.reshape(-1) == i) for i in range(len(values))]


def _count_parts(table: EdgeTable, faces: int) -> int:
    """Separate pieces: faces linked through shared edges are one piece."""
    return len(np.unique(table.bodies(faces))) if faces else 0


def _to_trimesh(arrays: MeshArrays) -> trimesh.Trimesh:
    import trimesh

    return trimesh.Trimesh(
        vertices=arrays.vertices, faces=arrays.faces, vertex_colors=arrays.colours, process=False
    )


def _warn_if_open(mesh: trimesh.Trimesh, left_open: int, nonmanifold: int, ctx: StageContext) -> None:
    if mesh.is_watertight:
        return
    reasons = []
    if left_open:
        reasons.append(f"{left_open} hole(s) too large or irregular to close")
    if nonmanifold:
        reasons.append(f"{nonmanifold} edge(s) shared by more than two faces")
    why = "; ".join(reasons) or "decimation opened it"
    ctx.warn(f"mesh is not watertight ({why}); a slicer may need to repair it")
