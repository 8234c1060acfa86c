"""Finishing a UV-textured mesh without losing its texture.

`finish_mesh` repairs, decimates and re-meshes through plain arrays with vertex colours, which
would turn a baked texture into per-vertex colours. A painted mesh has been decimated to its
face budget before unwrapping (orfeas/texture/unwrap.py), so here it is only oriented, scaled
and placed (an affine map: UVs stay valid). A textured mesh over the budget is left to
`finish_mesh`, which samples the texture at its vertices.

xatlas splits vertices along chart seams; the geometry is judged (closed or not) and written
to the colour-per-vertex formats with those copies welded back by position.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Unpack

import numpy as np

from orfeas.mesh.decimate import BUDGET_SLACK
from orfeas.mesh.export import has_uv_texture
from orfeas.mesh.placement import place

if TYPE_CHECKING:
    import trimesh

    from orfeas.mesh.finish import Finishing


def welded(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """The geometry with vertices at the same position merged (a seam's copies become one)."""
    import trimesh as tm

    unique, inverse = np.unique(np.asarray(mesh.vertices), axis=0, return_inverse=True)
    return tm.Trimesh(unique, inverse.reshape(-1)[np.asarray(mesh.faces)], process=False)


def is_watertight(mesh: trimesh.Trimesh) -> bool:
    return bool((welded(mesh) if has_uv_texture(mesh) else mesh).is_watertight)


def finish_textured(mesh: trimesh.Trimesh, **finishing: Unpack[Finishing]) -> trimesh.Trimesh | None:
    """The textured mesh placed in the build frame, or None when it is not textured or over budget."""
    import trimesh as tm

    visual: Any = getattr(mesh, "visual", None)  # a trimesh visual; has_uv_texture() below checks it
    if not has_uv_texture(mesh) or len(mesh.faces) > finishing["face_budget"] * (1 + BUDGET_SLACK):
        return None
    vertices = place(
        np.asarray(mesh.vertices),
        stands=finishing["stands"],
        dimensions=finishing["dimensions"],
        default_size_mm=finishing["default_size_mm"],
    )
    finished = tm.Trimesh(vertices, np.asarray(mesh.faces), visual=visual.copy(), process=False)
    if not is_watertight(finished):
        finishing["ctx"].warn(
            "mesh is not watertight (the textured surface is open); a slicer may need to repair it"
        )
    return finished
