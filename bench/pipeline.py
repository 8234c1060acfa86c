"""A 1024x1024 picture through every stage: seconds per stage and the share of the job spent
outside the stages' own compute (goal: < 5 %).

    .venv/bin/python bench/pipeline.py [--repeat 3]

Both pictures are made here: a flat-colour logo with alpha (extrude path) and a photo-like
gradient scene (relief path). Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orfeas.pipeline import Pipeline
from orfeas.request import parse_request
from orfeas.settings import Settings

SIZE = 1024


def logo_picture() -> bytes:
    img = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.ellipse((64, 64, SIZE - 64, SIZE - 64), fill=(200, 40, 40, 255))
    d.ellipse((256, 256, SIZE - 256, SIZE - 256), fill=(0, 0, 0, 0))
    d.rectangle((SIZE // 2 - 40, 100, SIZE // 2 + 40, SIZE - 100), fill=(30, 30, 200, 255))
    return _png(img)


def photo_picture() -> bytes:
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    r = 0.5 + 0.5 * np.sin(6 * x + 3 * y)
    g = 0.5 + 0.5 * np.cos(4 * y - 2 * x)
    b = np.clip(1 - np.hypot(x - 0.5, y - 0.5) * 1.6, 0, 1)
    rgb = np.stack([r, g, b], axis=-1) * 255 + rng.normal(0, 6, (SIZE, SIZE, 3))
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB").filter(ImageFilter.GaussianBlur(2))
    return _png(img.convert("RGBA"))


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def run_case(pipeline: Pipeline, picture: bytes, repeat: int) -> dict[str, object]:
    request = parse_request(
        {"image": base64.b64encode(picture).decode(), "formats": ["glb", "stl", "obj", "ply", "3mf"]}
    )
    runs = []
    for i in range(repeat + 1):
        result = pipeline.run(request, job_id=f"bench-{i}")
        if i:  # the first run warms caches and imports; it is not counted
            runs.append(result)
    stages = [k for k in runs[0].timings if k != "total"]
    per_stage = {k: statistics.median(r.timings[k] for r in runs) for k in stages}
    total = statistics.median(r.timings["total"] for r in runs)
    outside = statistics.median(r.timings["total"] - sum(r.timings[k] for k in stages) for r in runs)
    return {
        "backend": runs[0].backend,
        "faces": runs[0].mesh.faces,
        "stages_s": {k: round(v, 4) for k, v in per_stage.items()},
        "total_s": round(total, 4),
        "outside_stages_share": round(outside / total, 5),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    pipeline = Pipeline(Settings.from_env())
    report = {
        "logo": run_case(pipeline, logo_picture(), args.repeat),
        "photo": run_case(pipeline, photo_picture(), args.repeat),
    }
    for name, case in report.items():
        print(f"{name}: backend={case['backend']} faces={case['faces']} total={case['total_s']:.3f} s")
        for stage, seconds in case["stages_s"].items():  # type: ignore[union-attr]
            print(f"    {stage:<14} {seconds:8.3f} s")
        share = case["outside_stages_share"]
        verdict = "ok" if share < 0.05 else "OVER GOAL"  # type: ignore[operator]
        print(f"    outside stages {share * 100:6.2f} % of the job (goal < 5 %): {verdict}")  # type: ignore[operator]
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
