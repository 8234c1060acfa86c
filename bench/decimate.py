"""Decimation: our path (orfeas.mesh.decimate, fast_simplification) against pymeshlab's quadric edge
collapse with the settings Hunyuan3D's FaceReducer uses, on the same ~1.3M-face meshes, same run.

    .venv/bin/python bench/decimate.py [--target 100000] [--repeat 3] [--samples 200000] [--small]

Meshes (made here, seeded):
  sphere  an icosphere (8 subdivisions, 1,310,720 faces) with smooth bumps and fine noise
  relief  a closed heightfield slab: 800 × 800 cells of blurred noise and ridges on a flat base
          (1,286,400 faces), the shape of what the `relief` backend makes

Figures per mesh: median seconds of each (ours: decimate() including its clean-up pass;
pymeshlab: the filter call alone, no conversion), the time ratio, and the distance of each
result to the original, as a share of the bounding-box diagonal: symmetric Hausdorff (the
largest of both directions) and mean surface distance (the mean of both directions), from
`--samples` area-weighted surface samples of one mesh and their exact closest points on the
other (MeshLab's Hausdorff filter, the Metro method). Goal: ≥ 5× faster, distances within
1.2× of pymeshlab's. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import trimesh
from scipy.ndimage import gaussian_filter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orfeas.mesh.decimate import decimate
from orfeas.mesh.repair import MeshArrays

# Hunyuan3D-2's hy3dgen/shapegen/postprocessors.py reduce_face(): the baseline's settings.
PYMESHLAB_SETTINGS = {
    "qualitythr": 1.0,
    "preserveboundary": True,
    "boundaryweight": 3,
    "preservenormal": True,
    "preservetopology": True,
    "autoclean": True,
}


def bumpy_sphere(subdivisions: int = 8) -> MeshArrays:
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions)
    x = np.asarray(sphere.vertices)
    rng = np.random.default_rng(11)
    radius = (
        1.0
        + 0.08 * np.sin(7 * x[:, 0]) * np.sin(6 * x[:, 1]) * np.sin(5 * x[:, 2])
        + 0.03 * np.sin(23 * x[:, 0] + 2) * np.cos(19 * x[:, 2])
        + 0.0005 * rng.standard_normal(len(x))
    )
    return MeshArrays(x * radius[:, None], np.asarray(sphere.faces, np.int64))


def relief_slab(cells: int = 800) -> MeshArrays:
    """A heightfield on a flat base, closed: top grid, four walls, a bottom fan."""
    rng = np.random.default_rng(5)
    n = cells + 1
    y, x = np.mgrid[0:n, 0:n] / cells
    height = gaussian_filter(rng.standard_normal((n, n)), 6) * 6.0
    height += 0.15 * np.sin(9 * x) * np.cos(7 * y) + 0.1 * (np.abs(np.sin(20 * (x + y))) > 0.9)
    height = 0.1 + (height - height.min()) * 0.2
    top = np.column_stack([x.ravel(), y.ravel(), height.ravel()])
    index = np.arange(n * n).reshape(n, n)
    a, b = index[:-1, :-1].ravel(), index[:-1, 1:].ravel()
    c, d = index[1:, :-1].ravel(), index[1:, 1:].ravel()
    faces = [np.column_stack([a, b, d]), np.column_stack([a, d, c])]
    # The rim, counter-clockwise seen from above, and its copy on z = 0.
    rim = np.concatenate([index[0, :-1], index[:-1, -1], index[-1, :0:-1], index[:0:-1, 0]])
    base = top[rim] * [1.0, 1.0, 0.0]
    base_start = len(top)
    centre = base_start + len(rim)
    vertices = np.vstack([top, base, [[0.5, 0.5, 0.0]]])
    k = np.arange(len(rim))
    k1 = (k + 1) % len(rim)
    low, low1 = base_start + k, base_start + k1
    faces.append(np.column_stack([rim[k], low[k], low1]))
    faces.append(np.column_stack([rim[k], low1, rim[k1]]))
    faces.append(np.column_stack([np.full(len(rim), centre), low1, low]))
    mesh = MeshArrays(vertices, np.concatenate(faces).astype(np.int64))
    check = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    assert check.is_watertight, "the relief slab must be closed"
    assert check.volume > 0, "the relief slab must face outward"
    return mesh


def ours(mesh: MeshArrays, target: int) -> MeshArrays:
    return decimate(mesh, target)


def pymeshlab_quadric(mesh: MeshArrays, target: int) -> tuple[MeshArrays, float]:
    """The baseline; returns the result and the seconds of the filter call alone."""
    import pymeshlab

    ms = pymeshlab.MeshSet()
    ms.add_mesh(pymeshlab.Mesh(vertex_matrix=mesh.vertices, face_matrix=mesh.faces.astype(np.int32)))
    started = time.perf_counter()
    ms.meshing_decimation_quadric_edge_collapse(targetfacenum=target, **PYMESHLAB_SETTINGS)
    seconds = time.perf_counter() - started
    current = ms.current_mesh()
    return MeshArrays(current.vertex_matrix(), current.face_matrix().astype(np.int64)), seconds


def quality(original: MeshArrays, result: MeshArrays, samples: int) -> dict[str, float]:
    """Distances between the surfaces as shares of the original's bounding-box diagonal.

    MeshLab's Hausdorff filter (the Metro tool's method): `samples` area-weighted points on one
    surface, each with its exact closest point on the other (a spatial grid finds it), both ways.
    """
    import pymeshlab

    ms = pymeshlab.MeshSet()
    for mesh in (original, result):
        ms.add_mesh(pymeshlab.Mesh(vertex_matrix=mesh.vertices, face_matrix=mesh.faces.astype(np.int32)))
    both = [
        ms.get_hausdorff_distance(
            sampledmesh=a, targetmesh=b, samplevert=False, sampleface=True, samplenum=samples
        )
        for a, b in ((0, 1), (1, 0))
    ]
    diagonal = float(np.linalg.norm(np.ptp(original.vertices, axis=0)))
    return {
        "hausdorff": max(d["max"] for d in both) / diagonal,
        "mean": sum(d["mean"] for d in both) / 2 / diagonal,
    }


def timed(fn: Callable[[], MeshArrays], repeat: int) -> tuple[MeshArrays, float]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    assert result is not None
    return result, statistics.median(times)


def run_case(name: str, mesh: MeshArrays, target: int, repeat: int, samples: int) -> dict[str, object]:
    ours_mesh, ours_s = timed(lambda: ours(mesh, target), repeat)
    base_times, base_mesh = [], None
    for _ in range(repeat):
        base_mesh, seconds = pymeshlab_quadric(mesh, target)
        base_times.append(seconds)
    assert base_mesh is not None
    base_s = statistics.median(base_times)
    ours_q, base_q = quality(mesh, ours_mesh, samples), quality(mesh, base_mesh, samples)
    watertight = trimesh.Trimesh(ours_mesh.vertices, ours_mesh.faces, process=False).is_watertight
    return {
        "mesh": name,
        "faces_in": len(mesh.faces),
        "faces_ours": len(ours_mesh.faces),
        "faces_pymeshlab": len(base_mesh.faces),
        "ours_s": round(ours_s, 3),
        "pymeshlab_s": round(base_s, 3),
        "speedup": round(base_s / ours_s, 2),
        "hausdorff_ours": ours_q["hausdorff"],
        "hausdorff_pymeshlab": base_q["hausdorff"],
        "hausdorff_ratio": round(ours_q["hausdorff"] / base_q["hausdorff"], 3),
        "mean_ours": ours_q["mean"],
        "mean_pymeshlab": base_q["mean"],
        "mean_ratio": round(ours_q["mean"] / base_q["mean"], 3),
        "ours_watertight": bool(watertight),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument(
        "--small",
        action="store_true",
        help="~20k-face meshes to 2k faces: checks the script, measures nothing",
    )
    args = parser.parse_args()
    sphere, slab = (
        (lambda: bumpy_sphere(5), lambda: relief_slab(100)) if args.small else (bumpy_sphere, relief_slab)
    )
    if args.small:
        args.target, args.repeat, args.samples = 2_000, 1, 5_000

    rows = []
    for name, make in (("sphere", sphere), ("relief", slab)):
        rows.append(run_case(name, make(), args.target, args.repeat, args.samples))

    header = (
        f"{'mesh':8} {'faces in':>10} {'ours s':>8} {'pml s':>8} {'speedup':>8} "
        f"{'H ours':>10} {'H pml':>10} {'H ratio':>8} {'mean ours':>10} {'mean pml':>10} {'m ratio':>8}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['mesh']:8} {r['faces_in']:>10} {r['ours_s']:>8.3f} {r['pymeshlab_s']:>8.3f} "
            f"{r['speedup']:>7.2f}x {r['hausdorff_ours']:>10.3e} {r['hausdorff_pymeshlab']:>10.3e} "
            f"{r['hausdorff_ratio']:>8.3f} {r['mean_ours']:>10.3e} {r['mean_pymeshlab']:>10.3e} "
            f"{r['mean_ratio']:>8.3f}"
        )
    print(json.dumps({"bench": "decimate", "target": args.target, "repeat": args.repeat, "cases": rows}))


if __name__ == "__main__":
    main()
