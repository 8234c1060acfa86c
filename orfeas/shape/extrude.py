"""`extrude`: the mask's outline as a flat solid of constant thickness, holes kept.

For logos, badges, lettering and cookie cutters. The outline is traced with marching squares on
a working grid over the mask's bounding box (size from the request's quality), cleaned into
polygons with holes, and extruded by manifold3d, whose output is a closed 2-manifold by
construction. Thickness: 8 % of the outline's longest side (8 mm on a 100 mm badge — stiff
enough to print and handle, thin enough to read as a flat piece).

Colour: a flat-colour picture (orfeas.texture.palette finds its few real colours) is cut into
colour regions that tile the outline exactly, traced on the same grid (orfeas.shape.regions);
each colour becomes a closed solid of its own, raised above the base by colour unless the
request asks for a flat slab, and every face carries its region's colour: crisp colours at about
a thousand faces (the sample emblem at quality 5: 1.1k faces, where refining the caps for vertex
colours took 37k). A photo extruded as a logo has no palette: its solid is refined (still
closed) so the picture's colours, projected onto vertices later, can follow it inside the
outline, spending up to half the face budget on it.

Steps of `generate`, in order: trace the outline; find the palette; build the solid. A step that
changes the outline (a backing plate joining loose parts) goes between the first two: the colour
regions tile whatever outline they are given, area no colour covers going to the base colour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from orfeas.errors import StageFailed
from orfeas.shape.backing import backing_thickness, plate_board, printable_parts, review_parts
from orfeas.shape.contours import trace_contours
from orfeas.shape.polygons import (
    cross_section,
    manifold_to_trimesh,
    plain_trimesh,
    polygons_from_rings,
    trimesh_to_manifold,
)
from orfeas.shape.raster import PictureFrame, coverage_field, grid_shape, quality_resolution
from orfeas.shape.regions import compose, partition, region_heights, region_solids, union_solid
from orfeas.texture.palette import Palette, find_palette
from orfeas.types import SettingsBackend, ShapeResult

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


class ExtrudeBackend(SettingsBackend):
    name = "extrude"

    def generate(self, cutout: Cutout, request: JobRequest, ctx: StageContext) -> ShapeResult:
        frame = PictureFrame(cutout.mask.shape[1], cutout.mask.shape[0])
        outline = trace_outline(cutout.mask, frame, request.quality, ctx, span=(0.0, 0.4))
        ctx.report(0.4)
        ctx.check()
        palette = None
        if request.texture or request.color_relief:
            palette = find_palette(cutout, request.max_colors)
        ctx.report(0.5)
        ctx.check()
        meta: dict[str, Any] = {
            "parts": len(outline.geoms),
            "holes": sum(len(p.interiors) for p in outline.geoms),
        }
        face_colours = None
        if palette is not None and len(palette) > 1:
            mesh, face_colours, thickness, plate = colour_regions_solid(
                cutout.mask, frame, outline, palette, request, ctx
            )
            review_parts(mesh, outline, thickness, plate, cutout, request, ctx)
        else:
            mesh, thickness = extrude_outline(outline, ctx)
            mesh, plate = printable_parts(mesh, outline, thickness, cutout, request, ctx)
            if palette is not None and request.texture:
                face_colours = _rgba(np.repeat(palette.colours, len(mesh.faces), axis=0))
            elif request.texture:
                mesh = refine_for_colour(mesh, request.face_budget)  # a photo: colours projected later
        meta["backing_plate"] = None if plate is None else round(plate, 6)
        meta["colors"] = len(palette) if palette is not None else 0
        ctx.report(1.0)
        return ShapeResult(
            mesh=mesh,
            picture_box=frame.box,
            stands=False,
            meta={"thickness": round(thickness, 6), **meta},
            face_colours=face_colours if request.texture else None,
        )


@dataclass(frozen=True)
class WorkingGrid:
    """The grid outlines are traced on: `shape` cells over the mask's bounding box (plus a 2-pixel
    margin, so outlines close inside it) from row r0, column c0, `crop` pixels in size."""

    r0: int
    c0: int
    crop: tuple[int, int]
    shape: tuple[int, int]

    @classmethod
    def of(cls, mask: np.ndarray, quality: int) -> WorkingGrid | None:
        rows_any = np.flatnonzero(mask.any(axis=1))
        cols_any = np.flatnonzero(mask.any(axis=0))
        if rows_any.size == 0:
            return None
        r0, r1 = max(rows_any[0] - 2, 0), min(rows_any[-1] + 3, mask.shape[0])
        c0, c1 = max(cols_any[0] - 2, 0), min(cols_any[-1] + 3, mask.shape[1])
        crop = (int(r1 - r0), int(c1 - c0))
        longest = min(quality_resolution(quality, GRID_MIN, GRID_MAX), max(max(crop), GRID_FLOOR))
        return cls(int(r0), int(c0), crop, grid_shape(crop[0], crop[1], longest))

    def field(self, mask: np.ndarray) -> np.ndarray:
        """The mask's coverage over the grid, lightly smoothed (σ = half a cell). A float mask is
        a coverage already (a colour's share of each pixel) and is resampled as it is."""
        from PIL import Image
        from scipy.ndimage import gaussian_filter

        crop = mask[self.r0 : self.r0 + self.crop[0], self.c0 : self.c0 + self.crop[1]]
        if crop.dtype == bool:
            coverage: np.ndarray = gaussian_filter(coverage_field(crop, self.shape), sigma=0.5)
            return coverage
        rows, cols = self.shape
        resample = Image.Resampling.BOX if rows < crop.shape[0] else Image.Resampling.BILINEAR
        values = np.asarray(
            Image.fromarray(np.asarray(crop, dtype=np.float32), "F").resize((cols, rows), resample)
        )
        result: np.ndarray = gaussian_filter(values, sigma=0.5)
        return result

    def rings(self, field: np.ndarray, frame: PictureFrame) -> list[np.ndarray]:
        """Where `field` crosses 0.5, as (x, y) rings in model units."""
        # Sample (i, j) of the field is the centre of its cell over the crop, in picture pixels.
        step_r, step_c = self.crop[0] / self.shape[0], self.crop[1] / self.shape[1]
        rings = []
        for ring in trace_contours(field, 0.5):
            x, y = frame.to_xy(self.r0 + (ring[:, 0] + 0.5) * step_r, self.c0 + (ring[:, 1] + 0.5) * step_c)
            rings.append(np.column_stack([x, y]))
        return rings

    def cell(self, frame: PictureFrame) -> float:
        return max(self.crop[0] / self.shape[0], self.crop[1] / self.shape[1]) * frame.unit

    def speck_area(self, frame: PictureFrame) -> float:
        bbox_area = self.crop[0] * self.crop[1] * frame.unit**2
        return max(SPECK_CELLS * self.cell(frame) ** 2, SPECK_SHARE * bbox_area)


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
    grid = WorkingGrid.of(mask, quality)
    if grid is None:
        raise StageFailed("the mask is empty: no foreground to extrude", stage=ctx.stage)
    field = grid.field(mask)
    ctx.report(lo + (hi - lo) / 3)
    ctx.check()
    rings = grid.rings(field, frame)
    ctx.report(lo + 2 * (hi - lo) / 3)
    ctx.check()
    outline = polygons_from_rings(
        rings, min_area=grid.speck_area(frame), tolerance=TOLERANCE_CELLS * grid.cell(frame)
    )
    if outline.is_empty:
        raise StageFailed("the mask has only specks: nothing large enough to extrude", stage=ctx.stage)
    return outline


def colour_regions_solid(
    mask: np.ndarray,
    frame: PictureFrame,
    outline: MultiPolygon,
    palette: Palette,
    request: JobRequest,
    ctx: StageContext,
) -> tuple[trimesh.Trimesh, np.ndarray, float, float | None]:
    """The outline cut into the palette's colour regions (see orfeas.shape.regions), one closed
    solid per colour, raised by colour unless the request asks for a flat slab: (mesh, RGBA per
    face, base thickness, backing plate thickness or None). With colours asked the solids are kept
    side by side (each a part of the 3MF); without, they are joined into one. Loose parts get a
    backing plate (orfeas.shape.backing) in the base colour, united with the base colour's solid."""
    grid = WorkingGrid.of(mask, request.quality)
    assert grid is not None  # the outline was traced from this mask
    min_area, tolerance = grid.speck_area(frame), TOLERANCE_CELLS * grid.cell(frame)
    traced = []
    for i in range(len(palette)):
        rings = grid.rings(grid.field(palette.membership(i)), frame)
        traced.append(polygons_from_rings(rings, min_area=min_area, tolerance=tolerance))
        ctx.check()
    ctx.report(0.7)
    regions = partition(
        outline, traced, label_lookup(palette.labels, frame), min_area=min_area, tolerance=tolerance
    )
    ctx.report(0.85)
    ctx.check()
    x0, y0, x1, y1 = outline.bounds
    size = max(x1 - x0, y1 - y0)
    thickness = THICKNESS_RATIO * size
    if request.color_relief:
        heights = region_heights(regions, palette.colours, thickness, size)
    else:
        heights = np.full(len(regions), thickness)
    labels, solids = region_solids(regions, heights)
    if not solids:
        raise StageFailed("the colour regions produced no solid", stage=ctx.stage)
    plate = _add_plate(outline, regions, labels, solids, backing_thickness(request, thickness))
    if not request.texture:
        return union_solid(solids), np.zeros((0, 4), np.uint8), thickness, plate
    mesh, face_labels = compose(labels, solids)
    return mesh, _rgba(palette.colours[face_labels]), thickness, plate


def _add_plate(
    outline: MultiPolygon,
    regions: list[MultiPolygon],
    labels: list[int],
    solids: list[trimesh.Trimesh],
    plate_thickness: float | None,
) -> float | None:
    """Unite a backing plate `plate_thickness` thick with the base colour's solid (the largest
    region), in place; the plate leaves out the other colours' regions, whose solids stand on z = 0
    beside it. Returns the plate's thickness, or None when there is none."""
    import shapely

    if plate_thickness is None:
        return None
    base = max(labels, key=lambda i: regions[i].area)
    others = shapely.union_all([regions[i] for i in labels if i != base])
    board = plate_board(outline, exclude=others)
    if board is None:
        return None
    j = labels.index(base)
    joined = trimesh_to_manifold(solids[j]) + cross_section(board).extrude(plate_thickness)
    solids[j] = manifold_to_trimesh(joined)
    return plate_thickness


def label_lookup(labels: np.ndarray, frame: PictureFrame) -> Callable[[np.ndarray], np.ndarray]:
    """(n, 2) model points → the label of the pixel under each (-1 outside the picture)."""

    def lookup(points: np.ndarray) -> np.ndarray:
        col = np.floor(points[:, 0] / frame.unit).astype(np.int64)
        row = np.floor(frame.height_px - points[:, 1] / frame.unit).astype(np.int64)
        ok = (row >= 0) & (row < labels.shape[0]) & (col >= 0) & (col < labels.shape[1])
        out = np.full(len(points), -1, dtype=np.int64)
        out[ok] = labels[row[ok], col[ok]]
        return out

    return lookup


def _rgba(rgb: np.ndarray) -> np.ndarray:
    out = np.full((len(rgb), 4), 255, dtype=np.uint8)
    out[:, :3] = rgb
    return out


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
