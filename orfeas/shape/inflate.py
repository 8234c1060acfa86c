"""`inflate`: a silhouette blown up into a rounded closed solid, front and back, standing on a flat base.

For photos of objects (a ball, a bottle, a toy) when no 3D model is at hand. Over a working grid
that covers the outline (from trace_outline, so sub-pixel), each point inside gets:

- d: its distance to the outline;
- r: the local radius, the largest inscribed circle that covers the point (computed level by
  level: the points within t of the region where d >= t are covered by a circle of radius t);
- a height h = sqrt(d · (2r − d)): the cross-section of a round body of radius r. A disc becomes
  a sphere, a bar a cylinder, and a bottle's neck is as round as its body, not a bulge sized by
  the body's radius.

The front is z = +h and the back z = −h (mirrored), joined into one closed grid solid and cut
to the outline's prism by manifold3d, so the rim is the outline exactly and the result is a
closed 2-manifold. The rim keeps the height that h has half a grid cell inside the outline, so
the prism's wall there is a short vertical band where the body is vertical anyway.

Standing (`stands` True: the picture's Y becomes the build Z): the bottom 3 % of the silhouette's
height is cut off flat, a base to stand on (a 100 mm ball stands on a disc about 34 mm across).
If the body's centre of mass is not over that base (a wide thing resting on a narrow foot), it
lies on its back instead: the back is cut flat at a quarter of its depth and the piece lies there.

Grid: 64 cells on the outline's longest side at quality 1 to 320 at quality 10 (the front and
the back each take two triangles per cell).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from orfeas.errors import StageFailed
from orfeas.shape.extrude import trace_outline
from orfeas.shape.polygons import cross_section, manifold_to_trimesh, trimesh_to_manifold
from orfeas.shape.printability import review_printability
from orfeas.shape.raster import PictureFrame, quality_resolution
from orfeas.types import SettingsBackend, ShapeResult

if TYPE_CHECKING:
    import trimesh
    from shapely.geometry import MultiPolygon

    from orfeas.request import JobRequest
    from orfeas.types import Cutout, StageContext

GRID_MIN, GRID_MAX = 64, 320
PAD_CELLS = 2  # grid cells beyond the outline on each side, so the prism cuts through the grid
RADIUS_LEVELS = 24  # levels of the local-radius computation
SMOOTH_CELLS = 1.0  # σ of the Gaussian over the heights: the distance raster's steps go
BASE_CUT = 0.03  # of the silhouette's height, cut off flat to stand on
BACK_KEEP = 0.25  # of the back's depth kept when the piece lies on its back
STABLE_MARGIN = 0.1  # the centre of mass must be this share of the base's width inside it


class InflateBackend(SettingsBackend):
    name = "inflate"

    def generate(self, cutout: Cutout, request: JobRequest, ctx: StageContext) -> ShapeResult:
        mask = np.asarray(cutout.mask, dtype=bool)
        frame = PictureFrame(mask.shape[1], mask.shape[0])
        outline = trace_outline(mask, frame, request.quality, ctx, span=(0.0, 0.3))
        ctx.report(0.3)
        ctx.check()
        cells = quality_resolution(request.quality, GRID_MIN, GRID_MAX)
        xs, ys, height = inflated_heights(outline, cells, ctx)
        ctx.report(0.5)
        ctx.check()
        solid = two_sided_solid(xs, ys, height)
        depth = float(height.max())
        prism = cross_section(outline).extrude(2.0 * depth + 2.0).translate((0.0, 0.0, -depth - 1.0))
        body = trimesh_to_manifold(solid) ^ prism
        if body.is_empty():
            raise StageFailed(f"the inflated solid is empty ({body.status()})", stage=ctx.stage)
        ctx.report(0.8)
        ctx.check()
        body, stands, base = stand_or_lie(body, outline, depth)
        mesh = manifold_to_trimesh(body)
        if stands and mesh.body_count > 1:
            ctx.warn(
                f"inflate: the picture has {mesh.body_count} separate parts; only those that reach"
                " the base stand on it"
            )
        review_printability(mesh, outline, cutout, request, ctx, stands=stands)
        ctx.report(1.0)
        return ShapeResult(
            mesh=mesh,
            picture_box=frame.box,
            stands=stands,
            meta={
                "grid": [len(ys), len(xs)],
                "depth": round(2.0 * depth, 6),
                "stands": stands,
                "base": round(base, 6),
                "parts": len(outline.geoms),
            },
        )


def inflated_heights(
    outline: MultiPolygon, cells: int, ctx: StageContext
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid x (cols), y (rows, top first) over the outline and the height h at each grid point.

    Outside the outline h continues as the nearest inside point's, so the prism cut meets a
    surface that runs on smoothly across the rim.
    """
    import shapely
    from scipy.ndimage import distance_transform_edt, gaussian_filter

    x0, y0, x1, y1 = outline.bounds
    cell = max(x1 - x0, y1 - y0) / cells
    xs = np.arange(x0 - PAD_CELLS * cell, x1 + (PAD_CELLS + 1) * cell, cell)
    ys = np.arange(y1 + PAD_CELLS * cell, y0 - (PAD_CELLS + 1) * cell, -cell)
    gx, gy = np.meshgrid(xs, ys)
    inside = shapely.contains_xy(outline, gx, gy)
    if not inside.any():
        raise StageFailed("the outline is too thin for the inflate grid", stage=ctx.stage)

    # The raster's distance overstates the true one by about half a cell (a grid point next to
    # the outline is 1 cell from the first outside point, but about 0.5 from the outline).
    d = np.maximum(distance_transform_edt(inside) - 0.5, 0.5) * cell
    radius = local_radius(d, inside, cell)
    h = np.sqrt(np.maximum(d * (2.0 * radius - d), 0.0))
    _, (ri, ci) = distance_transform_edt(~inside, return_indices=True)
    h = h[ri, ci]  # inside: itself; outside: the nearest inside point's
    h = gaussian_filter(h, SMOOTH_CELLS, mode="nearest")
    return xs, ys, np.maximum(h, 0.5 * cell)


def local_radius(d: np.ndarray, inside: np.ndarray, cell: float) -> np.ndarray:
    """At each inside point, the radius of the largest inscribed circle that covers it (>= d)."""
    from scipy.ndimage import distance_transform_edt

    radius = d.copy()
    top = float(d.max())
    for t in np.linspace(top / RADIUS_LEVELS, top, RADIUS_LEVELS):
        core = d >= t
        if not core.any():
            break
        reach = distance_transform_edt(~core) * cell <= t
        radius = np.where(reach & inside & (radius < t), t, radius)
    return radius


def two_sided_solid(xs: np.ndarray, ys: np.ndarray, h: np.ndarray) -> trimesh.Trimesh:
    """A closed grid solid: front z = +h, back z = −h over the grid, vertical walls at its edge."""
    import trimesh

    nr, nc = h.shape
    gx, gy = np.meshgrid(xs, ys)
    front = np.column_stack([gx.ravel(), gy.ravel(), h.ravel()])
    back = front.copy()
    back[:, 2] *= -1.0
    vertices = np.concatenate([front, back])
    n = nr * nc

    idx = np.arange(n).reshape(nr, nc)
    # Row 0 is the top (largest y): seen from +Z, lower-left → lower-right → upper-right is CCW.
    ul, ur, ll, lr = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    quads = [np.stack([ll, lr, ur], -1).reshape(-1, 3), np.stack([ll, ur, ul], -1).reshape(-1, 3)]
    front_faces = np.concatenate(quads)
    back_faces = front_faces[:, ::-1] + n

    # The grid's perimeter, CCW seen from +Z; each edge gets a wall quad from front to back.
    ring = np.concatenate([idx[:-1, 0], idx[-1, :-1], idx[:0:-1, -1], idx[0, :0:-1]])
    a, b = ring, np.roll(ring, -1)
    walls = np.concatenate([np.stack([a, a + n, b + n], -1), np.stack([a, b + n, b], -1)])
    faces = np.concatenate([front_faces, back_faces, walls])
    return trimesh.Trimesh(vertices=vertices, faces=faces, process=False)


def stand_or_lie(
    body: Any, outline: MultiPolygon, depth: float
) -> tuple[Any, bool, float]:  # manifold3d.Manifold (untyped) in and out
    """Cut a flat base under the body and say whether it stands on it; else cut a flat back.

    Returns (solid, stands, base): `base` is the height cut off (standing) or the back's depth
    cut off (lying), in model units.
    """
    _, y0, _, y1 = outline.bounds
    cut = BASE_CUT * (y1 - y0)
    standing = body.trim_by_plane((0.0, 1.0, 0.0), y0 + cut)
    if not standing.is_empty() and _stable(standing, y0 + cut):
        return standing, True, cut
    back = (1.0 - BACK_KEEP) * depth
    lying = body.trim_by_plane((0.0, 0.0, 1.0), -depth + back)
    return lying, False, back


def _stable(solid: Any, base_y: float) -> bool:  # solid: a manifold3d.Manifold (untyped)
    """The centre of mass lies over the base (the faces on the cut plane), STABLE_MARGIN inside it."""
    mesh = solid.to_mesh()
    vertices = np.asarray(mesh.vert_properties)[:, :3]
    on_base = np.abs(vertices[:, 1] - base_y) < 1e-9 + 1e-6 * float(np.ptp(vertices[:, 1]))
    if on_base.sum() < 3:
        return False
    bx0, bx1 = float(vertices[on_base, 0].min()), float(vertices[on_base, 0].max())
    margin = STABLE_MARGIN * (bx1 - bx0)
    centre_x = _centroid_x(vertices, np.asarray(mesh.tri_verts, dtype=np.int64))
    return bx0 + margin <= centre_x <= bx1 - margin


def _centroid_x(vertices: np.ndarray, faces: np.ndarray) -> float:
    """The x of a closed mesh's centre of mass (signed tetrahedra from the origin)."""
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    volume = np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0
    total = float(volume.sum())
    if total <= 0:
        return float("nan")
    return float(((a[:, 0] + b[:, 0] + c[:, 0]) / 4.0 * volume).sum() / total)
