"""Decimation to a face budget: quadric edge collapse (fast_simplification), vertex colours kept.

fast_simplification wraps Sven Forstmann's Fast-Quadric-Mesh-Simplification: Garland–Heckbert
quadrics with a threshold that rises each pass instead of a global priority queue, which makes
it several times faster than an exact queue (pymeshlab) at a similar error; bench/decimate.py
measures both on the same mesh.
"""

from __future__ import annotations

import threading

import numpy as np

from orfeas.mesh.colors import nearest_colours
from orfeas.mesh.repair import MeshArrays, clean

# fast_simplification keeps the mesh being simplified in module-level C++ state between its
# load, simplify and return calls: two threads decimating at once would mix their meshes.
_LOCK = threading.Lock()
# Aggressiveness: the library's default (7) first; when a pass stops short of the budget (its
# threshold schedule ran out before enough collapses were cheap enough) the rest is retried
# more aggressively on the partly decimated mesh.
AGGRESSIVENESS = (7.0, 9.0, 12.0)
# The output may exceed the budget by this share before a retry is worth it.
BUDGET_SLACK = 0.01


def decimate(mesh: MeshArrays, face_budget: int) -> MeshArrays:
    """At most about `face_budget` faces (never more than 1 % over); colours follow the geometry."""
    import fast_simplification

    if face_budget < 4:
        raise ValueError(f"a face budget of {face_budget} cannot hold a closed mesh")
    if len(mesh.faces) <= face_budget:
        return mesh
    vertices = np.ascontiguousarray(mesh.vertices, dtype=np.float64)
    faces = np.ascontiguousarray(mesh.faces, dtype=np.int32)
    for agg in AGGRESSIVENESS:
        with _LOCK:
            vertices, faces = fast_simplification.simplify(vertices, faces, target_count=face_budget, agg=agg)
        faces = np.ascontiguousarray(faces, dtype=np.int32)
        if len(faces) <= face_budget * (1 + BUDGET_SLACK):
            break
    colours = None
    if mesh.colours is not None:
        colours = nearest_colours(mesh.vertices, mesh.colours, vertices)
    # Collapses can leave a face folded onto another or an unused vertex; positions are final,
    # so nothing is merged here.
    result, _ = clean(MeshArrays(vertices, faces.astype(np.int64), colours), merge_share=0.0)
    return result
