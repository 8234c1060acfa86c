"""Picture frame → build frame, uniform scale to millimetres, and onto the build plate.

Build frame (the slicer convention): millimetres, +Z up (the build direction), the part resting
on z = 0 and centred on x = y = 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from orfeas.request import Dimensions

# A standing object's picture frame has +Y up and +Z towards the viewer. Turning it a quarter
# turn about X maps +Y → +Z (up) and +Z → -Y: it faces the front of the plate, as slicers show
# a model. A rotation (determinant +1), so the winding stays outward.
STANDING_TO_BUILD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def to_build_frame(vertices: np.ndarray, *, stands: bool) -> np.ndarray:
    """A flat piece lies on its back as it is (picture Z is up); a standing one is turned upright."""
    if not stands:
        return vertices
    result: np.ndarray = vertices @ STANDING_TO_BUILD.T
    return result


def scale_factor(vertices: np.ndarray, dimensions: Dimensions | None, default_size_mm: float) -> float:
    """The uniform factor that gives the asked axis its length, else the longest side the default."""
    extents = vertices.max(axis=0) - vertices.min(axis=0)
    if dimensions is not None:
        current = float(extents[dimensions.axis])
        target = dimensions.size_mm
        if current <= 0:
            axis = "xyz"[dimensions.axis]
            raise ValueError(f"the mesh is flat along {axis}, so it cannot be scaled to {target} mm there")
    else:
        current = float(extents.max())
        target = default_size_mm
        if current <= 0:
            raise ValueError("the mesh has no extent")
    return target / current


def build_scale(
    vertices: np.ndarray, *, stands: bool, dimensions: Dimensions | None, default_size_mm: float
) -> float:
    """Millimetres per model unit that `place` will give a mesh in the picture frame (the same
    orientation and `scale_factor`), for judging a shape at its printed size before it is placed."""
    oriented = to_build_frame(np.asarray(vertices, dtype=np.float64), stands=stands)
    return scale_factor(oriented, dimensions, default_size_mm)


def place_on_plate(vertices: np.ndarray) -> np.ndarray:
    """Translate so the lowest point is at z = 0 and the bounding box is centred on x = y = 0."""
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    shift = np.array([-(lo[0] + hi[0]) / 2.0, -(lo[1] + hi[1]) / 2.0, -lo[2]])
    placed: np.ndarray = vertices + shift
    # Float rounding can leave the minimum a hair off zero: pin it exactly.
    placed[:, 2] -= placed[:, 2].min()
    return placed


def place(
    vertices: np.ndarray, *, stands: bool, dimensions: Dimensions | None, default_size_mm: float
) -> np.ndarray:
    """Orient, scale and place: the mesh's vertices in the build frame, in millimetres."""
    oriented = to_build_frame(np.asarray(vertices, dtype=np.float64), stands=stands)
    centred = oriented - (oriented.min(axis=0) + oriented.max(axis=0)) / 2.0
    scaled = centred * scale_factor(centred, dimensions, default_size_mm)
    return place_on_plate(scaled)
