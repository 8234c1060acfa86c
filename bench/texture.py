"""UV unwrap and texture bake at 40k, 100k and 300k faces: time and peak memory per step.

    flock /tmp/orfeas-bench.lock .venv/bin/python bench/texture.py [--sizes 40000,100000,300000]
        [--budget 40000] [--texture 1024] [--view 512] [--timeout 300] [--small]

Mesh (made here, seeded): a UV sphere with smooth radial bumps, about N faces. For each N, in
a fresh subprocess each (so peak RSS is the step's own):
  unwrap_full      xatlas on all N faces (what hy3dgen's mesh_uv_wrap does)
  decimate_unwrap  orfeas.texture.unwrap: decimate to --budget faces, then xatlas
  bake             orfeas.texture.bake of Hunyuan3D-Paint's six views (--view px each, filled
                   with noise) into a --texture² atlas, on the decimated, unwrapped mesh
Figures: seconds and peak RSS (MB, ru_maxrss of the subprocess, imports included); for the bake
also the RSS its subprocess had reached before baking (imports and the unwrap), so the bake's own
growth is the difference. A step over --timeout seconds is reported as such. Prints a table and
one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def bumpy_sphere(faces: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    count = max(8, round((faces / 3.8) ** 0.5))  # uv_sphere(count=[c, c]) has about 3.8 c² faces
    mesh = trimesh.creation.uv_sphere(radius=1.0, count=[count, count])
    mesh.merge_vertices()
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(12, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    unit = mesh.vertices / np.linalg.norm(mesh.vertices, axis=1, keepdims=True)
    radius = 1.0 + 0.08 * np.sin(6.0 * unit @ directions.T).sum(axis=1) / 3.0
    return unit * radius[:, None], np.asarray(mesh.faces)


def run_step(step: str, faces: int, args: argparse.Namespace) -> dict:
    from orfeas.texture.views import normalise

    vertices, tri = bumpy_sphere(faces)
    vertices = normalise(vertices)
    start = time.perf_counter()
    if step == "unwrap_full":
        import xatlas

        xatlas.parametrize(vertices.astype(np.float32), tri.astype(np.uint32))
    elif step == "decimate_unwrap":
        from orfeas.texture.unwrap import unwrap

        unwrap(vertices, tri, args.budget)
    elif step == "bake":
        from orfeas.texture.bake import bake
        from orfeas.texture.unwrap import unwrap
        from orfeas.texture.views import PAINT_VIEWS

        uvm = unwrap(vertices, tri, args.budget)
        rng = np.random.default_rng(1)
        images = [rng.integers(0, 256, (args.view, args.view, 3), dtype=np.uint8) for _ in PAINT_VIEWS]
        # The unwrap above is not the bake's: the RSS it reached is reported apart.
        before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        bake(uvm.vertices, uvm.faces, uvm.uvs, PAINT_VIEWS, images, args.texture)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = {"faces": len(tri), "seconds": round(seconds, 3), "peak_rss_mb": round(peak_mb, 1)}
    if step == "bake":
        row["rss_before_bake_mb"] = round(before_mb, 1)
        row["bake_faces"] = len(uvm.faces)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="40000,100000,300000")
    parser.add_argument("--budget", type=int, default=40_000)
    parser.add_argument("--texture", type=int, default=1024)
    parser.add_argument("--view", type=int, default=512)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--small", action="store_true", help="2k faces, 2k budget, 128² texture (smoke)")
    parser.add_argument("--one", nargs=2, metavar=("STEP", "FACES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.small:
        args.sizes, args.budget, args.texture, args.view = "2000", 2000, 128, 64
    if args.one:
        print(json.dumps(run_step(args.one[0], int(args.one[1]), args)))
        return
    passed = ["--budget", str(args.budget), "--texture", str(args.texture), "--view", str(args.view)]
    report: dict = {"budget": args.budget, "texture": args.texture, "view": args.view, "rows": []}
    for faces in (int(s) for s in args.sizes.split(",")):
        row: dict = {"faces_requested": faces}
        for step in ("unwrap_full", "decimate_unwrap", "bake"):
            try:
                done = subprocess.run(
                    [sys.executable, __file__, *passed, "--one", step, str(faces)],
                    capture_output=True,
                    text=True,
                    timeout=args.timeout,
                )
                if done.returncode != 0:
                    raise RuntimeError(done.stderr.strip().splitlines()[-1])
                row[step] = json.loads(done.stdout.strip().splitlines()[-1])
            except subprocess.TimeoutExpired:
                row[step] = {"seconds": None, "over_s": args.timeout}
        report["rows"].append(row)
        cells = [
            f"{row[s]['seconds']:.2f} s / {row[s]['peak_rss_mb']:.0f} MB"
            if row[s]["seconds"] is not None
            else "timeout"
            for s in ("unwrap_full", "decimate_unwrap", "bake")
        ]
        if row["bake"]["seconds"] is not None:
            cells[2] += f" (from {row['bake']['rss_before_bake_mb']:.0f} MB before it)"
        print(
            f"{row['unwrap_full'].get('faces', faces):>7} faces: full unwrap {cells[0]}; "
            f"decimate+unwrap {cells[1]}; bake {cells[2]}",
            file=sys.stderr,
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
