"""Vertex colours: read them out of whatever visual a mesh carries, and carry them onto new vertices.

Colours are (n, 4) uint8 RGBA arrays, one row per vertex, or None for a mesh without colour.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import trimesh


def vertex_colours(mesh: trimesh.Trimesh) -> np.ndarray | None:
    """The mesh's colours as one RGBA row per vertex, or None when it has none.

    Face colours are spread onto vertices (trimesh averages the faces around each vertex); a UV
    texture is sampled at each vertex's UV, since decimation cannot keep a UV layout anyway.
    """
    visual: Any = mesh.visual  # ColorVisuals or TextureVisuals, told apart by `kind`
    kind = getattr(visual, "kind", None)
    if kind is None:
        return None
    if kind == "texture":
        visual = visual.to_color()
        if getattr(visual, "kind", None) is None:
            return None
    colours = np.asarray(visual.vertex_colors)
    if colours.shape != (len(mesh.vertices), 4):
        return None
    return np.ascontiguousarray(colours, dtype=np.uint8)


def nearest_colours(source_points: np.ndarray, source_colours: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Each of `points` takes the colour of the nearest of `source_points` (a k-d tree query).

    Decimation moves vertices to the position that minimises the quadric error, which lies on
    or next to the original surface, so the nearest original vertex is the one it replaced (or
    a neighbour of it): colours stay where they were, with no blurring across edges.
    """
    from scipy.spatial import cKDTree

    if len(points) == 0:
        return np.zeros((0, 4), np.uint8)
    _, index = cKDTree(source_points).query(points, k=1, workers=-1)
    result: np.ndarray = source_colours[index]
    return result
