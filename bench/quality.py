"""What a user gets, measured from the files: generated pictures with known truth through the CLI.

    flock /tmp/orfeas-bench.lock .venv/bin/python bench/quality.py [--before /work/main] [--samples logo,icon]

Section "colour", per picture of orfeas/samples/logos.py (see orfeas/samples/judge.py):
  off_colour   share of the top surface whose displayed colour (PLY, read back) is more than
               ΔE 10 from the truth (target: ≤ 3 % for flat-colour logos and anti-aliased text)
  top_heights  distinct heights of the STL's top surface (> 1 means the design shows on a
               one-colour print; the smiley is colour only)
  faces        faces of the finished mesh
  tool_changes tool changes when PrusaSlicer slices the 3MF for two extruders (logo only)

`--before PATH` runs the same pictures through another checkout's CLI (its own .venv), judged by
this checkout's code, so a change is measured against main. More sections: add a callable to
SECTIONS (checkout → dict); bench/quality_cutout.py's `figures()`, when that file exists, is the
"cutout" section. Prints a table per section and one JSON line.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import trimesh  # noqa: E402

from orfeas.samples import logos  # noqa: E402
from orfeas.samples.judge import off_colour_share, tool_changes, top_heights  # noqa: E402


@dataclass(frozen=True)
class Checkout:
    """A checkout of the project whose CLI makes the meshes (its own .venv/bin/python)."""

    name: str
    path: Path

    @property
    def python(self) -> Path:
        return self.path / ".venv" / "bin" / "python"


def generate(
    checkout: Checkout, picture: bytes, folder: Path, formats: str
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The checkout's CLI on one picture: its result JSON and each mesh file's bytes."""
    (folder / "picture.png").write_bytes(picture)
    done = subprocess.run(
        [
            *(str(checkout.python), "-m", "orfeas", "generate", str(folder / "picture.png")),
            *("--out", str(folder), "--formats", formats, "--job-id", "q", "--json"),
        ],
        cwd=checkout.path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{checkout.name}: the CLI failed: {done.stderr[-1500:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    files = {p.suffix[1:]: p.read_bytes() for p in (folder / "q").iterdir() if p.is_file()}
    return result, files


def colour_section(checkout: Checkout, names: list[str]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for name in names:
        sample = logos.ALL[name]()
        with tempfile.TemporaryDirectory(prefix="orfeas-quality-") as tmp:
            result, files = generate(checkout, sample.png(), Path(tmp), "stl,ply,3mf")
        ply = trimesh.load(io.BytesIO(files["ply"]), file_type="ply", process=False)
        stl = trimesh.load(io.BytesIO(files["stl"]), file_type="stl")
        row: dict[str, Any] = {
            "backend": result["backend"],
            "faces": result["mesh"]["faces"],
            "top_heights": len(top_heights(stl)),
        }
        if sample.flat:
            row["off_colour"] = round(off_colour_share(ply, sample), 4)
        if name == "logo":
            row["tool_changes"] = tool_changes(files["3mf"])
        figures[name] = row
    return figures


SECTIONS: dict[str, Callable[[Checkout, list[str]], dict[str, Any]]] = {"colour": colour_section}


def _cutout_section() -> Callable[[Checkout, list[str]], dict[str, Any]] | None:
    path = Path(__file__).with_name("quality_cutout.py")
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("quality_cutout", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return lambda checkout, names: module.figures()


def _table(title: str, runs: dict[str, dict[str, Any]]) -> str:
    names = sorted({n for figures in runs.values() for n in figures})
    keys = sorted({k for figures in runs.values() for row in figures.values() for k in row})
    lines = [f"== {title} =="]
    for name in names:
        for run, figures in runs.items():
            row = figures.get(name, {})
            cells = "  ".join(f"{k}={row[k]}" for k in keys if k in row)
            lines.append(f"{name:14s} {run:7s} {cells}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, help="another checkout to compare with (e.g. /work/main)")
    parser.add_argument("--samples", default=",".join(logos.ALL), help="comma list of sample names")
    args = parser.parse_args()
    names = [n for n in args.samples.split(",") if n]
    checkouts = [Checkout("after", ROOT)]
    if args.before is not None:
        checkouts.insert(0, Checkout("before", args.before.resolve()))
    sections = dict(SECTIONS)
    cutout = _cutout_section()
    if cutout is not None:
        sections["cutout"] = cutout
    report: dict[str, Any] = {}
    for title, section in sections.items():
        runs = {c.name: section(c, names) for c in checkouts if title == "colour" or c.name == "after"}
        print(_table(title, runs))
        report[title] = runs
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
