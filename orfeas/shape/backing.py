"""Loose parts joined by a thin backing plate under them, so a flat piece prints as one body.

A banner's letters or a logo's separate marks extruded on their own are loose, fragile pieces
(the issue's banner: 16 letters, 3 mm tall at 50 mm wide). When an outline has two parts or
more, a plate goes under them, from z = 0 to 40 % of the parts' thickness, so the parts stand
out from it by the rest:

- its outline is the parts grown by 3 % of the outline's longest side (3 mm on a 100 mm piece)
  and merged: letters closer than twice that join into one word-shaped plate; if the grown
  parts are still apart, the plate is their convex hull (a plate with a bridge of its own
  would be as fragile as the parts);
- its holes are filled: a plate is a board to hold the parts, not a stencil.

`request.backing` False keeps the parts loose. The joined solid is then reviewed at its printed
size (orfeas/shape/printability.py): strokes under the nozzle's width and slabs under two lines.
A relief cut to an outline of several parts gets the same plate, as thick as its own base.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orfeas.shape.polygons import cross_section, manifold_to_trimesh, trimesh_to_manifold
from orfeas.shape.printability import review_printability

if TYPE_CHECKING:
    import trimesh
    from shapely.geometry import MultiPolygon, Polygon

    from orfeas.request import JobRequest
    from orfeas.types import Cutout, StageContext

PLATE_RATIO = 0.4  # of the parts' thickness
PAD_RATIO = 0.03  # of the outline's longest side


def backing_outline(outline: MultiPolygon, pad_ratio: float = PAD_RATIO) -> Polygon | None:
    """The plate under an outline of two parts or more (see the module's docstring), else None."""
    import shapely
    from shapely.geometry import Polygon
    from shapely.geometry.polygon import orient

    parts = [p for p in outline.geoms if not p.is_empty]
    if len(parts) < 2:
        return None
    x0, y0, x1, y1 = outline.bounds
    pad = pad_ratio * max(x1 - x0, y1 - y0)
    grown = shapely.union_all([p.buffer(pad, quad_segs=8) for p in parts])
    if grown.geom_type != "Polygon":
        grown = grown.convex_hull
    return orient(Polygon(grown.exterior), sign=1.0)  # counter-clockwise, as cross_section wants


def join_with_plate(mesh: trimesh.Trimesh, outline: MultiPolygon, thickness: float) -> trimesh.Trimesh | None:
    """The solid united with a plate from z = 0 to `thickness` under its outline's parts; None when
    the outline is one part (no plate needed)."""

    plate = plate_board(outline)
    if plate is None:
        return None
    board = cross_section(plate).extrude(thickness)
    return manifold_to_trimesh(trimesh_to_manifold(mesh) + board)


def printable_parts(
    mesh: trimesh.Trimesh,
    outline: MultiPolygon,
    thickness: float,
    cutout: Cutout,
    request: JobRequest,
    ctx: StageContext,
) -> tuple[trimesh.Trimesh, float | None]:
    """A flat piece's solid (z from 0 to `thickness` over `outline`) with its loose parts joined by
    a plate, reviewed for printing; returns the solid and the plate's thickness (None: no plate)."""
    plate_thickness = backing_thickness(request, thickness)
    if plate_thickness is not None:
        joined = join_with_plate(mesh, outline, plate_thickness)
        mesh, plate_thickness = (mesh, None) if joined is None else (joined, plate_thickness)
    review_parts(mesh, outline, thickness, plate_thickness, cutout, request, ctx)
    return mesh, plate_thickness


def backing_thickness(request: JobRequest, thickness: float) -> float | None:
    """The plate's thickness under parts `thickness` thick, or None when the request keeps them loose."""
    return PLATE_RATIO * thickness if request.backing else None


def plate_board(outline: MultiPolygon, exclude: Polygon | MultiPolygon | None = None) -> MultiPolygon | None:
    """The plate's outline under `outline` less `exclude` (parts that carry their own solid), as
    counter-clockwise polygons; None when the outline needs no plate."""
    from shapely.geometry import MultiPolygon
    from shapely.geometry.polygon import orient

    plate = backing_outline(outline)
    if plate is None:
        return None
    board = plate if exclude is None or exclude.is_empty else plate.difference(exclude)
    polygons = [orient(p, sign=1.0) for p in getattr(board, "geoms", [board]) if p.geom_type == "Polygon"]
    return MultiPolygon(polygons) if polygons else None


def review_parts(
    mesh: trimesh.Trimesh,
    outline: MultiPolygon,
    thickness: float,
    plate_thickness: float | None,
    cutout: Cutout,
    request: JobRequest,
    ctx: StageContext,
) -> None:
    """Warn about what would not print at the asked size (see orfeas/shape/printability.py)."""
    layers = {"piece": thickness}
    if plate_thickness is not None:
        layers["backing plate"] = plate_thickness
    review_printability(mesh, outline, cutout, request, ctx, stands=False, layers=layers)
