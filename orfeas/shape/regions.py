"""Colour regions of an outline: polygons per palette colour that tile the outline exactly, and
one closed solid per colour, raised by colour so the design reads on a one-colour print.

Tiling: each colour's outline is traced on the same working grid as the mask's (marching squares
on the colour's coverage field), but traced boundaries of neighbouring colours never coincide
exactly, and neither meets the mask's outline exactly. So all of them are noded into one
arrangement (shapely.union_all of the boundaries, then polygonize); every face of it inside the
outline goes to the colour that contains it (or, in a gap or an overlap, the colour of the
picture under it), and each colour is the union of its faces. Faces share their edges exactly,
so neighbouring colours share every boundary vertex: no gap, no overlap, and the outline is
their union. The shared boundaries are then simplified together (shapely.coverage_simplify,
which keeps them shared), the outline's own edges as traced.

Heights (see `region_heights`): the largest colour is the base slab at the outline's thickness;
each other colour stands one step higher than the last, the darkest highest — ink on paper
(0.8 mm a step on a 100 mm part: four 0.2 mm layers, enough to see and to feel).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon

from orfeas.shape.polygons import _clean, _valid_polygons, cross_section, manifold_to_trimesh

if TYPE_CHECKING:
    import trimesh

# A step between colour heights, as a share of the outline's longest side (0.8 mm at 100 mm);
# with many colours the steps shrink so all of them stay within RELIEF_SPAN, but never below
# MIN_STEP (0.4 mm at 100 mm: two layers).
STEP = 0.008
RELIEF_SPAN = 0.024
MIN_STEP = 0.004


def partition(
    outline: MultiPolygon,
    traced: Sequence[MultiPolygon],
    colour_at: Callable[[np.ndarray], np.ndarray],
    *,
    min_area: float,
    tolerance: float,
) -> list[MultiPolygon]:
    """Polygons per colour (index = colour) that tile `outline`: pairwise disjoint, union = outline.

    `traced[i]` is colour i's own traced outline; `colour_at` gives the picture's colour label at
    (n, 2) model points (-1 where the picture has none: such faces go to colour 0, the base).
    Pieces smaller than `min_area` join the neighbour they share most boundary with.
    """
    k = len(traced)
    lines = [outline.boundary] + [t.boundary for t in traced if not t.is_empty]
    faces = np.array(
        list(shapely.polygonize(shapely.get_parts(shapely.union_all(lines))).geoms), dtype=object
    )
    if len(faces) == 0:
        return [outline] + [MultiPolygon()] * (k - 1)
    points = shapely.point_on_surface(faces)
    faces, points = faces[shapely.within(points, outline)], points[shapely.within(points, outline)]

    owner = colour_at(shapely.get_coordinates(points))
    owner = np.where(owner < 0, 0, owner)
    # A face inside exactly one traced colour belongs to it; gaps and overlaps keep the picture's.
    inside = np.zeros((len(faces), k), dtype=bool)
    for i, t in enumerate(traced):
        if not t.is_empty:
            inside[:, i] = shapely.within(points, t)
    single = inside.sum(axis=1) == 1
    owner[single] = np.argmax(inside[single], axis=1)

    pieces = [(int(owner[j]), faces[j]) for j in range(len(faces))]
    regions = _merge(pieces, k)
    regions = _absorb_small(regions, min_area)
    return _simplified(regions, tolerance, min_area)


def _merge(pieces: list[tuple[int, Polygon]], k: int) -> list[list[Polygon]]:
    """Each colour's faces unioned (exact: they share edges), as separate polygons."""
    out: list[list[Polygon]] = []
    for i in range(k):
        own = [p for c, p in pieces if c == i]
        merged = shapely.union_all(own) if own else Polygon()
        out.append(_valid_polygons(merged))
    return out


def _absorb_small(regions: list[list[Polygon]], min_area: float) -> list[list[Polygon]]:
    """Polygons under `min_area` go to the colour they share the longest boundary with."""
    for _ in range(3):  # a speck next to a speck moves on the next pass
        moved = False
        for i in range(len(regions)):
            keep = []
            for poly in regions[i]:
                if poly.area >= min_area:
                    keep.append(poly)
                    continue
                best, shared = -1, 0.0
                for j, others in enumerate(regions):
                    if j == i or not others:
                        continue
                    length = shapely.intersection(
                        poly.boundary, shapely.union_all([o.boundary for o in others])
                    ).length
                    if length > shared:
                        best, shared = j, length
                if best < 0:
                    keep.append(poly)  # an island of its own: it stays
                    continue
                regions[best] = _valid_polygons(shapely.union_all([*regions[best], poly]))
                moved = True
            regions[i] = keep
        if not moved:
            break
    return regions


def _simplified(regions: list[list[Polygon]], tolerance: float, min_area: float) -> list[MultiPolygon]:
    """The colours' shared boundaries simplified together (they stay shared); the outline kept."""
    polys = [p for ps in regions for p in ps]
    owner = [i for i, ps in enumerate(regions) for _ in ps]
    if not polys:
        return [MultiPolygon() for _ in regions]
    try:
        simple = shapely.coverage_simplify(np.array(polys, dtype=object), tolerance, simplify_boundary=False)
    except shapely.errors.GEOSException:  # not a clean coverage after all: keep the faces as noded
        simple = np.array(polys, dtype=object)
    out: list[list[Polygon]] = [[] for _ in regions]
    for i, poly in zip(owner, simple, strict=True):
        out[i].extend(_valid_polygons(poly))
    return [_clean(MultiPolygon(ps), 0.0) if ps else MultiPolygon() for ps in out]


def region_heights(
    regions: Sequence[MultiPolygon], colours: np.ndarray, thickness: float, size: float
) -> np.ndarray:
    """Top height of each colour: the largest at `thickness`, the others a step apart above it,
    lightest lowest, darkest highest (`size`: the outline's longest side)."""
    from orfeas.texture.palette import srgb_to_lab

    k = len(regions)
    heights = np.full(k, thickness)
    if k < 2:
        return heights
    areas = np.array([r.area for r in regions])
    base = int(np.argmax(areas))
    step = size * max(MIN_STEP, min(STEP, RELIEF_SPAN / (k - 1)))
    lightness = srgb_to_lab(np.asarray(colours, dtype=np.uint8))[:, 0]
    others = [i for i in np.argsort(-lightness, kind="stable").tolist() if i != base]
    for rank, i in enumerate(others, start=1):
        heights[i] = thickness + rank * step
    return heights


def region_solids(
    regions: Sequence[MultiPolygon], heights: np.ndarray
) -> tuple[list[int], list[trimesh.Trimesh]]:
    """One closed solid per non-empty colour, from z = 0 to its height: (colours, solids)."""
    labels, solids = [], []
    for i, region in enumerate(regions):
        if region.is_empty:
            continue
        solid = manifold_to_trimesh(cross_section(region).extrude(float(heights[i])))
        if len(solid.faces):
            labels.append(i)
            solids.append(solid)
    return labels, solids


def union_solid(solids: Sequence[trimesh.Trimesh]) -> trimesh.Trimesh:
    """The colours' solids as one closed solid (their shared walls gone)."""
    from manifold3d import Manifold, OpType

    from orfeas.shape.polygons import trimesh_to_manifold

    return manifold_to_trimesh(Manifold.batch_boolean([trimesh_to_manifold(s) for s in solids], OpType.Add))


def compose(labels: Sequence[int], solids: Sequence[trimesh.Trimesh]) -> tuple[trimesh.Trimesh, np.ndarray]:
    """The solids side by side in one mesh (no vertex shared between two of them) and each face's colour."""
    import trimesh

    offsets = np.cumsum([0] + [len(s.vertices) for s in solids])
    vertices = np.concatenate([np.asarray(s.vertices) for s in solids])
    faces = np.concatenate([np.asarray(s.faces) + offsets[i] for i, s in enumerate(solids)])
    face_labels = np.concatenate(
        [np.full(len(s.faces), c, dtype=np.int64) for c, s in zip(labels, solids, strict=True)]
    )
    return trimesh.Trimesh(vertices=vertices, faces=faces, process=False), face_labels
