"""Cut-outs of photo-like pictures with known masks, before and after the photo backdrop model, and
the shape a photographed ball becomes.

    flock /tmp/orfeas-bench.lock .venv/bin/python bench/quality_cutout.py

The pictures are orfeas/samples/photos.py's (a ball on a gradient, a bottle on a vignette, a blob
on a textured backdrop, a mug as a JPEG, an EXIF-rotated portrait). For each: the IoU of the mask
with the truth, "before" by the border-colour flood fill alone (what the classic remover did
before the photo model: orfeas.background.classic.mask_from_border) and "after" by the classic
remover as it is, with its method and confidence. For the ball: the printed extents and the
width/height ratio (truth 1.0) before (the flood fill's mask through `relief`, which `auto` chose
for it) and after (the remover and `auto` as they are). Prints a table and one JSON line;
`figures()` returns the same dict.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orfeas.background.classic import ClassicBackgroundRemover, mask_from_border
from orfeas.deadline import Deadline
from orfeas.inputs.decode import decode_image
from orfeas.mesh.finish import finish_mesh
from orfeas.pipeline import Pipeline
from orfeas.request import JobRequest, parse_request
from orfeas.samples import photos
from orfeas.settings import Settings
from orfeas.shape.relief import ReliefBackend
from orfeas.types import Cutout, StageContext

SETTINGS = Settings()
QUALITY = 5
BALL_TOLERANCE = 0.06  # the goal: within 6 % of the truth


def _ctx(stage: str) -> StageContext:
    return StageContext(
        job_id="bench", stage=stage, settings=SETTINGS, report=lambda _: None, deadline=Deadline(600)
    )


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / float((a | b).sum())


def _before(image: Image.Image) -> Cutout:
    """The flood fill alone, as the classic remover answered for a picture without alpha."""
    rgba = image.convert("RGBA")
    found = mask_from_border(rgba, _ctx("background")).mask
    mask = np.ones((rgba.height, rgba.width), dtype=bool) if found is None else found
    cut = rgba.copy()
    cut.putalpha(Image.fromarray(mask.astype(np.uint8) * 255, "L"))
    return Cutout(image=cut, mask=mask, method="border")


def _extents(shape_mesh: Any, stands: bool) -> list[float]:
    request = JobRequest(image="x", quality=QUALITY)
    finished = finish_mesh(
        shape_mesh,
        stands=stands,
        face_budget=request.face_budget,
        dimensions=None,
        default_size_mm=SETTINGS.default_size_mm,
        ctx=_ctx("export"),
    )
    return [round(float(v), 2) for v in finished.extents]


def _ratio(extents_mm: list[float], stands: bool) -> float:
    """Width over height of the picture's object: build X over build Z (standing) or Y (lying)."""
    return round(extents_mm[0] / extents_mm[2 if stands else 1], 4)


def ball_figures() -> dict[str, Any]:
    sample = photos.ball_on_gradient()
    image = decode_image(sample.data, max_pixels=SETTINGS.max_image_pixels)
    relief = ReliefBackend(SETTINGS).generate(
        _before(image), JobRequest(image="x", quality=QUALITY), _ctx("shape")
    )
    before = _extents(relief.mesh, relief.stands)
    request = parse_request(
        {"image": base64.b64encode(sample.data).decode(), "formats": ["stl"], "quality": QUALITY}
    )
    result = Pipeline(SETTINGS).run(request, job_id="bench-ball")
    after = [round(v, 2) for v in result.mesh.extents_mm]
    stands = bool(result.extra["shape"].get("stands", False))
    ratio_after = _ratio(after, stands)
    return {
        "truth_ratio": 1.0,
        "before": {"backend": "relief", "extents_mm": before, "ratio": _ratio(before, False)},
        "after": {
            "backend": result.backend,
            "extents_mm": after,
            "ratio": ratio_after,
            "background": result.extra["background"],
        },
        "within_6pct": abs(ratio_after - 1.0) <= BALL_TOLERANCE,
    }


def figures() -> dict[str, Any]:
    remover = ClassicBackgroundRemover(SETTINGS)
    pictures: dict[str, Any] = {}
    for name, make in photos.SAMPLES.items():
        sample = make()
        image = decode_image(sample.data, max_pixels=SETTINGS.max_image_pixels)
        started = time.perf_counter()
        after = remover.remove(image, _ctx("background"))
        seconds = time.perf_counter() - started
        pictures[name] = {
            "iou_before": round(_iou(_before(image).mask, sample.truth), 4),
            "iou_after": round(_iou(after.mask, sample.truth), 4),
            "method_after": after.method,
            "confidence": after.confidence,
            "seconds_after": round(seconds, 3),
        }
    return {"pictures": pictures, "ball": ball_figures()}


def main() -> int:
    report = figures()
    print(f"{'picture':22s} {'IoU before':>10s} {'IoU after':>10s}  method     confidence  seconds")
    for name, row in report["pictures"].items():
        print(
            f"{name:22s} {row['iou_before']:10.4f} {row['iou_after']:10.4f}  {row['method_after']:9s}"
            f"  {row['confidence']:10.4f}  {row['seconds_after']:7.3f}"
        )
    ball = report["ball"]
    for when in ("before", "after"):
        b = ball[when]
        print(
            f"ball {when:6s}: {b['backend']:8s} extents {b['extents_mm']} mm, width/height {b['ratio']:.3f}"
        )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
