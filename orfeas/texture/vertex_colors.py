"""`vertex`: the picture's colours projected onto the mesh's vertices along Z.

Each vertex takes the colour of the pixel its (x, y) falls on inside the shape's `picture_box`,
so front and back faces show the picture. Side walls stand on the outline, where the pixel under
a vertex may be background: when the mask is a real cut-out, a vertex that lands on a background
pixel takes the colour of the nearest foreground pixel instead, so no background colour bleeds
onto the edges. All of it is array indexing: 0.03 s for a 1.3M-face mesh, plus 0.2 s for
the nearest-foreground map of a 2000 × 2000 cut-out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from orfeas.errors import StageFailed
from orfeas.settings import Settings

if TYPE_CHECKING:
    import trimesh

    from orfeas.types import Cutout, ShapeResult, StageContext

# Pictures are shrunk to this longest side first: vertex colours cannot show more detail than
# the mesh has vertices, and the nearest-foreground map costs time per pixel (~0.3 s at 2048²).
MAX_SIDE = 2048
# A mask covering at least this share is the whole picture: every pixel keeps its own colour.
FULL_COVERAGE = 0.97


class VertexColorTexture:
    name = "vertex"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def apply(self, shape: ShapeResult, cutout: Cutout, ctx: StageContext) -> trimesh.Trimesh:
        import trimesh

        mesh = shape.mesh
        x0, y0, x1, y1 = shape.picture_box
        if not (x1 > x0 and y1 > y0):
            raise StageFailed(f"the picture box {shape.picture_box} is empty", stage=ctx.stage)
        rgb = snapped_colours(cutout)
        ctx.report(0.5)
        ctx.check()
        colours = project(np.asarray(mesh.vertices), shape.picture_box, rgb)
        ctx.report(0.9)
        return trimesh.Trimesh(
            vertices=np.array(mesh.vertices),
            faces=np.array(mesh.faces),
            vertex_colors=colours,
            process=False,
        )


def snapped_colours(cutout: Cutout) -> np.ndarray:
    """The picture as (rows, cols, 3) uint8, background pixels replaced by their nearest foreground's."""
    from scipy.ndimage import distance_transform_edt

    image = cutout.image.convert("RGB")
    mask = np.asarray(cutout.mask, dtype=bool)
    if mask.shape != (image.height, image.width):  # a mask found at another resolution
        resized = Image.fromarray(mask.astype(np.uint8) * 255).resize(image.size, Image.Resampling.NEAREST)
        mask = np.asarray(resized) > 127
    if max(image.size) > MAX_SIDE:
        scale = MAX_SIDE / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BOX)
        shrunk = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.BOX)
        mask = np.asarray(shrunk) > 127
    rgb = np.asarray(image)
    if not mask.any() or mask.mean() >= FULL_COVERAGE:
        return rgb
    # For each pixel, the index of the nearest foreground pixel (foreground maps to itself).
    ri, ci = distance_transform_edt(~mask, return_distances=False, return_indices=True)
    return rgb[ri, ci]


def project(vertices: np.ndarray, box: tuple[float, float, float, float], rgb: np.ndarray) -> np.ndarray:
    """RGBA uint8 per vertex: the pixel of `rgb` under each vertex's (x, y) within `box`."""
    x0, y0, x1, y1 = box
    rows, cols = rgb.shape[:2]
    col = np.floor((vertices[:, 0] - x0) * (cols / (x1 - x0))).astype(np.int64)
    row = np.floor((y1 - vertices[:, 1]) * (rows / (y1 - y0))).astype(np.int64)
    np.clip(col, 0, cols - 1, out=col)
    np.clip(row, 0, rows - 1, out=row)
    out = np.empty((len(vertices), 4), dtype=np.uint8)
    out[:, :3] = rgb[row, col]
    out[:, 3] = 255
    return out
