"""`extrude`: the mask's outline as a flat solid of constant thickness, holes kept.

For logos, badges, lettering and cookie cutters. The outline is traced with marching squares on
a working grid over the mask's bounding box (size from the request's quality), cleaned into
polygons with holes, and extruded by manifold3d, whose output is a closed 2-manifold by
construction. Thickness: 8 % of the outline's longest side (8 mm on a 100 mm badge — stiff
enough to print and handle, thin enough to read as a flat piece). When the job is textured, the
solid is then refined (still closed) so that vertex colours can follow the picture inside the
outline, spending up to half the face budget on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from orfeas.errors import StageFailed
from orfeas.settings import Settings
from orfeas.shape.backing import printable_parts
from orfeas.shape.contours import trace_contours
from orfeas.shape.polygons import (
    cross_section,
    manifold_to_trimesh,
    plain_trimesh,
    polygons_from_rings,
    trimesh_to_manifold,
)
from orfeas.shape.raster import PictureFrame, coverage_field, grid_shape, quality_resolution
from orfeas.types import ShapeResult

if TYPE_CHECKING:
    import trimesh
    from shapely.geometry import MultiPolygon

    from orfeas.request import JobRequest
    from orfeas.types import Cutout, StageContext

THICKNESS_RATIO = 0.08
# Working grid: 128 cells on the outline's longest side at quality 1, 1024 at quality 10.
GRID_MIN, GRID_MAX = 128, 1024
# A small mask is resampled up to this many cells at least, so its outline is smooth, not stepped.
GRID_FLOOR = 256
# Islands and holes smaller than this many working cells, or this share of the outline's
# bounding box, are specks of the background removal, not parts of the design.
SPECK_CELLS = 2.0
SPECK_SHARE = 1e-4
# Simplification tolerance in working cells: well under one cell, so no visible facets.
TOLERANCE_CELLS = 0.35
# Colour: a cap triangulated between outline vertices alone has no vertex inside a colour region
# that touches no outline (the ring between an emblem's rim and its hole), so vertex colours
# would blend across it. With texture asked, the solid is refined to edges L such that this share
# of the face budget would cover its area in equilateral triangles (0.433 L² each); edges come out
# shorter than L, so the result is about twice that (the sample emblem at quality 5: 37k faces of
# a 76k budget, edges of about 1.3 mm on 100 mm). Never finer than 1/COLOUR_GRID of the longest side.
COLOUR_BUDGET_SHARE = 0.25
COLOUR_GRID = 160


class ExtrudeBackend:
    name = "extrude"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def generate(self, cutout: Cutout, request: JobRequest, ctx: StageContext) -> ShapeResult:
        frame = PictureFrame(cutout.mask.shape[1], cutout.mask.shape[0])
        outline = trace_outline(cutout.mask, frame, request.quality, ctx, span=(0.0, 0.6))
        ctx.report(0.6)
        ctx.check()
        mesh, thickness = extrude_outline(outline, ctx)
        mesh, plate = printable_parts(mesh, outline, thickness, cutout, request, ctx)
        if request.texture:
            mesh = refine_for_colour(mesh, request.face_budget)
        ctx.report(1.0)
        return ShapeResult(
            mesh=mesh,
            picture_box=frame.box,
            stands=False,
            meta={
                "thickness": round(thickness, 6),
                "parts": len(outline.geoms),
                "holes": sum(len(p.interiors) for p in outline.geoms),
                "backing_plate": None if plate is None else round(plate, 6),
            },
        )


def trace_outline(
    mask: np.ndarray,
    frame: PictureFrame,
    quality: int,
    ctx: StageContext,
    span: tuple[float, float] = (0.0, 1.0),
) -> MultiPolygon:
    """The mask's outline as polygons with holes, in model units (see PictureFrame).

    Progress is reported within `span` of the calling stage's own 0..1.
    """
    lo, hi = span
    from scipy.ndimage import gaussian_filter

    rows_any = np.flatnonzero(mask.any(axis=1))
    cols_any = np.flatnonzero(mask.any(axis=0))
    if rows_any.size == 0:
        raise StageFailed("the mask is empty: no foreground to extrude", stage=ctx.stage)
    # The mask's bounding box with a 2-pixel margin, so the outline closes inside the grid.
    r0, r1 = max(rows_any[0] - 2, 0), min(rows_any[-1] + 3, mask.shape[0])
    c0, c1 = max(cols_any[0] - 2, 0), min(cols_any[-1] + 3, mask.shape[1])
    crop = mask[r0:r1, c0:c1]
    longest = min(quality_resolution(quality, GRID_MIN, GRID_MAX), max(max(crop.shape), GRID_FLOOR))
    shape = grid_shape(crop.shape[0], crop.shape[1], longest)
    field = gaussian_filter(coverage_field(crop, shape), sigma=0.5)
    ctx.report(lo + (hi - lo) / 3)
    ctx.check()

    # Sample (i, j) of the field is the centre of its cell over the crop, in picture pixels.
    step_r, step_c = crop.shape[0] / shape[0], crop.shape[1] / shape[1]
    rings = []
    for ring in trace_contours(field, 0.5):
        x, y = frame.to_xy(r0 + (ring[:, 0] + 0.5) * step_r, c0 + (ring[:, 1] + 0.5) * step_c)
        rings.append(np.column_stack([x, y]))
    ctx.report(lo + 2 * (hi - lo) / 3)
    ctx.check()

    cell = max(step_r, step_c) * frame.unit
    bbox_area = crop.shape[0] * crop.shape[1] * frame.unit**2
    outline = polygons_from_rings(
        rings,
        min_area=max(SPECK_CELLS * cell * cell, SPECK_SHARE * bbox_area),
        tolerance=TOLERANCE_CELLS * cell,
    )
    if outline.is_empty:
        raise StageFailed("the mask has only specks: nothing large enough to extrude", stage=ctx.stage)
    return outline


def extrude_outline(outline: MultiPolygon, ctx: StageContext) -> tuple[trimesh.Trimesh, float]:
    """A closed solid from z = 0 (back) to z = thickness (front) over the outline."""

    x0, y0, x1, y1 = outline.bounds
    thickness = THICKNESS_RATIO * max(x1 - x0, y1 - y0)
    solid = cross_section(outline).extrude(thickness)
    if solid.is_empty():
        raise StageFailed(f"extrusion produced no solid ({solid.status()})", stage=ctx.stage)
    return manifold_to_trimesh(solid), thickness


def refine_for_colour(mesh: trimesh.Trimesh, face_budget: int) -> trimesh.Trimesh:
    """The same closed solid with vertices spread over its faces, so the texture stage's vertex
    colours can follow the picture inside the outline (see COLOUR_BUDGET_SHARE)."""
    size = float(np.ptp(mesh.vertices, axis=0).max())
    area = float(mesh.area)
    length = max(size / COLOUR_GRID, float(np.sqrt(area / (COLOUR_BUDGET_SHARE * face_budget * 0.433))))
    if float(mesh.edges_unique_length.max()) <= length:
        return mesh
    return plain_trimesh(trimesh_to_manifold(mesh).refine_to_length(length))
