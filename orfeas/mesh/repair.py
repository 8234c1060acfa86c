"""Repair: a clean, consistently wound, outward-facing and (where possible) closed triangle mesh.

Steps, each on plain arrays (vertices, faces, per-vertex colours) so that nothing is recomputed
behind our back:

- `clean`: merge vertices closer than a tolerance (a millionth of the bounding-box diagonal:
  0.1 µm on a 100 mm part, far below any printer's resolution, far above float noise), drop
  faces left with fewer than three distinct corners, drop duplicate faces (same corners in any
  order), drop vertices no face uses.
- `fix_winding`: make neighbouring faces traverse their shared edge in opposite directions.
- `close_holes`: triangulate each small boundary loop (ear clipping in the loop's best-fit plane).
- `orient_outward`: flip closed bodies with negative volume, except cavities inside another body.

Zero-area faces with three distinct corners (a vertex lying on the opposite edge) are kept:
removing one would open the surface, and decimation collapses them first anyway (zero cost).
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass
class CleanReport:
    merged_vertices: int = 0
    degenerate_faces: int = 0
    duplicate_faces: int = 0
    unreferenced_vertices: int = 0


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
    report = CleanReport()
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64).reshape(-1, 3)
    mesh = MeshArrays(vertices, faces, mesh.colours)

    tolerance = merge_share * bbox_diagonal(vertices)
    if tolerance > 0 and len(vertices) > 1:
        mesh, report.merged_vertices = _merge_close(mesh, tolerance)
    faces = mesh.faces

    degenerate = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])
    report.degenerate_faces = int(degenerate.sum())
    if report.degenerate_faces:
        faces = faces[~degenerate]

    first = _first_of_each(np.sort(faces, axis=1))
    report.duplicate_faces = len(faces) - len(first)
    if report.duplicate_faces:
        faces = faces[first]

    mesh = MeshArrays(mesh.vertices, faces, mesh.colours)
    mesh, report.unreferenced_vertices = drop_unreferenced(mesh)
    return mesh, report


def _merge_close(mesh: MeshArrays, tolerance: float) -> tuple[MeshArrays, int]:
    """Vertices within `tolerance` of each other (transitively) become the lowest-numbered one."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    n = len(mesh.vertices)
    pairs = cKDTree(mesh.vertices).query_pairs(tolerance, output_type="ndarray")
    if len(pairs) == 0:
        return mesh, 0
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    # Labels are handed out in order of each group's lowest vertex, so the vertex order is kept.
    _, keep = np.unique(labels, return_index=True)
    return mesh.subset_vertices(keep, labels[mesh.faces]), n - count


def _first_of_each(rows: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each distinct row, in their original order."""
    if len(rows) == 0:
        return np.zeros(0, np.int64)
    contiguous = np.ascontiguousarray(rows)
    keys = contiguous.view(np.dtype((np.void, contiguous.dtype.itemsize * contiguous.shape[1]))).ravel()
    _, first = np.unique(keys, return_index=True)
    return np.sort(first)


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
    """Every directed face edge, grouped by undirected edge."""

    directed: np.ndarray  # (3f, 2): face k's edges are rows 3k, 3k+1, 3k+2
    group: np.ndarray  # (3f,): undirected edge id of each directed edge
    counts: np.ndarray  # (e,): how many faces use each undirected edge

    @classmethod
    def of(cls, faces: np.ndarray) -> EdgeTable:
        directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
        undirected = np.sort(directed, axis=1)
        n = int(faces.max()) + 1 if len(faces) else 1
        keys = undirected[:, 0] * n + undirected[:, 1]
        _, group, counts = np.unique(keys, return_inverse=True, return_counts=True)
        return cls(directed, group, counts)

    def uses(self) -> np.ndarray:
        """For each directed edge, how many faces use its undirected edge."""
        return self.counts[self.group]


def fix_winding(mesh: MeshArrays) -> tuple[MeshArrays, int]:
    """Make faces that share an edge traverse it in opposite directions; return how many flipped.

    Consistent meshes (every shape backend's output) are detected with one pass over the edges;
    only inconsistent ones go through trimesh's face-graph traversal.
    """
    if len(mesh.faces) == 0 or winding_is_consistent(mesh.faces):
        return mesh, 0
    import trimesh

    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    trimesh.repair.fix_winding(tm)
    faces = np.asarray(tm.faces, dtype=np.int64)
    flipped = int(np.any(faces != mesh.faces, axis=1).sum())
    return MeshArrays(mesh.vertices, faces, mesh.colours), flipped


def winding_is_consistent(faces: np.ndarray) -> bool:
    """True when no directed edge is used twice (two faces crossing an edge the same way)."""
    directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    return len(_first_of_each(directed)) == len(directed)


# -- holes ------------------------------------------------------------------------------------
def close_holes(
    mesh: MeshArrays, *, hole_share: float = HOLE_SHARE, max_edges: int = HOLE_MAX_EDGES
) -> tuple[MeshArrays, HoleReport]:
    """Triangulate every small boundary loop, with the winding of the faces around it.

    No vertex is added, so colours need no change. A loop whose projection onto its best-fit
    plane crosses itself cannot be capped without folding the cap: it is left open.
    """
    report = HoleReport()
    if len(mesh.faces) == 0:
        return mesh, report
    table = EdgeTable.of(mesh.faces)
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
def orient_outward(mesh: MeshArrays) -> tuple[MeshArrays, int]:
    """Flip each closed body whose volume is negative (faces pointing inward); return faces flipped.

    A body with negative volume inside another body's bounding box is a cavity (a hollow
    part's inner wall), whose faces rightly point into the hollow: it is kept as it is.
    Open bodies have no inside, so they are left alone.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    faces = mesh.faces
    f = len(faces)
    if f == 0:
        return mesh, 0
    table = EdgeTable.of(faces)
    face_of_edge = np.repeat(np.arange(f), 3)
    # Faces sharing an edge are one body: link every directed edge's face to its edge's node.
    graph = coo_matrix(
        (np.ones(3 * f, np.int8), (face_of_edge, f + table.group)), shape=(f + len(table.counts),) * 2
    )
    _, labels = connected_components(graph, directed=False)
    body = labels[:f]
    _, body = np.unique(body, return_inverse=True)
    bodies = int(body.max()) + 1

    open_body = np.zeros(bodies, bool)
    open_body[body[face_of_edge[table.uses() != 2]]] = True

    v = mesh.vertices[faces]
    origin = mesh.vertices.mean(axis=0)
    a, b, c = v[:, 0] - origin, v[:, 1] - origin, v[:, 2] - origin
    volumes = np.bincount(body, np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0, minlength=bodies)

    lo = np.full((bodies, 3), np.inf)
    hi = np.full((bodies, 3), -np.inf)
    np.minimum.at(lo, body, v.min(axis=1))
    np.maximum.at(hi, body, v.max(axis=1))

    flip = np.zeros(bodies, bool)
    for i in np.flatnonzero((volumes < 0) & ~open_body):
        inside_another = np.any(
            (np.arange(bodies) != i)
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
