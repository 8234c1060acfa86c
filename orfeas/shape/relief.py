"""`relief`: the picture's luminance as a heightfield solid standing on a flat base.

For photos and shaded pictures. Over the foreground (the whole picture when the mask covers
almost all of it) a grid samples the luma; the top surface is z = base + depth · t, where t is
the luma stretched to [0, 1] between its 1st and 99th percentile inside the foreground, so
brighter is higher (a relief lit from the front; for a back-lit lithophane, where thickness
darkens, print it with a negative picture). The solid has vertical side walls and a flat bottom
at z = 0, built closed by construction; a cut-out foreground is then intersected with its
outline's prism by manifold3d, which keeps the result a closed 2-manifold.

Sizes, as shares of the foreground's longest side: base 3 %, relief depth 7 % (3 mm and up to
7 mm more on a 100 mm print: the base stays rigid, the depth reads well under side light). A
cut-out of several parts stands on one backing plate as thick as the base (orfeas/shape/
backing.py) unless the request's `backing` is false.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from orfeas.errors import StageFailed, StageTimeout
from orfeas.shape.backing import join_with_plate
from orfeas.shape.extrude import trace_outline
from orfeas.shape.polygons import cross_section, manifold_to_trimesh, trimesh_to_manifold
from orfeas.shape.printability import review_printability
from orfeas.shape.raster import PictureFrame, grid_shape, luminance, quality_resolution
from orfeas.types import SettingsBackend, ShapeResult

if TYPE_CHECKING:
    import trimesh
    from shapely.geometry import MultiPolygon

    from orfeas.request import JobRequest
    from orfeas.types import Cutout, StageContext

BASE_RATIO = 0.03
DEPTH_RATIO = 0.07
# Grid cells on the foreground's longest side: 64 at quality 1, 512 at quality 10.
GRID_MIN, GRID_MAX = 64, 512
# A mask covering at least this share of the picture is "the whole picture": no outline cut.
FULL_COVERAGE = 0.97
# Gaussian smoothing of the sampled heights, in grid cells: removes single-pixel noise spikes
# (JPEG noise, sensor grain) without blurring edges wider than about two cells.
SMOOTH_CELLS = 0.7
# An odd fraction of a pixel (1 − 1/φ) that keeps the grid off the pixel borders (see _region).
GRID_OFFSET = 0.381966
# Percentiles of the luma mapped to the lowest and highest relief.
STRETCH = (1.0, 99.0)
# Below this luma spread (of 1.0) the picture is flat: the relief is a plain slab.
MIN_SPREAD = 1e-3


class ReliefBackend(SettingsBackend):
    name = "relief"

    def generate(self, cutout: Cutout, request: JobRequest, ctx: StageContext) -> ShapeResult:
        mask = np.asarray(cutout.mask, dtype=bool)
        frame = PictureFrame(mask.shape[1], mask.shape[0])
        outline = None
        if not mask.any():
            ctx.warn("relief: the mask is empty; the whole picture is used")
        elif mask.mean() < FULL_COVERAGE:
            try:
                outline = trace_outline(mask, frame, request.quality, ctx, span=(0.0, 0.2))
            except StageFailed as exc:
                if isinstance(exc, StageTimeout):
                    raise
                ctx.warn("relief: the mask has only specks; the whole picture is used")
        region = _region(frame, outline)
        r0, r1, c0, c1 = region
        longest_px = max(r1 - r0, c1 - c0)
        cells = min(quality_resolution(request.quality, GRID_MIN, GRID_MAX), max(round(longest_px), GRID_MIN))
        shape = grid_shape(r1 - r0, c1 - c0, cells)

        heights, spread = sample_heights(cutout, mask if outline is not None else None, region, shape)
        if spread < MIN_SPREAD:
            ctx.warn("relief: the picture has no contrast; the relief is a flat slab")
        ctx.report(0.4)
        ctx.check()

        size = float(longest_px * frame.unit)
        z = BASE_RATIO * size + DEPTH_RATIO * size * heights
        mesh = heightfield_solid(frame, region, z)
        ctx.report(0.6)
        ctx.check()
        plate = None
        if outline is not None:
            mesh = cut_to_outline(mesh, outline, float(z.max()))
            if request.backing:
                joined = join_with_plate(mesh, outline, BASE_RATIO * size)
                mesh, plate = (mesh, None) if joined is None else (joined, BASE_RATIO * size)
        layers = {"base": BASE_RATIO * size}
        review_printability(mesh, outline, cutout, request, ctx, stands=False, layers=layers)
        ctx.report(1.0)
        return ShapeResult(
            mesh=mesh,
            picture_box=frame.box,
            stands=False,
            meta={
                "grid": [shape[0], shape[1]],
                "base": round(BASE_RATIO * size, 6),
                "depth": round(DEPTH_RATIO * size, 6),
                "cut_to_outline": outline is not None,
                "backing_plate": None if plate is None else round(plate, 6),
            },
        )


def _region(frame: PictureFrame, outline: MultiPolygon | None) -> tuple[float, float, float, float]:
    """Pixel rows r0..r1 and columns c0..c1 the grid covers: the whole picture, or the outline's box.

    Around an outline the box grows by 2 px plus an odd fraction of a pixel: outlines often run
    along pixel borders (pixel-art logos, straight edges), and grid lines lying on them would
    leave the boolean cut with needle triangles a few 1e-7 wide.
    """
    if outline is None:
        return 0.0, float(frame.height_px), 0.0, float(frame.width_px)
    x0, y0, x1, y1 = (v / frame.unit for v in outline.bounds)
    pad = 2.0 + GRID_OFFSET
    return (
        math.floor(frame.height_px - y1) - pad,
        math.ceil(frame.height_px - y0) + pad,
        math.floor(x0) - pad,
        math.ceil(x1) + pad,
    )


def sample_heights(
    cutout: Cutout, mask: np.ndarray | None, region: tuple[float, float, float, float], shape: tuple[int, int]
) -> tuple[np.ndarray, float]:
    """Relief heights in [0, 1] at the grid's vertices ((rows+1, cols+1)), and the luma spread.

    Vertex (i, j) sits at picture pixel position (r0 + i·(r1-r0)/rows, c0 + j·(c1-c0)/cols).
    """
    from scipy.ndimage import gaussian_filter, map_coordinates

    r0, r1, c0, c1 = region
    rows, cols = shape
    height_px, width_px = cutout.mask.shape
    # About two luma samples per grid cell: enough to average, far less than a 40 MP photo.
    max_side = max(int(2 * max(rows, cols) * max(height_px, width_px) / max(r1 - r0, c1 - c0)), 16)
    luma = luminance(cutout.image, max_side=max_side)
    sy, sx = luma.shape[0] / height_px, luma.shape[1] / width_px

    pr = r0 + np.arange(rows + 1) * ((r1 - r0) / rows)
    pc = c0 + np.arange(cols + 1) * ((c1 - c0) / cols)
    # Pixel positions → luma array indices (sample k covers [k, k+1) / scale; its centre is k + 0.5).
    gi, gj = np.meshgrid(pr * sy - 0.5, pc * sx - 0.5, indexing="ij")
    values = map_coordinates(luma, [gi, gj], order=1, mode="nearest")
    values = gaussian_filter(values, sigma=SMOOTH_CELLS, mode="nearest")

    if mask is not None:
        mi = np.clip(pr.astype(np.int64), 0, height_px - 1)
        mj = np.clip(pc.astype(np.int64), 0, width_px - 1)
        inside = mask[np.ix_(mi, mj)]
        chosen = values[inside] if inside.any() else values.reshape(-1)
    else:
        chosen = values.reshape(-1)
    lo, hi = np.percentile(chosen, STRETCH)
    spread = float(hi - lo)
    if spread < MIN_SPREAD:
        return np.full_like(values, 0.5), spread
    return np.clip((values - lo) / spread, 0.0, 1.0), spread


def heightfield_solid(
    frame: PictureFrame, region: tuple[float, float, float, float], z: np.ndarray
) -> trimesh.Trimesh:
    """A closed solid: top surface at heights `z` over the region's grid, vertical walls, flat bottom.

    Vertices: the (rows+1)·(cols+1) top grid, then the bottom copies of the perimeter, then one
    bottom centre point; the bottom is a fan from that centre (no fan triangle degenerates,
    because no perimeter edge is collinear with the centre). Every face is wound outwards.
    """
    import trimesh

    r0, r1, c0, c1 = region
    nr, nc = z.shape  # vertices per column and per row
    pr = r0 + np.arange(nr) * ((r1 - r0) / (nr - 1))
    pc = c0 + np.arange(nc) * ((c1 - c0) / (nc - 1))
    gi, gj = np.meshgrid(pr, pc, indexing="ij")
    x, y = frame.to_xy(gi, gj)
    top = np.column_stack([x.reshape(-1), y.reshape(-1), z.reshape(-1)])

    idx = np.arange(nr * nc).reshape(nr, nc)
    # Row 0 is the picture's top (largest y). Seen from +Z, counter-clockwise is
    # lower-left → lower-right → upper-right → upper-left.
    ul, ur, ll, lr = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    top_faces = np.concatenate(
        [np.stack([ll, lr, ur], -1).reshape(-1, 3), np.stack([ll, ur, ul], -1).reshape(-1, 3)]
    )

    # Perimeter, counter-clockwise seen from +Z: down the left, along the bottom, up the right,
    # back along the top.
    perimeter = np.concatenate([idx[:-1, 0], idx[-1, :-1], idx[:0:-1, -1], idx[0, :0:-1]])
    n_top, n_per = nr * nc, len(perimeter)
    bottom = top[perimeter].copy()
    bottom[:, 2] = 0.0
    centre = np.array([[x.mean(), y.mean(), 0.0]])
    vertices = np.concatenate([top, bottom, centre])

    k = np.arange(n_per)
    k1 = (k + 1) % n_per
    p, p1 = perimeter[k], perimeter[k1]
    q, q1 = n_top + k, n_top + k1
    walls = np.concatenate([np.stack([q, q1, p1], -1), np.stack([q, p1, p], -1)])
    c = np.full(n_per, n_top + n_per)
    floor = np.stack([c, q1, q], -1)
    faces = np.concatenate([top_faces, walls, floor])
    return trimesh.Trimesh(vertices=vertices, faces=faces, process=False)


def cut_to_outline(mesh: trimesh.Trimesh, outline: MultiPolygon, z_top: float) -> trimesh.Trimesh:
    """The heightfield solid intersected with the outline's vertical prism (manifold3d boolean)."""
    solid = trimesh_to_manifold(mesh)
    height = z_top + 2.0
    prism = cross_section(outline).extrude(height).translate((0.0, 0.0, -1.0))
    return manifold_to_trimesh(solid ^ prism)
