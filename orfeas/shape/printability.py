"""Will it print? Feature width and thickness at the asked size against a 0.4 mm nozzle, and enlargement.

A shape is built in model units; its printed size is only fixed when the export stage scales it
(orfeas/mesh/placement.py). `build_scale` gives the same millimetres per unit here, so a shape
backend can judge its own outline at the size it will be printed:

- features thinner than the nozzle: the outline opened by half the nozzle width (shrunk by
  0.2 mm, then grown back) loses exactly the strokes and spurs a 0.4 mm line cannot draw; what
  is lost in pieces of at least a nozzle's width squared (0.16 mm², so the rounding of ordinary
  corners, about 0.01 mm² each, does not count) is reported, with its width and where it is;
- thickness: a slab thinner than two extrusion lines (0.8 mm) prints as a fragile film;
- enlargement: a picture printed at more than 0.5 mm per source pixel has steps a hand can feel
  and detail no finer than its pixels (a 32 x 32 icon at 100 mm: 3.1 mm per pixel).

Findings are warnings (ctx.warn), which the job's result lists; none of them stops the job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from orfeas.mesh.placement import build_scale

if TYPE_CHECKING:
    import trimesh
    from shapely.geometry import MultiPolygon

    from orfeas.request import JobRequest
    from orfeas.types import Cutout, StageContext

NOZZLE_MM = 0.4
MIN_WALL_MM = 2 * NOZZLE_MM
MIN_THIN_AREA_MM2 = NOZZLE_MM**2
MAX_MM_PER_PIXEL = 0.5
MAX_LISTED = 3  # thin features named by position in the warning


def printed_scale(mesh: trimesh.Trimesh, *, stands: bool, request: JobRequest, ctx: StageContext) -> float:
    """Millimetres per model unit once the export stage has scaled the mesh (placement's rule)."""
    return build_scale(
        np.asarray(mesh.vertices),
        stands=stands,
        dimensions=request.dimensions,
        default_size_mm=ctx.settings.default_size_mm,
    )


def review_printability(
    mesh: trimesh.Trimesh,
    outline: MultiPolygon | None,
    cutout: Cutout,
    request: JobRequest,
    ctx: StageContext,
    *,
    stands: bool,
    layers: dict[str, float] | None = None,
) -> float:
    """Warn about what will not print well at the asked size; return the millimetres per unit.

    `layers` names slab thicknesses in model units ({"piece": 0.08, "backing plate": 0.032}).
    """
    scale = printed_scale(mesh, stands=stands, request=request, ctx=ctx)
    warn_if_enlarged(cutout, scale, ctx)
    if outline is not None and not outline.is_empty:
        warn_thin_features(outline, scale, ctx)
    for name, thickness in (layers or {}).items():
        mm = thickness * scale
        if mm < MIN_WALL_MM:
            ctx.warn(
                f"printability: the {name} is {mm:.2f} mm thick at this size, under {MIN_WALL_MM:.1f} mm"
                f" (two {NOZZLE_MM} mm lines); print it larger"
            )
    return scale


def source_pixels(cutout: Cutout) -> tuple[int, int]:
    """The picture's own (width, height) in pixels, before any enlargement by the background stage."""
    width, height = cutout.image.size
    return max(1, round(width / cutout.upscale)), max(1, round(height / cutout.upscale))


def warn_if_enlarged(cutout: Cutout, scale: float, ctx: StageContext) -> float:
    """Warn when a source pixel is printed wider than MAX_MM_PER_PIXEL; return mm per pixel.

    The picture's longest side is one model unit (orfeas/shape/raster.py's PictureFrame).
    """
    width, height = source_pixels(cutout)
    per_pixel = scale / max(width, height)
    if per_pixel > MAX_MM_PER_PIXEL:
        smoothed = "; its outline is smoothed, its detail is that of its pixels" if cutout.upscale > 1 else ""
        ctx.warn(
            f"printability: the picture is {width} x {height} px, enlarged to {per_pixel:.2f} mm per pixel"
            f" (over {MAX_MM_PER_PIXEL} mm){smoothed}; a larger picture prints finer"
        )
    return per_pixel


def thin_features(
    outline: MultiPolygon, scale: float, nozzle_mm: float = NOZZLE_MM
) -> list[dict[str, float]]:
    """The parts of the outline (at `scale` mm per unit) that a `nozzle_mm` line cannot draw.

    Each is {"width_mm", "area_mm2", "x_mm", "y_mm"} (position from the outline's lower left),
    largest first; width is 2·area/perimeter, a strip's width.
    """
    import shapely
    from shapely import affinity

    shape = affinity.scale(outline, xfact=scale, yfact=scale, origin=(0.0, 0.0))
    r = nozzle_mm / 2.0
    opened = shape.buffer(-r, quad_segs=4).buffer(r, quad_segs=4)
    # A hair of slack: the opened outline's arcs sit a little inside the original's straight edges.
    lost = shape.difference(opened.buffer(1e-3 * nozzle_mm, quad_segs=4))
    x0, y0 = shape.bounds[0], shape.bounds[1]
    found = []
    for piece in getattr(lost, "geoms", [lost]):
        if piece.is_empty or piece.area < MIN_THIN_AREA_MM2 or piece.geom_type != "Polygon":
            continue
        point = shapely.point_on_surface(piece)
        found.append(
            {
                "width_mm": 2.0 * piece.area / piece.length,
                "area_mm2": piece.area,
                "x_mm": point.x - x0,
                "y_mm": point.y - y0,
            }
        )
    return sorted(found, key=lambda f: -f["area_mm2"])


def warn_thin_features(outline: MultiPolygon, scale: float, ctx: StageContext) -> list[dict[str, float]]:
    """Warn about the features thinner than the nozzle (see thin_features), naming where they are."""
    found = thin_features(outline, scale)
    if not found:
        return found
    x0, y0, x1, y1 = outline.bounds
    size = f"{(x1 - x0) * scale:.1f} x {(y1 - y0) * scale:.1f} mm"
    share = sum(f["area_mm2"] for f in found) / (outline.area * scale**2)
    where = ", ".join(
        f"{f['width_mm']:.2f} mm wide at ({f['x_mm']:.1f}, {f['y_mm']:.1f}) mm" for f in found[:MAX_LISTED]
    )
    more = f" and {len(found) - MAX_LISTED} more" if len(found) > MAX_LISTED else ""
    ctx.warn(
        f"printability: {len(found)} stroke(s) thinner than the {NOZZLE_MM} mm nozzle at {size}"
        f" ({share:.1%} of the outline): {where}{more} (from the lower left); a slicer drops them,"
        " so print it larger or with a finer nozzle"
    )
    return found
