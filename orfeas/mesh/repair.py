"""Repair: a clean, consistently wound, outward-facing and (where possible) closed triangle mesh.

Steps, each on plain arrays (vertices, faces, per-vertex colours) so that nothing is recomputed
behind our back:

- `clean`: merge vertices closer than a tolerance (a millionth of the bounding-box diagonal:
  0.1 µm on a 100 mm part, far below any printer's resolution, far above float noise; never two
  of different colours, which are a seam between colour regions), drop
  faces left with fewer than three distinct corners, drop duplicate faces (same corners in any
  order), drop vertices no face uses.
- `fix_winding`: make neighbouring faces traverse their shared edge in opposite directions.
- `close_holes`: triangulate each small boundary loop (ear clipping in the loop's best-fit plane).
- `orient_outward`: flip closed bodies with negative volume, except cavities inside another body.

Zero-area faces with three distinct corners (a vertex lying on the opposite edge) are kept:
removing one would open the surface; decimation, when it runs, collapses them first (zero cost).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

# Merge tolerance as a share of the bounding-box diagonal (see the module docstring).
MERGE_SHARE = 1e-6
# A boundary loop is a hole worth closing when its own bounding-box diagonal is at most this
# share of the mesh's: a gap in a surface, not the rim of an open sheet or bowl, whose cap
# would change the shape rather than repair it.
HOLE_SHARE = 0.5
# Loops longer than this are left open: a real hole is a few dozen edges; thousands mean a
# torn or open surface (and ear clipping is quadratic in the loop length).
HOLE_MAX_EDGES = 5000


@dataclass
class MeshArrays:
    """A triangle mesh as plain arrays; `colours` is (n, 4) uint8 RGBA per vertex or None."""

    vertices: np.ndarray
    faces: np.ndarray
    colours: np.ndarray | None = None

    def subset_vertices(self, keep: np.ndarray, faces: np.ndarray) -> MeshArrays:
        """Keep the vertices `keep` (indices) with `faces` already renumbered to them."""
        colours = None if self.colours is None else self.colours[keep]
        return MeshArrays(self.vertices[keep], faces, colours)


class CleanReport(NamedTuple):
    """What `clean` removed, counted once at its end."""

    merged_vertices: int
    degenerate_faces: int
    duplicate_faces: int
    unreferenced_vertices: int


@dataclass
class HoleReport:
    filled: int = 0
    left_open: int = 0
    boundary_edges_left: int = 0
    nonmanifold_edges: int = 0


def bbox_diagonal(vertices: np.ndarray) -> float:
    if len(vertices) == 0:
        return 0.0
    return float(np.linalg.norm(vertices.max(axis=0) - vertices.min(axis=0)))


# -- clean ------------------------------------------------------------------------------------
def clean(mesh: MeshArrays, *, merge_share: float = MERGE_SHARE) -> tuple[MeshArrays, CleanReport]:
    """Merge close vertices, drop degenerate and duplicate faces and unused vertices."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64).reshape(-1, 3)
    mesh = MeshArrays(vertices, faces, mesh.colours)

    merged = 0
    tolerance = merge_share * bbox_diagonal(vertices)
    if tolerance > 0 and len(vertices) > 1:
        mesh, merged = _merge_close(mesh, tolerance)
    faces = mesh.faces

    degenerate = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])
    if degenerate.any():
        faces = faces[~degenerate]

    keep = _unique_faces(faces, len(mesh.vertices))
    duplicates = len(faces) - len(keep)
    if duplicates:
        faces = faces[keep]

    mesh, unreferenced = drop_unreferenced(MeshArrays(mesh.vertices, faces, mesh.colours))
    return mesh, CleanReport(merged, int(degenerate.sum()), duplicates, unreferenced)


def _merge_close(mesh: MeshArrays, tolerance: float) -> tuple[MeshArrays, int]:
    """Vertices within `tolerance` of each other (transitively) become the lowest-numbered one."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    n = len(mesh.vertices)
    pairs = cKDTree(mesh.vertices).query_pairs(tolerance, output_type="ndarray")
    if mesh.colours is not None and len(pairs):
        # Two vertices at one place in different colours are a colour seam (two colour regions'
        # solids side by side), not a duplicate: merging them would blend the colours.
        pairs = pairs[np.all(mesh.colours[pairs[:, 0]] == mesh.colours[pairs[:, 1]], axis=1)]
    if len(pairs) == 0:
        return mesh, 0
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    # Labels are handed out in order of each group's lowest vertex, so the vertex order is kept.
    _, keep = np.unique(labels, return_index=True)
    return mesh.subset_vertices(keep, labels[mesh.faces]), n - count


def _unique_faces(faces: np.ndarray, n: int) -> np.ndarray:
    """Indices of the faces to keep, in order, when faces with the same corners are one face.

    Copies wound the same way are one face: the first is kept. A face and its reverse are a
    zero-volume flap (quadric decimation leaves such pairs where it folds the surface onto
    itself), whose edges make the mesh non-manifold: they cancel, and both go. In a group the
    majority winding keeps its first face; a tie drops the whole group.
    """
    if len(faces) == 0:
        return np.zeros(0, np.int64)
    _, group, counts = np.unique(
        _row_keys(np.sort(faces, axis=1), n), return_inverse=True, return_counts=True
    )
    if counts.max() == 1:
        return np.arange(len(faces))
    # A face is an even permutation of its sorted corners when exactly two of a<b, b<c, c<a hold.
    a, b, c = faces[:, 0], faces[:, 1], faces[:, 2]
    even = ((a < b).astype(np.int8) + (b < c) + (c < a)) == 2
    sign = np.where(even, 1, -1)
    net = np.bincount(group, sign, minlength=len(counts))
    wanted = np.sign(net)[group]
    candidates = np.flatnonzero((wanted != 0) & (sign == wanted))
    _, first = np.unique(group[candidates], return_index=True)
    return np.sort(candidates[first])


def _row_keys(rows: np.ndarray, n: int) -> np.ndarray:
    """One sortable key per row of non-negative ints below `n`: an int64 while n**k fits in one."""
    k = rows.shape[1]
    if n**k < 2**63:
        keys = rows[:, 0].astype(np.int64)
        for j in range(1, k):
            keys = keys * n + rows[:, j]
        return keys
    contiguous = np.ascontiguousarray(rows, dtype=np.int64)
    return contiguous.view(np.dtype((np.void, 8 * k))).ravel()


def drop_unreferenced(mesh: MeshArrays) -> tuple[MeshArrays, int]:
    n = len(mesh.vertices)
    used = np.zeros(n, bool)
    used[mesh.faces] = True
    unused = n - int(used.sum())
    if unused == 0:
        return mesh, 0
    remap = np.cumsum(used) - 1
    return mesh.subset_vertices(np.flatnonzero(used), remap[mesh.faces]), unused


# -- edges ------------------------------------------------------------------------------------
@dataclass
class EdgeTable:
    """Every directed face edge, grouped by undirected edge (one sort of 3f keys)."""

    directed: np.ndarray  # (3f, 2): face k's edges are rows 3k, 3k+1, 3k+2
    order: np.ndarray  # (3f,): directed edges sorted so that each undirected edge's are together
    starts: np.ndarray  # (e,): where each undirected edge's run begins in `order`
    counts: np.ndarray  # (e,): how many faces use each undirected edge
    group: np.ndarray  # (3f,): undirected edge id of each directed edge

    @classmethod
    def of(cls, faces: np.ndarray) -> EdgeTable:
        directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
        n = int(faces.max()) + 1 if len(faces) else 1
        keys = _row_keys(np.sort(directed, axis=1), n)
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        new_run = np.ones(len(ordered), bool)
        new_run[1:] = ordered[1:] != ordered[:-1]
        starts = np.flatnonzero(new_run)
        counts = np.diff(np.append(starts, len(ordered)))
        group = np.empty(len(ordered), np.int64)
        group[order] = np.cumsum(new_run) - 1
        return cls(directed, order, starts, counts, group)

    def uses(self) -> np.ndarray:
        """For each directed edge, how many faces use its undirected edge."""
        result: np.ndarray = self.counts[self.group]
        return result

    def manifold_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(face, neighbour, same_direction) for every edge shared by exactly two faces."""
        runs = self.starts[self.counts == 2]
        first, second = self.order[runs], self.order[runs + 1]
        forward = self.directed[:, 0] < self.directed[:, 1]
        return first // 3, second // 3, forward[first] == forward[second]

    def bodies(self, f: int) -> np.ndarray:
        """A body id per face: faces are one body when linked through edges (any number of uses)."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        heads = self.order[np.repeat(self.starts, self.counts)]
        graph = coo_matrix((np.ones(len(heads), np.int8), (self.order // 3, heads // 3)), shape=(f, f))
        labels: np.ndarray
        _, labels = connected_components(graph, directed=False)
        return labels


def fix_winding(mesh: MeshArrays, table: EdgeTable | None = None) -> tuple[MeshArrays, int]:
    """Make faces that share an edge cross it in opposite directions; return how many flipped.

    Each face is a pair of nodes (as is, flipped); a shared edge links the states that agree
    across it. One connected-components pass then gives, per body, the flips that agree with
    its first face. Which way a body faces is `orient_outward`'s concern, not this one's.
    Edges with more than two faces constrain nothing; a non-orientable body keeps its winding.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    f = len(mesh.faces)
    if f == 0:
        return mesh, 0
    table = table or EdgeTable.of(mesh.faces)
    if winding_is_consistent(mesh.faces, table):
        return mesh, 0
    a, b, same = table.manifold_pairs()
    # Same direction: a's state s agrees with b's state 1-s; opposite: with b's state s.
    rows = np.concatenate([a, a + f])
    cols = np.concatenate([np.where(same, b + f, b), np.where(same, b, b + f)])
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(2 * f, 2 * f))
    _, state = connected_components(graph, directed=False)
    bodies = table.bodies(f)
    _, root = np.unique(bodies, return_index=True)
    reference = state[root][bodies]  # the component of each body's first face as it is
    flip = (state[f:] == reference) & (state[:f] != reference)
    if not flip.any():
        return mesh, 0
    faces = mesh.faces.copy()
    faces[flip] = faces[flip][:, ::-1]
    return MeshArrays(mesh.vertices, faces, mesh.colours), int(flip.sum())


def winding_is_consistent(faces: np.ndarray, table: EdgeTable | None = None) -> bool:
    """True when every edge shared by two faces is crossed once each way."""
    table = table or EdgeTable.of(faces)
    _, _, same = table.manifold_pairs()
    return not same.any()


# -- holes ------------------------------------------------------------------------------------
def close_holes(
    mesh: MeshArrays,
    table: EdgeTable | None = None,
    *,
    hole_share: float = HOLE_SHARE,
    max_edges: int = HOLE_MAX_EDGES,
) -> tuple[MeshArrays, HoleReport]:
    """Triangulate every small boundary loop, with the winding of the faces around it.

    No vertex is added, so colours need no change. A loop whose projection onto its best-fit
    plane crosses itself cannot be capped without folding the cap: it is left open.
    """
    report = HoleReport()
    if len(mesh.faces) == 0:
        return mesh, report
    table = table or EdgeTable.of(mesh.faces)
    uses = table.uses()
    report.nonmanifold_edges = int((table.counts > 2).sum())
    boundary = table.directed[uses == 1]
    if len(boundary) == 0:
        return mesh, report

    limit = hole_share * bbox_diagonal(mesh.vertices)
    new_faces: list[np.ndarray] = []
    for loop in _boundary_loops(boundary):
        if loop is None:
            report.left_open += 1
            continue
        points = mesh.vertices[loop]
        if len(loop) > max_edges or bbox_diagonal(points) > limit:
            report.left_open += 1
            continue
        triangles = _cap(points)
        if triangles is None:
            report.left_open += 1
            continue
        new_faces.append(loop[triangles])
        report.filled += 1

    faces = mesh.faces
    if new_faces:
        faces = np.concatenate([faces, *new_faces])
    report.boundary_edges_left = len(boundary) - sum(len(f) + 2 for f in new_faces)
    return MeshArrays(mesh.vertices, faces, mesh.colours), report


def _boundary_loops(boundary: np.ndarray) -> list[np.ndarray | None]:
    """Chain directed boundary edges (a→b) into closed loops of vertex indices.

    Where a vertex starts more than one boundary edge (two holes touching at a corner) the
    chaining is ambiguous; the loops through it come back as None (left open).
    """
    starts, counts = np.unique(boundary[:, 0], return_counts=True)
    pinched = set(starts[counts > 1].tolist())
    edges = boundary.tolist()
    following = {a: b for a, b in edges if a not in pinched}
    loops: list[np.ndarray | None] = []
    seen: set[int] = set()
    for start, _ in edges:
        if start in seen or start in pinched:
            continue
        loop = [start]
        seen.add(start)
        current = following.get(start)
        closed = False
        while current is not None:
            if current == start:
                closed = True
                break
            if current in seen or current in pinched:
                break
            loop.append(current)
            seen.add(current)
            current = following.get(current)
        loops.append(np.array(loop, np.int64) if closed and len(loop) >= 3 else None)
    if pinched:
        loops.append(None)
    return loops


def _cap(points: np.ndarray) -> np.ndarray | None:
    """Triangles (indices into the loop) capping a loop whose faces run along it in loop order.

    The cap must cross each boundary edge the other way, so its triangles take the orientation
    of the reversed loop in the best-fit plane.
    """
    if len(points) == 3:
        return np.array([[2, 1, 0]])
    import mapbox_earcut
    from shapely.geometry import LinearRing

    centred = points - points.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    flat = centred @ axes[:2].T
    if not LinearRing(flat).is_simple:
        return None
    index = mapbox_earcut.triangulate_float64(flat, np.array([len(flat)], np.uint32))
    triangles = index.astype(np.int64).reshape(-1, 3)
    if len(triangles) != len(points) - 2:
        return None
    loop_area = _signed_area(flat)
    a, b, c = flat[triangles[:, 0]], flat[triangles[:, 1]], flat[triangles[:, 2]]
    areas = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    wrong = np.sign(areas) == np.sign(loop_area)
    triangles[wrong] = triangles[wrong][:, ::-1]
    return triangles


def _signed_area(flat: np.ndarray) -> float:
    x, y = flat[:, 0], flat[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


# -- orientation ------------------------------------------------------------------------------
def orient_outward(mesh: MeshArrays, table: EdgeTable | None = None) -> tuple[MeshArrays, int]:
    """Flip each closed body whose volume is negative (faces pointing inward); return faces flipped.

    A body with negative volume inside another body's bounding box is a cavity (a hollow
    part's inner wall), whose faces rightly point into the hollow: it is kept as it is.
    Open bodies have no inside, so they are left alone.
    """
    faces = mesh.faces
    f = len(faces)
    if f == 0:
        return mesh, 0
    table = table or EdgeTable.of(faces)
    body = table.bodies(f)
    _, body = np.unique(body, return_inverse=True)
    count = int(body.max()) + 1

    open_body = np.zeros(count, bool)
    open_body[body[np.flatnonzero(table.uses() != 2) // 3]] = True

    corners = mesh.vertices[faces] - mesh.vertices.mean(axis=0)
    signed = np.einsum("ij,ij->i", corners[:, 0], np.cross(corners[:, 1], corners[:, 2])) / 6.0
    volumes = np.bincount(body, signed, minlength=count)
    inverted = np.flatnonzero((volumes < 0) & ~open_body)
    if len(inverted) == 0:
        return mesh, 0

    lo = np.full((count, 3), np.inf)
    hi = np.full((count, 3), -np.inf)
    np.minimum.at(lo, body, corners.min(axis=1))
    np.maximum.at(hi, body, corners.max(axis=1))
    flip = np.zeros(count, bool)
    for i in inverted:
        inside_another = np.any(
            (np.arange(count) != i)
            & (volumes > 0)
            & np.all(lo <= lo[i], axis=1)
            & np.all(hi >= hi[i], axis=1)
        )
        flip[i] = not inside_another
    flipped = flip[body]
    if not flipped.any():
        return mesh, 0
    faces = faces.copy()
    faces[flipped] = faces[flipped][:, ::-1]
    return MeshArrays(mesh.vertices, faces, mesh.colours), int(flipped.sum())
