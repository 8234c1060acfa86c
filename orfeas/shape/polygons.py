"""Outline rings → clean polygons with holes → manifold3d cross-sections → clean trimesh solids.

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

# Of a solid's size: how far clean-up may move its surface (see manifold_to_trimesh).
SIMPLIFY_TOLERANCE = 1e-5
# Of a solid's size: a triangle flatter than this is a sliver (trimesh's own test, at 1e-8,
# would call it degenerate on a model one unit across).
SLIVER_HEIGHT = 1e-7


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


def trimesh_to_manifold(mesh: trimesh.Trimesh) -> Manifold:
    """A closed trimesh mesh as a manifold3d solid (empty when manifold3d finds it is not one)."""
    from manifold3d import Manifold, Mesh64

    return Manifold(
        Mesh64(
            vert_properties=np.array(mesh.vertices, dtype=np.float64, order="C"),
            tri_verts=np.array(mesh.faces, dtype=np.uint64, order="C"),
        )
    )


def plain_trimesh(solid: Manifold) -> trimesh.Trimesh:
    """A manifold3d solid's triangles as a trimesh mesh, as they are (see manifold_to_trimesh)."""
    import trimesh

    out = solid.to_mesh64()
    return trimesh.Trimesh(
        vertices=np.asarray(out.vert_properties)[:, :3],
        faces=np.asarray(out.tri_verts, dtype=np.int64),
        process=False,
    )


def manifold_to_trimesh(solid: Manifold) -> trimesh.Trimesh:
    """A manifold3d solid as a trimesh mesh, without zero-area or needle triangles.

    A cap whose holes line up (a dotted plate, letters on a baseline) can triangulate into
    triangles of three collinear vertices, and a boolean cut where an outline passes within
    1e-7 of a grid vertex leaves needles that narrow. A later step that drops degenerate faces
    would open holes there, so they go now: the solid is rebuilt as one plain mesh (without the
    per-input runs that make manifold3d keep the seams between its inputs) and simplified with
    a tolerance of 1e-5 of its size (1 µm on a 100 mm print), which moves no surface further.
    """
    import trimesh

    mesh = plain_trimesh(solid)
    if len(mesh.faces) == 0:
        return trimesh.Trimesh()
    size = float(np.ptp(mesh.vertices, axis=0).max())
    result = plain_trimesh(trimesh_to_manifold(mesh).simplify(SIMPLIFY_TOLERANCE * size))
    result = collapse_short_edges(result, SIMPLIFY_TOLERANCE * size)
    return flip_slivers(result, SLIVER_HEIGHT * size)


def collapse_short_edges(mesh: trimesh.Trimesh, length: float) -> trimesh.Trimesh:
    """Merge the ends of edges shorter than `length`, dropping the faces that vanish.

    manifold3d's simplification keeps a few such edges where a boolean's seam runs; merging
    them is an edge collapse, which keeps a closed mesh closed. The result is checked (closed,
    consistently wound, no zero-area face) and the input returned unchanged if it fails.
    """
    import trimesh

    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    for _ in range(4):  # each pass merges disjoint edges; chains of short edges need a few
        edges = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
        short = edges[np.linalg.norm(vertices[edges[:, 0]] - vertices[edges[:, 1]], axis=1) < length]
        if len(short) == 0:
            break
        target = np.arange(len(vertices))
        touched: set[int] = set()
        for a, b in np.sort(short, axis=1).tolist():
            if a not in touched and b not in touched:
                target[b] = a
                touched.update((a, b))
        faces = target[faces]
        faces = faces[
            (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 2] != faces[:, 0])
        ]
    if faces.shape == mesh.faces.shape:
        return mesh
    merged = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    merged.remove_unreferenced_vertices()
    if merged.is_watertight and merged.is_winding_consistent and np.all(merged.area_faces > 0):
        return merged
    return mesh


def flip_slivers(mesh: trimesh.Trimesh, height: float) -> trimesh.Trimesh:
    """Flip the longest edge of every sliver (three all but collinear vertices) with its neighbour.

    A cap's triangulation gives slivers where vertices of different holes nearly line up; the
    flip replaces the sliver and its neighbour by two proper triangles over the same quad, so
    the mesh stays closed. A flip is made only where both new triangles are proper; a sliver
    next to a sliver waits for the next round. The result is checked and the input returned
    unchanged if it is not closed.
    """
    import trimesh
    from trimesh.triangles import nondegenerate

    faces = np.array(mesh.faces)
    vertices = np.asarray(mesh.vertices)
    slivers = np.flatnonzero(~nondegenerate(vertices[faces], height=height))
    if slivers.size == 0:
        return mesh
    owner = _EdgeOwners(faces, len(vertices))
    for _ in range(4):
        flips = 0
        for f in slivers.tolist():
            tri = faces[f]
            if nondegenerate(vertices[tri][None], height=height)[0]:
                continue  # already replaced by an earlier flip in this round
            lengths = np.linalg.norm(vertices[tri[[1, 2, 0]]] - vertices[tri], axis=1)
            k = int(np.argmax(lengths))  # the longest edge runs tri[k] → tri[k + 1]
            u, v, w = int(tri[k]), int(tri[(k + 1) % 3]), int(tri[(k + 2) % 3])
            g = owner.get(v, u)
            if g is None:
                continue
            x = next(int(p) for p in faces[g] if p not in (u, v))
            if owner.get(w, x) is not None or owner.get(x, w) is not None:
                continue  # the new diagonal exists already: the flip would pinch the surface
            new = np.array([(u, x, w), (x, v, w)])
            if not nondegenerate(vertices[new], height=height).all():
                continue
            for a, b in ((u, v), (v, w), (w, u), (v, u), (u, x), (x, v)):
                owner.drop(a, b)
            faces[f], faces[g] = new
            for face, (a, b, c) in ((f, new[0]), (g, new[1])):
                owner.set(int(a), int(b), face)
                owner.set(int(b), int(c), face)
                owner.set(int(c), int(a), face)
            flips += 1
        slivers = np.flatnonzero(~nondegenerate(vertices[faces], height=height))
        if flips == 0 or slivers.size == 0:
            break
    flipped = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    if flipped.is_watertight and flipped.is_winding_consistent:
        return flipped
    return mesh


class _EdgeOwners:
    """Directed edge (a, b) → the face that holds it: a sorted array, plus the edits since."""

    def __init__(self, faces: np.ndarray, n_vertices: int) -> None:
        directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2).astype(np.int64)
        self._n = n_vertices
        keys = directed[:, 0] * n_vertices + directed[:, 1]
        self._order = np.argsort(keys, kind="stable")
        self._keys = keys[self._order]
        self._edits: dict[tuple[int, int], int | None] = {}

    def get(self, a: int, b: int) -> int | None:
        if (a, b) in self._edits:
            return self._edits[(a, b)]
        i = int(np.searchsorted(self._keys, a * self._n + b))
        if i < len(self._keys) and self._keys[i] == a * self._n + b:
            return int(self._order[i]) // 3
        return None

    def set(self, a: int, b: int, face: int) -> None:
        self._edits[(a, b)] = face

    def drop(self, a: int, b: int) -> None:
        self._edits[(a, b)] = None
