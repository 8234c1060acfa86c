"""Degenerate sizes, refused as invalid_input naming the field before the work they would waste.

A mesh under 1 mm on an axis cannot be printed or even seen, and one over 10 m is no model (a
slicer's build plate is well under 1 m); a picture of 40,000,000 x 1 pixels passes the pixel cap
but is 2 GB of RGBA from a 5 KB PNG and holds no shape. So:
- a picture (from its header, before any pixel is decoded, and its subject after the background
  is cut away) must have a short side of at least MIN_SIDE_PX and an aspect of at most MAX_ASPECT;
- asked dimensions that, with the subject's proportions, give an axis outside
  [MIN_MM, MAX_MM] are refused before the shape is made;
- the final mesh is checked on every axis once scaled, before any format is written.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from orfeas.errors import InvalidInput
from orfeas.request import Dimensions

MIN_MM = 1.0
MAX_MM = 10_000.0
MAX_ASPECT = 50.0
MIN_SIDE_PX = 8
_AXES = ("width (X)", "depth (Y)", "height (Z)")
_FIELDS = ("dimensions.width_mm", "dimensions.depth_mm", "dimensions.height_mm")


def check_frame(width: int, height: int, *, what: str = "the picture", field: str = "image") -> None:
    """Refuse a frame whose short side is under MIN_SIDE_PX or whose sides differ past MAX_ASPECT."""
    short, long = min(width, height), max(width, height)
    if short < MIN_SIDE_PX:
        raise InvalidInput(
            f"{what} is {width}x{height} pixels: its short side is under {MIN_SIDE_PX} px", field=field
        )
    if long / short > MAX_ASPECT:
        raise InvalidInput(
            f"{what} is {width}x{height} pixels: its sides differ by more than 1:{MAX_ASPECT:g}", field=field
        )


def subject_size(mask: np.ndarray) -> tuple[int, int] | None:
    """(width, height) in pixels of the foreground's bounding box; None when there is none."""
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    if cols.size == 0 or rows.size == 0:
        return None
    return int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def check_subject(mask: np.ndarray, dimensions: Dimensions | None) -> None:
    """The cut-out subject's frame, and the width asked with its proportions (X is always the
    picture's right, so the picture's up axis will be width * h / w)."""
    size = subject_size(mask)
    if size is None:
        return
    width, height = size
    check_frame(width, height, what="the picture's subject (after cropping)")
    if dimensions is not None and dimensions.width_mm is not None:
        other = dimensions.width_mm * height / width
        if not MIN_MM <= other <= MAX_MM:
            raise InvalidInput(
                f"{dimensions.width_mm:g} mm wide, this {width}x{height} px subject would be {other:.3g} mm "
                f"tall; every axis must be within [{MIN_MM:g}, {MAX_MM:g}] mm",
                field="dimensions.width_mm",
            )


def check_extents(extents_mm: Sequence[float], dimensions: Dimensions | None) -> None:
    """The final mesh: every axis within [MIN_MM, MAX_MM]; the error names the asked dimension
    (the size that made it so) or, without one, the picture."""
    for axis, extent in enumerate(extents_mm):
        if not MIN_MM <= float(extent) <= MAX_MM:
            field = _FIELDS[dimensions.axis] if dimensions is not None else "image"
            raise InvalidInput(
                f"the mesh would be {float(extent):.3g} mm along its {_AXES[axis]}; every axis must be "
                f"within [{MIN_MM:g}, {MAX_MM:g}] mm",
                field=field,
            )
