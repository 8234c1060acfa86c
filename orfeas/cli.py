"""`python -m orfeas generate PICTURE --out DIR ...`: the pipeline from a terminal.

`python -m orfeas tiny-models DIR` writes random-weight models in the published layouts
(orfeas/gpu/tiny_models.py) and prints the settings that point the GPU backends at them.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path
from typing import Any

from orfeas.backend_names import SHAPES, TEXTURES
from orfeas.errors import InvalidInput, OrfeasError
from orfeas.request import ALL_FORMATS, parse_request


def _formats(value: str) -> list[str]:
    return [f.strip().lower() for f in value.split(",") if f.strip()]


def _view(value: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    if not sep or name not in ("left", "back", "right") or not path:
        raise argparse.ArgumentTypeError(f"{value!r}: give left=PATH, back=PATH or right=PATH")
    return name, Path(path)


def _read_picture(path: Path, field: str) -> bytes:
    try:
        picture = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", field=field) from None
    if not picture:
        raise InvalidInput(f"{path} is empty (0 bytes)", field=field)
    return picture


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orfeas", description="Turn a picture into a 3D mesh.")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="make meshes from a picture")
    gen.add_argument("picture", help="path to a PNG, JPEG or WebP picture (the front view)")
    gen.add_argument(
        "--view",
        action="append",
        default=[],
        type=_view,
        metavar="NAME=PATH",
        help="another view for a multi-view model: left=PATH, back=PATH or right=PATH (repeatable)",
    )
    gen.add_argument("--out", required=True, type=Path, help="directory for the meshes")
    gen.add_argument(
        "--formats", type=_formats, default=["glb", "stl"], help=f"comma list of {','.join(ALL_FORMATS)}"
    )
    gen.add_argument("--quality", type=int, default=5, help="1-10 (default 5)")
    size = gen.add_mutually_exclusive_group()
    size.add_argument("--width-mm", type=float, help="scale so X is this long")
    size.add_argument("--height-mm", type=float, help="scale so Z (build height) is this long")
    size.add_argument("--depth-mm", type=float, help="scale so Y is this long")
    gen.add_argument("--target-faces", type=int, help="face budget (default from quality)")
    gen.add_argument("--backend", default="auto", help="|".join(("auto", *SHAPES)))
    gen.add_argument("--no-texture", action="store_true", help="skip colours")
    gen.add_argument(
        "--texture-backend",
        choices=TEXTURES,
        help="vertex colours or a Hunyuan3D-Paint UV texture (default: ORFEAS_TEXTURE_BACKEND)",
    )
    gen.add_argument("--no-backing", action="store_true", help="leave separate parts loose (no plate)")
    gen.add_argument(
        "--max-colors", type=int, default=4, help="colours (filaments) at most, 1-16 (default 4)"
    )
    gen.add_argument("--flat", action="store_true", help="one flat slab: colours not raised to heights")
    gen.add_argument("--seed", type=int)
    gen.add_argument("--job-id", help="name of the job (default: random)")
    gen.add_argument("--json", action="store_true", help="print the result as JSON (last line)")
    tiny = sub.add_parser("tiny-models", help="write random-weight models for smoke tests (no download)")
    tiny.add_argument("dir", type=Path, help="directory to use as ORFEAS_MODEL_DIR")
    tiny.add_argument("--seed", type=int, default=0)
    return parser


def tiny_models(args: argparse.Namespace) -> int:
    from orfeas.gpu.tiny_models import write_all
    from orfeas.settings import MODEL_DIR, SEGMENTATION_MODEL, TEXT_TO_IMAGE_MODEL

    folders = write_all(args.dir, seed=args.seed)
    for name, folder in folders.items():
        print(f"{name}: {folder}", file=sys.stderr)
    root = args.dir.resolve()
    print(
        f"{MODEL_DIR}={root} {TEXT_TO_IMAGE_MODEL}=tiny/sd-turbo {SEGMENTATION_MODEL}=tiny/segformer-fg"
        " ORFEAS_DEVICE=cpu"
    )
    return 0


def _request_dict(args: argparse.Namespace, picture: bytes) -> dict[str, Any]:
    front = base64.b64encode(picture).decode("ascii")
    data: dict[str, Any] = {
        "image": front,
        "formats": args.formats,
        "quality": args.quality,
        "backend": args.backend,
        "texture": not args.no_texture,
        "backing": not args.no_backing,
        "max_colors": args.max_colors,
        "color_relief": not args.flat,
    }
    for name in ("width_mm", "height_mm", "depth_mm"):
        if getattr(args, name) is not None:
            data["dimensions"] = {name: getattr(args, name)}
    if args.target_faces is not None:
        data["target_faces"] = args.target_faces
    if args.seed is not None:
        data["seed"] = args.seed
    if args.view:
        views = {"front": front}
        for name, path in args.view:
            views[name] = base64.b64encode(_read_picture(path, f"images.{name}")).decode("ascii")
        del data["image"]
        data["images"] = views
    return data


def _progress_printer(event: Any) -> None:
    eta = f", about {event.eta_seconds:.0f} s left" if event.eta_seconds is not None else ""
    print(f"[{event.fraction * 100:5.1f} %] {event.stage}{eta}", file=sys.stderr, flush=True)


def generate(args: argparse.Namespace) -> dict[str, Any]:
    from orfeas.pipeline import Pipeline
    from orfeas.settings import Settings

    picture = _read_picture(Path(args.picture), "image")
    request = parse_request(_request_dict(args, picture))
    settings = Settings.from_env()
    if args.texture_backend is not None:
        import dataclasses

        settings = dataclasses.replace(settings, texture_backend=args.texture_backend)
    pipeline = Pipeline(settings)
    result = pipeline.run(request, job_id=args.job_id, progress=_progress_printer)
    out_dir: Path = args.out / result.job_id
    out_dir.mkdir(parents=True, exist_ok=True)
    meshes = {}
    for fmt, artifact in result.artifacts.items():
        target = out_dir / f"model.{fmt}"
        target.write_bytes(artifact.data)
        meshes[fmt] = {
            "path": str(target),
            "bytes": artifact.size,
            "sha256": artifact.sha256,
            "content_type": artifact.content_type,
        }
    return result.as_dict(meshes)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "tiny-models":
        return tiny_models(args)
    try:
        result = generate(args)
    except OrfeasError as exc:
        print(str(exc), file=sys.stderr)
        if args.json:
            print(json.dumps({"error": str(exc), **exc.to_dict()}))
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        for fmt, info in result["meshes"].items():
            print(f"{fmt}: {info['path']} ({info['bytes']} bytes)")
    return 0
