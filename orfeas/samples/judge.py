"""Judge exported meshes against a generated picture's truth (orfeas.samples.logos), from the files.

- `off_colour_share`: of the top surface seen from above (the part's front), the share of its
  area whose displayed colour — vertex colours interpolated across each face, as viewers draw
  them — is farther than ΔE 10 (CIE76) from the truth's colour at that point. Points are laid on
  a grid over the mesh's footprint, mapped onto the picture by matching the footprint to the
  truth's foreground box; where the truth has backdrop (the outline is a fraction of a pixel
  off), the nearest foreground pixel's colour counts. A backing plate under loose parts is not
  part of the picture: top surface lower than half the part's height is left out, footprint too.
- `top_heights`: the distinct heights of the upward faces covering at least 1 % of the top area
  (a flat slab has one; a design that shows in one colour has several).
- `tool_changes`: a 3MF sliced by PrusaSlicer's CLI with a two-extruder profile; the number of
  times the G-code switches from one tool to another (None when prusa-slicer is not installed).
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from orfeas.texture.palette import srgb_to_lab

if TYPE_CHECKING:
    import trimesh

    from orfeas.samples.logos import Sample

OFF_DE = 10.0
GRID = 400  # sample points on the footprint's longest side
MIN_HEIGHT_SHARE = 0.01
# A backing plate is 40 % of the parts' thickness (orfeas/shape/backing.py): below this share of
# the highest top, a top face is plate, not design.
PLATE_CUT = 0.5


def _top_raster(mesh: trimesh.Trimesh, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Grid points over the footprint and, per point, the topmost upward face over it (-1: none)
    with the point's barycentric weights in it: (points (m, 2), face (m,), weights (m, 3), z (m,))."""
    v = np.asarray(mesh.vertices, dtype=np.float64)
    f = np.asarray(mesh.faces, dtype=np.int64)
    lo, hi = v[:, :2].min(axis=0), v[:, :2].max(axis=0)
    step = float((hi - lo).max()) / n
    xs = lo[0] + (np.arange(int(np.ceil((hi[0] - lo[0]) / step))) + 0.5) * step
    ys = lo[1] + (np.arange(int(np.ceil((hi[1] - lo[1]) / step))) + 0.5) * step
    gx, gy = np.meshgrid(xs, ys)
    points = np.column_stack([gx.ravel(), gy.ravel()])
    best_z = np.full(len(points), -np.inf)
    best_f = np.full(len(points), -1, dtype=np.int64)
    weights = np.zeros((len(points), 3))
    up = np.flatnonzero(np.asarray(mesh.face_normals)[:, 2] > 1e-6)
    tri = v[f[up]]
    for k, t in zip(up.tolist(), tri, strict=True):
        (x0, y0), (x1, y1) = t[:, :2].min(axis=0), t[:, :2].max(axis=0)
        c0, c1 = np.searchsorted(xs, x0), np.searchsorted(xs, x1, side="right")
        r0, r1 = np.searchsorted(ys, y0), np.searchsorted(ys, y1, side="right")
        if c0 >= c1 or r0 >= r1:
            continue
        idx = (np.arange(r0, r1)[:, None] * len(xs) + np.arange(c0, c1)[None, :]).ravel()
        p = points[idx]
        a, b, c = t[0, :2], t[1, :2], t[2, :2]
        det = (b[1] - c[1]) * (a[0] - c[0]) + (c[0] - b[0]) * (a[1] - c[1])
        if abs(det) < 1e-18:
            continue
        w0 = ((b[1] - c[1]) * (p[:, 0] - c[0]) + (c[0] - b[0]) * (p[:, 1] - c[1])) / det
        w1 = ((c[1] - a[1]) * (p[:, 0] - c[0]) + (a[0] - c[0]) * (p[:, 1] - c[1])) / det
        w2 = 1 - w0 - w1
        inside = (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
        z = w0 * t[0, 2] + w1 * t[1, 2] + w2 * t[2, 2]
        better = inside & (z > best_z[idx])
        sel = idx[better]
        best_z[sel], best_f[sel] = z[better], k
        weights[sel] = np.column_stack([w0, w1, w2])[better]
    return points, best_f, weights, best_z


def off_colour_share(mesh: trimesh.Trimesh, sample: Sample, threshold: float = OFF_DE) -> float:
    """Share of the top surface's area whose displayed colour is off the truth (see the module)."""
    from scipy.ndimage import distance_transform_edt

    colours = np.asarray(mesh.visual.vertex_colors)[:, :3].astype(np.float64)  # type: ignore[union-attr]  # a coloured mesh: ColorVisuals
    points, face, weights, z = _top_raster(mesh, GRID)
    v = np.asarray(mesh.vertices)
    design = v[:, 2] > PLATE_CUT * v[:, 2].max()  # the parts' own vertices, not a plate's
    seen = (face >= 0) & (z > PLATE_CUT * v[:, 2].max())
    corner = colours[np.asarray(mesh.faces)[face[seen]]]
    shown = np.einsum("ij,ijk->ik", weights[seen], corner)

    labels = sample.labels
    rows, cols = np.nonzero(labels >= 0)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    lo, hi = v[design, :2].min(axis=0), v[design, :2].max(axis=0)
    p = points[seen]
    col = np.clip(c0 + (p[:, 0] - lo[0]) / (hi[0] - lo[0]) * (c1 - c0), 0, labels.shape[1] - 1).astype(int)
    row = np.clip(r0 + (hi[1] - p[:, 1]) / (hi[1] - lo[1]) * (r1 - r0), 0, labels.shape[0] - 1).astype(int)
    _, (nr, nc) = distance_transform_edt(labels < 0, return_indices=True)
    truth = sample.colours[labels[nr[row, col], nc[row, col]]]
    de = np.linalg.norm(srgb_to_lab(np.round(shown).astype(np.uint8)) - srgb_to_lab(truth), axis=1)
    return float((de > threshold).mean()) if len(de) else 0.0


def top_heights(mesh: trimesh.Trimesh, resolution_mm: float = 0.01) -> list[float]:
    """Heights (mm, rounded to `resolution_mm`) of the top surface seen from above covering at
    least MIN_HEIGHT_SHARE of it, lowest first."""
    _, face, _, z = _top_raster(mesh, GRID)
    z = z[face >= 0]
    if len(z) == 0:
        return []
    levels, counts = np.unique(np.round(z / resolution_mm).astype(np.int64), return_counts=True)
    keep = counts >= MIN_HEIGHT_SHARE * len(z)
    return [round(float(h) * resolution_mm, 3) for h in levels[keep]]


PRUSA_SLICER = "prusa-slicer"
# Two extruders, coarse and quick: 0.3 mm layers, one perimeter, sparse infill, no skirt. The
# wipe tower is what PrusaSlicer needs to change tools (and wants relative extrusion for it).
TWO_EXTRUDERS = """\
nozzle_diameter = 0.4,0.4
extruder_colour = #FF0000;#0000FF
wipe_tower = 1
use_relative_e_distances = 1
layer_height = 0.3
first_layer_height = 0.3
perimeters = 1
top_solid_layers = 2
bottom_solid_layers = 2
fill_density = 10%
skirts = 0
"""


def slicer_available() -> bool:
    return shutil.which(PRUSA_SLICER) is not None


def tool_changes(model: bytes, suffix: str = ".3mf", timeout_s: float = 120.0) -> int | None:
    """Tool changes in PrusaSlicer's G-code for the model file's bytes; None without prusa-slicer."""
    if not slicer_available():
        return None
    with tempfile.TemporaryDirectory(prefix="orfeas-slice-") as tmp:
        folder = Path(tmp)
        (folder / "two.ini").write_text(TWO_EXTRUDERS)
        (folder / f"model{suffix}").write_bytes(model)
        done = subprocess.run(
            [
                PRUSA_SLICER,
                "--export-gcode",
                "--load",
                str(folder / "two.ini"),
                "--output",
                str(folder / "model.gcode"),
                str(folder / f"model{suffix}"),
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            # PrusaSlicer writes its settings under $HOME; a fresh one keeps runs independent.
            env={"PATH": "/usr/bin:/bin", "HOME": tmp},
        )
        gcode = folder / "model.gcode"
        if done.returncode != 0 or not gcode.exists():
            raise RuntimeError(
                f"prusa-slicer failed ({done.returncode}): {done.stdout[-800:]}{done.stderr[-800:]}"
            )
        tools = re.findall(r"^T(\d+)\s*$", gcode.read_text(errors="replace"), flags=re.MULTILINE)
    return sum(1 for a, b in itertools.pairwise(tools) if a != b)
