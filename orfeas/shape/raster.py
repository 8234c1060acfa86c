"""The picture frame and resampling of masks and pictures onto working grids.

Shapes are built on a working grid whose longest side follows the request's quality, not the
picture's size, so a 40 MP photo costs the same as a 1 MP one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class PictureFrame:
    """Maps picture pixels to model units: the longest side is 1.0, +X right, +Y up.

    Pixel (row r, col c) covers x ∈ [c, c+1]·unit and y ∈ [h-r-1, h-r]·unit, so the whole
    picture covers `box` = (0, 0, width·unit, height·unit).
    """

    width_px: int
    height_px: int

    @property
    def unit(self) -> float:
        return 1.0 / max(self.width_px, self.height_px)

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (0.0, 0.0, self.width_px * self.unit, self.height_px * self.unit)

    def to_xy(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Continuous pixel coordinates (row, col; 0 = top/left edge) → model x, y."""
        return cols * self.unit, (self.height_px - rows) * self.unit


def quality_resolution(quality: int, lo: int, hi: int) -> int:
    """Cells on the working grid's longest side: geometric from `lo` (quality 1) to `hi` (10)."""
    q = min(max(quality, 1), 10)
    result: int = round(lo * (hi / lo) ** ((q - 1) / 9))
    return result


def grid_shape(height_px: float, width_px: float, longest: int) -> tuple[int, int]:
    """(rows, cols) of a grid with `longest` cells on the picture's longest side, same aspect."""
    scale = longest / max(height_px, width_px)
    return max(2, round(height_px * scale)), max(2, round(width_px * scale))


def coverage_field(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The mask resampled to `shape` as foreground coverage in [0, 1] (area average when shrinking).

    Contouring this field at 0.5 gives a sub-pixel outline instead of the pixel staircase.
    """
    rows, cols = shape
    img = Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255)
    shrinking = rows < mask.shape[0]
    resized = img.resize((cols, rows), Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32) / 255.0


def luminance(image: Image.Image, max_side: int | None = None) -> np.ndarray:
    """Rec. 601 luma of the picture's RGB in [0, 1] (alpha ignored), optionally shrunk first."""
    rgb = image.convert("RGB")
    if max_side is not None and max(rgb.size) > max_side:
        scale = max_side / max(rgb.size)
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        rgb = rgb.resize(size, Image.Resampling.BOX)
    return np.asarray(rgb.convert("L"), dtype=np.float32) / 255.0
