"""`python -m orfeas generate` as a user runs it: a subprocess, files on disk, JSON on the last line."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from tests.inputs_support import EMBLEM, ROOT, bomb_png, encode, gradient_rgb

ALL = "glb,stl,obj,ply,3mf"


def run_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orfeas", "generate", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_emblem_to_every_format_with_json(tmp_path: Path) -> None:
    """The emblem becomes five meshes; the JSON names each file with its real size and hash."""
    done = run_cli(str(EMBLEM), "--out", str(tmp_path), "--formats", ALL, "--width-mm", "80", "--json")
    assert done.returncode == 0, done.stderr
    result = last_json(done.stdout)
    assert set(result) >= {"job_id", "backend", "meshes", "mesh", "timings", "warnings"}
    assert result["backend"] == "extrude"  # an alpha logo
    assert set(result["meshes"]) == set(ALL.split(","))
    for fmt, info in result["meshes"].items():
        path = Path(info["path"])
        data = path.read_bytes()
        assert path.parent == tmp_path / result["job_id"]
        assert info["bytes"] == len(data)
        assert info["sha256"] == hashlib.sha256(data).hexdigest()
        assert info["content_type"]
        if fmt != "stl":  # STL, without colour, has the same solid in fewer faces (below)
            assert len(trimesh.load(path, force="mesh").faces) == result["mesh"]["faces"], fmt
    stl = trimesh.load(tmp_path / result["job_id"] / "model.stl")
    ply = trimesh.load(tmp_path / result["job_id"] / "model.ply")
    assert len(stl.faces) < len(ply.faces)
    assert stl.volume == pytest.approx(ply.volume, rel=1e-4)
    assert stl.is_watertight
    assert stl.extents[0] == pytest.approx(80.0, rel=0.01)
    assert stl.bounds[0][2] == pytest.approx(0.0, abs=1e-6)
    assert result["mesh"]["watertight"] is True
    assert result["mesh"]["extents_mm"][0] == pytest.approx(80.0, rel=0.01)
    assert {"input", "background", "shape", "texture", "export", "total"} <= set(result["timings"])
    assert "%] export" in done.stderr  # progress goes to stderr, the result alone to stdout


def test_photo_like_picture_becomes_a_coloured_relief(tmp_path: Path) -> None:
    """A shaded, noisy picture filling the frame picks relief; its PLY keeps the picture's colours."""
    rng = np.random.default_rng(2)
    coarse = rng.normal(size=(12, 16, 3))
    rgb = ((coarse - coarse.min()) / np.ptp(coarse) * 255).astype(np.uint8)
    photo = tmp_path / "photo.jpg"
    Image.fromarray(rgb).resize((320, 240), Image.Resampling.BICUBIC).save(photo, quality=85)
    done = run_cli(str(photo), "--out", str(tmp_path), "--formats", "ply", "--quality", "2", "--json")
    assert done.returncode == 0, done.stderr
    result = last_json(done.stdout)
    assert result["backend"] == "relief"
    assert result["mesh"]["watertight"] is True
    mesh = trimesh.load(result["meshes"]["ply"]["path"])
    assert len(np.unique(mesh.visual.vertex_colors[:, :3], axis=0)) > 50


def test_the_weights_free_job_imports_no_ml_stack(tmp_path: Path) -> None:
    """A whole CLI job on the weights-free path never imports torch, diffusers, transformers or hy3dgen."""
    code = (
        "import sys; from orfeas.cli import main; "
        f"rc = main(['generate', {str(EMBLEM)!r}, '--out', {str(tmp_path)!r}]); "
        "print(rc, sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'diffusers', 'transformers', 'hy3dgen'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "0 []"


_PNG = encode(gradient_rgb(320, 240), "PNG")
_TRUNCATED = _PNG[: len(_PNG) // 2]
BAD = {
    "html": (b"<!doctype html><html>nope</html>", "invalid_input: image: not a PNG, JPEG or WebP"),
    "truncated": (_TRUNCATED, "invalid_input: image: cannot decode PNG"),
    "bomb": (bomb_png(), "invalid_input: image: picture is 20000x20000"),
    "empty": (b"", "invalid_input: image: "),  # the path follows the field
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_pictures_exit_non_zero_with_a_coded_error(tmp_path: Path, kind: str) -> None:
    """Each bad picture exits 2, prints an error starting with its code, and writes no mesh."""
    data, prefix = BAD[kind]
    picture = tmp_path / f"{kind}.png"
    picture.write_bytes(data)
    out = tmp_path / "out"
    done = run_cli(str(picture), "--out", str(out), "--json", timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(prefix)
    error = last_json(done.stdout)
    assert error["code"] == "invalid_input"
    assert error["field"] == "image"
    assert not out.exists()


def test_missing_file_and_bad_options_are_refused(tmp_path: Path) -> None:
    """A missing picture, a quality out of range and two sizes at once are refused before any work."""
    missing = run_cli(str(tmp_path / "nope.png"), "--out", str(tmp_path))
    assert missing.returncode == 2
    assert missing.stderr.startswith("invalid_input: image: cannot read")
    quality = run_cli(str(EMBLEM), "--out", str(tmp_path), "--quality", "11")
    assert quality.returncode == 2
    assert quality.stderr.startswith("invalid_input: quality:")
    both = run_cli(str(EMBLEM), "--out", str(tmp_path), "--width-mm", "10", "--height-mm", "20")
    assert both.returncode == 2
    assert "not allowed with" in both.stderr


def test_flat_and_max_colors_reach_the_mesh(tmp_path: Path) -> None:
    """`--flat` gives the emblem's STL one top height; `--max-colors 1` one colour in the PLY."""
    from orfeas.samples import judge

    raised = run_cli(str(EMBLEM), "--out", str(tmp_path), "--formats", "stl", "--job-id", "r", "--json")
    flat = run_cli(str(EMBLEM), "--out", str(tmp_path), "--formats", "stl", "--job-id", "f", "--flat")
    one = run_cli(
        str(EMBLEM), "--out", str(tmp_path), "--formats", "ply", "--job-id", "o", "--max-colors", "1"
    )
    for done in (raised, flat, one):
        assert done.returncode == 0, done.stderr
    assert len(judge.top_heights(trimesh.load(tmp_path / "r" / "model.stl"))) >= 2
    assert len(judge.top_heights(trimesh.load(tmp_path / "f" / "model.stl"))) == 1
    ply = trimesh.load(tmp_path / "o" / "model.ply", process=False)
    assert len(np.unique(np.asarray(ply.visual.vertex_colors), axis=0)) == 1


def test_views_reach_the_request_and_a_one_picture_backend_refuses_them(tmp_path: Path) -> None:
    """`--view left=PATH` sends `images`; the extrude backend refuses it naming `images.left`,
    and a view file that is missing is refused naming its own field."""
    refused = run_cli(
        str(EMBLEM), "--out", str(tmp_path), "--backend", "extrude", "--view", f"left={EMBLEM}", "--json"
    )
    assert refused.returncode == 2
    assert last_json(refused.stdout)["field"] == "images.left"
    assert "extrude" in last_json(refused.stdout)["message"]
    missing = run_cli(str(EMBLEM), "--out", str(tmp_path), "--view", f"back={tmp_path / 'nope.png'}")
    assert missing.returncode == 2
    assert missing.stderr.startswith("invalid_input: images.back: cannot read")
    bad_name = run_cli(str(EMBLEM), "--out", str(tmp_path), "--view", f"top={EMBLEM}")
    assert bad_name.returncode == 2
    assert "left=PATH" in bad_name.stderr
