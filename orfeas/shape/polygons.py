"""Outline rings → clean polygons with holes, and those polygons as a manifold3d CrossSection.

Rings from marching squares never cross, so a ring's nesting depth (how many rings contain it)
says what it is: even depth → an outer boundary, odd → a hole of its smallest container.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.polygon import orient

if TYPE_CHECKING:
    import trimesh
    from manifold3d import CrossSection, Manifold


def polygons_from_rings(rings: Sequence[np.ndarray], *, min_area: float, tolerance: float) -> MultiPolygon:
    """Nest (x, y) rings into polygons with holes; drop islands and fill holes under `min_area`.

    Outlines are simplified (Douglas–Peucker, topology kept) by `tolerance` and made valid.
    """
    kept = [np.asarray(r, dtype=np.float64) for r in rings if len(r) >= 3]
    polys = np.array([Polygon(r) for r in kept], dtype=object)
    areas = shapely.area(polys) if len(kept) else np.zeros(0)
    big = np.flatnonzero(areas >= min_area)
    if big.size == 0:
        return MultiPolygon()
    polys, areas = polys[big], areas[big]
    kept = [kept[i] for i in big]

    # Which rings contain each ring, tested on one of its own points (a ring's point lies on its
    # own boundary, so a ring never counts as inside itself). The tree keeps this near n log n.
    reps = shapely.points(np.array([r[0] for r in kept]))
    inner, outer = shapely.STRtree(polys).query(reps, predicate="within")
    depth = np.bincount(inner, minlength=len(kept))

    # A hole's parent is the smallest ring that contains it.
    parent = np.full(len(kept), -1)
    order = np.lexsort((-areas[outer], inner))  # per inner ring, containers by falling area
    parent[inner[order]] = outer[order]  # the last write per ring is its smallest container

    shells: dict[int, list[int]] = {int(i): [] for i in np.flatnonzero(depth % 2 == 0)}
    for j in np.flatnonzero(depth % 2 == 1):
        shells[int(parent[j])].append(int(j))

    pieces: list[Polygon] = []
    for shell, holes in shells.items():
        poly = Polygon(kept[shell], [kept[h] for h in holes])
        poly = poly.simplify(tolerance, preserve_topology=True)
        pieces.extend(_valid_polygons(poly))
    merged = shapely.union_all(pieces) if pieces else Polygon()
    return _clean(merged, min_area)


def _valid_polygons(geom: shapely.Geometry) -> list[Polygon]:
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
        if not geom.is_valid:  # make_valid is exact; buffer(0) is the classic fallback
            geom = geom.buffer(0)
    if isinstance(geom, Polygon):
        return [geom] if not geom.is_empty else []
    return [g for part in getattr(geom, "geoms", []) for g in _valid_polygons(part)]


def _clean(geom: shapely.Geometry, min_area: float) -> MultiPolygon:
    """Polygons only, each oriented (outer CCW, holes CW), with small islands and holes removed."""
    out: list[Polygon] = []
    for poly in _valid_polygons(geom):
        if poly.area < min_area:
            continue
        holes = [h for h in poly.interiors if Polygon(h).area >= min_area]
        out.append(orient(Polygon(poly.exterior, holes), sign=1.0))
    return MultiPolygon(out)


def cross_section(shape: MultiPolygon) -> CrossSection:
    """The polygons as a manifold3d CrossSection (positive fill: outer CCW, holes CW)."""
    from manifold3d import CrossSection, FillRule

    contours = []
    for poly in shape.geoms:
        contours.append(np.asarray(poly.exterior.coords, dtype=np.float64)[:-1])
        contours.extend(np.asarray(h.coords, dtype=np.float64)[:-1] for h in poly.interiors)
    return CrossSection(contours, FillRule.Positive)


def manifold_to_trimesh(solid: Manifold) -> trimesh.Trimesh:
    """A manifold3d solid as a trimesh mesh, without zero-area triangles.

    Triangulating a cap whose holes line up (a dotted plate, letters on a baseline) can give
    triangles of three collinear vertices. Rebuilding the Manifold from its own mesh makes
    manifold3d collapse those degenerate triangles, keeping the solid closed; a later step that
    drops degenerate faces would otherwise open holes in it.
    """
    import trimesh
    from manifold3d import Manifold

    out = Manifold(solid.to_mesh64()).to_mesh64()
    return trimesh.Trimesh(
        vertices=np.asarray(out.vert_properties)[:, :3],
        faces=np.asarray(out.tri_verts, dtype=np.int64),
        process=False,
    )
