"""UV atlas for a baked texture: decimate to the face budget first, then unwrap with xatlas.

xatlas' chart building is super-linear in the face count and single-threaded, which is why a
Hunyuan3D mesh of 400k+ faces takes 10-60 minutes to unwrap at full size; decimating first
bounds the work by the budget (bench/texture.py times both at 40k, 100k and 300k faces).
xatlas splits vertices along chart seams, so the result has its own vertex list, each vertex
with one UV; `source` maps every new vertex to the vertex of the decimated mesh it copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orfeas.mesh.decimate import decimate
from orfeas.mesh.repair import MeshArrays


@dataclass(frozen=True)
class UVMesh:
    vertices: np.ndarray  # (V, 3) float64
    faces: np.ndarray  # (F, 3) int64
    uvs: np.ndarray  # (V, 2) float32 in [0, 1]; v grows downwards (glTF's image orientation)
    source: np.ndarray  # (V,) int64 vertex of the decimated mesh each vertex copies


def unwrap(vertices: np.ndarray, faces: np.ndarray, face_budget: int | None = None) -> UVMesh:
    """Decimate to `face_budget` (when given and exceeded), then cut charts and pack them into [0, 1]²."""
    import xatlas

    if face_budget is not None and len(faces) > face_budget:
        reduced = decimate(
            MeshArrays(np.asarray(vertices, np.float64), np.asarray(faces, np.int64), None), face_budget
        )
        vertices, faces = reduced.vertices, reduced.faces
    mapping, indices, uvs = xatlas.parametrize(
        np.ascontiguousarray(vertices, dtype=np.float32), np.ascontiguousarray(faces, dtype=np.uint32)
    )
    mapping = mapping.astype(np.int64)
    return UVMesh(
        vertices=np.asarray(vertices, np.float64)[mapping],
        faces=indices.astype(np.int64),
        uvs=uvs.astype(np.float32),
        source=mapping,
    )
