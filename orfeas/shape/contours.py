"""Marching squares: closed outline rings of a 2D field at a level, with sub-pixel positions.

The field is padded with a border below the level, so every ring closes. Each crossing point
lies on one grid edge and is shared by exactly two cells, which makes linking segments into
rings a walk over a degree-2 graph. Saddle cells (diagonal corners on the same side) are
resolved by the cell's centre value, so two blobs touching at a corner join only if the field
says the gap between them is filled.
"""

from __future__ import annotations

import numpy as np

EDGE_MARGIN = 1e-4  # of a sample spacing


def trace_contours(field: np.ndarray, level: float = 0.5, outside: float = 0.0) -> list[np.ndarray]:
    """Rings where `field` crosses `level`, each an (n, 2) float array of (row, col), not repeated.

    Coordinates are those of `field`'s samples (sample (i, j) sits at row i, col j). Rings do not
    cross each other; their orientation is not specified (use nesting to tell holes). Beyond the
    field's border the value is `outside` (below `level`): for a coverage field in [0, 1], 0 puts
    the outline of a shape touching the border half a sample out, on the picture's edge.
    """
    if not outside < level:
        raise ValueError(f"outside ({outside}) must be below the level ({level})")
    f = np.pad(np.asarray(field, dtype=np.float64), 1, constant_values=outside)
    inside = f > level
    rows, cols = f.shape

    # Crossing points on horizontal edges (i, j)-(i, j+1) and vertical edges (i, j)-(i+1, j).
    h_cross = inside[:, :-1] != inside[:, 1:]
    v_cross = inside[:-1, :] != inside[1:, :]
    n_h = rows * (cols - 1)
    h_id = np.arange(n_h).reshape(rows, cols - 1)
    v_id = n_h + np.arange((rows - 1) * cols).reshape(rows - 1, cols)

    # Per cell (i, j): its four edges in the order top, right, bottom, left.
    ids = np.stack([h_id[:-1, :], v_id[:, 1:], h_id[1:, :], v_id[:, :-1]], axis=-1).reshape(-1, 4)
    cross = np.stack([h_cross[:-1, :], v_cross[:, 1:], h_cross[1:, :], v_cross[:, :-1]], axis=-1)
    cross = cross.reshape(-1, 4)
    count = cross.sum(axis=1)

    two = count == 2
    segments = [ids[two][cross[two]].reshape(-1, 2)]

    saddle = np.flatnonzero(count == 4)
    if saddle.size:
        tl = inside[:-1, :-1].reshape(-1)[saddle]
        centre = (f[:-1, :-1] + f[:-1, 1:] + f[1:, :-1] + f[1:, 1:]).reshape(-1)[saddle] / 4.0 > level
        s_ids = ids[saddle]
        top, right, bottom, left = s_ids[:, 0], s_ids[:, 1], s_ids[:, 2], s_ids[:, 3]
        # Cut off the two corners that are on the other side from the centre: if the centre
        # agrees with the top-left corner, the top-right and bottom-left corners are cut off.
        cut_tr_bl = tl == centre
        first = np.where(cut_tr_bl[:, None], np.stack([top, right], 1), np.stack([top, left], 1))
        second = np.where(cut_tr_bl[:, None], np.stack([left, bottom], 1), np.stack([right, bottom], 1))
        segments += [first, second]

    seg = np.concatenate(segments)
    if seg.size == 0:
        return []

    # Positions of the crossing points, linearly interpolated along their edges.
    # A sample exactly at the level would put a point on it, possibly shared by two rings; kept
    # a hair inside the edge instead, every point is on its own edge and rings never touch.
    pos = np.zeros((n_h + (rows - 1) * cols, 2))
    hi, hj = np.nonzero(h_cross)
    a, b = f[hi, hj], f[hi, hj + 1]
    pos[h_id[hi, hj]] = np.column_stack(
        [hi, hj + np.clip((level - a) / (b - a), EDGE_MARGIN, 1 - EDGE_MARGIN)]
    )
    vi, vj = np.nonzero(v_cross)
    a, b = f[vi, vj], f[vi + 1, vj]
    pos[v_id[vi, vj]] = np.column_stack(
        [vi + np.clip((level - a) / (b - a), EDGE_MARGIN, 1 - EDGE_MARGIN), vj]
    )

    rings = _link(seg, pos.shape[0])
    return [pos[ring] - 1.0 for ring in rings]  # undo the padding


def _fraction(a: np.ndarray, b: np.ndarray, level: float) -> np.ndarray:
    """Where along an edge from value `a` to `b` the level falls, kept off the edge's ends."""
    result: np.ndarray = np.clip((level - a) / (b - a), EDGE_MARGIN, 1.0 - EDGE_MARGIN)
    return result


def _link(seg: np.ndarray, n_points: int) -> list[np.ndarray]:
    """Walk the degree-2 graph that the segments form, returning each cycle's point ids."""
    ends = seg.reshape(-1)
    order = np.argsort(ends, kind="stable")
    sorted_ends = ends[order]
    # Each point occurs exactly twice; its two neighbours are the other ends of its segments.
    other = seg[:, ::-1].reshape(-1)[order]
    first_nb = np.full(n_points, -1, dtype=np.int64)
    second_nb = np.full(n_points, -1, dtype=np.int64)
    first_nb[sorted_ends[0::2]] = other[0::2]
    second_nb[sorted_ends[1::2]] = other[1::2]

    first = first_nb.tolist()
    second = second_nb.tolist()
    seen = bytearray(n_points)
    rings: list[np.ndarray] = []
    for start in sorted_ends[0::2].tolist():
        if seen[start]:
            continue
        ring = [start]
        seen[start] = 1
        prev, cur = start, first[start]
        while cur != start:
            ring.append(cur)
            seen[cur] = 1
            nxt = first[cur]
            if nxt == prev:
                nxt = second[cur]
            prev, cur = cur, nxt
        rings.append(np.asarray(ring, dtype=np.int64))
    return rings
