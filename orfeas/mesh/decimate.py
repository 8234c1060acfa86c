"""Decimation to a face budget: quadric edge collapse (fast_simplification), vertex colours kept.

fast_simplification wraps Sven Forstmann's Fast-Quadric-Mesh-Simplification: Garland–Heckbert
quadrics with a threshold that rises each pass instead of a global priority queue. bench/decimate.py
against pymeshlab's quadric edge collapse (Hunyuan3D's FaceReducer settings), 1.3M → 100k faces
on a 2-core machine: 8.5–13.5× faster, mean surface distance 1.00–1.04× pymeshlab's and
Hausdorff distance 0.33–0.91× of it.
"""

from __future__ import annotations

import threading

import numpy as np

from orfeas.mesh.colors import nearest_colours
from orfeas.mesh.repair import MeshArrays, clean

# fast_simplification keeps the mesh being simplified in module-level C++ state between its
# load, simplify and return calls: two threads decimating at once would mix their meshes.
_LOCK = threading.Lock()
# Aggressiveness: the collapse threshold of pass i is 1e-9 · (i + 3) ** agg, for up to 100
# passes. 3 creeps up slowly enough to collapse the cheapest edges first almost as an exact
# queue would (bench/decimate.py: distances level with pymeshlab's, where the library's default
# 7 gives a 1.35× larger mean distance on a relief); when a pass runs out of steps short of the
# budget, the rest is done more aggressively on the partly decimated mesh.
AGGRESSIVENESS = (3.0, 5.0, 7.0, 10.0)
# The threshold is absolute (squared distance), so meshes are decimated at one scale: a
# bounding-box diagonal of 2, where the schedule above was measured, then scaled back.
WORKING_DIAGONAL = 2.0
# The output may exceed the budget by this share before a retry is worth it.
BUDGET_SLACK = 0.01


def decimate(mesh: MeshArrays, face_budget: int) -> MeshArrays:
    """At most about `face_budget` faces (never more than 1 % over); colours follow the geometry."""
    import fast_simplification

    if face_budget < 4:
        raise ValueError(f"a face budget of {face_budget} cannot hold a closed mesh")
    if len(mesh.faces) <= face_budget:
        return mesh
    centre = (mesh.vertices.min(axis=0) + mesh.vertices.max(axis=0)) / 2.0
    diagonal = float(np.linalg.norm(np.ptp(mesh.vertices, axis=0)))
    scale = WORKING_DIAGONAL / diagonal if diagonal > 0 else 1.0
    vertices = np.ascontiguousarray((mesh.vertices - centre) * scale, dtype=np.float64)
    faces = np.ascontiguousarray(mesh.faces, dtype=np.int32)
    for agg in AGGRESSIVENESS:
        with _LOCK:
            vertices, faces = fast_simplification.simplify(vertices, faces, target_count=face_budget, agg=agg)
        faces = np.ascontiguousarray(faces, dtype=np.int32)
        if len(faces) <= face_budget * (1 + BUDGET_SLACK):
            break
    vertices = vertices / scale + centre
    colours = None
    if mesh.colours is not None:
        colours = nearest_colours(mesh.vertices, mesh.colours, vertices)
    # Collapses can leave a face folded onto another or an unused vertex; positions are final,
    # so nothing is merged here.
    result, _ = clean(MeshArrays(vertices, faces.astype(np.int64), colours), merge_share=0.0)
    return result
