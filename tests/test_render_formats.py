"""Blender (Debian's `blender`, 3.4) opens the sample's GLB and PLY as a user would and shows the
picture's colours: scripts/render_formats.py renders them and reads the pixels back."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.inputs_support import EMBLEM, ROOT

BLENDER = shutil.which("blender")
RED = (220, 60, 40)


@pytest.mark.slow
@pytest.mark.skipif(BLENDER is None, reason="Blender absent (Debian's blender): the render check cannot run")
def test_blender_shows_the_emblems_red_from_glb_and_ply(tmp_path: Path) -> None:
    """Imported by Blender's glTF and PLY importers, the emblem's red rim shows as the picture's
    red: within 3 units unlit, and lit by a white sky within the few units specular adds."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "orfeas",
            "generate",
            str(EMBLEM),
            "--out",
            str(tmp_path),
            "--formats",
            "glb,ply",
            "--job-id",
            "render",
            "--quality",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "renders"
    rendered = subprocess.run(
        [
            str(BLENDER),
            "-b",
            "--factory-startup",
            "--python",
            str(ROOT / "scripts" / "render_formats.py"),
            "--",
            str(tmp_path / "render"),
            str(out),
            "--samples",
            "16",
            "--size",
            "240x180",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert rendered.returncode == 0, rendered.stdout[-2000:] + rendered.stderr[-2000:]
    colours = json.loads((out / "colours.json").read_text())
    assert set(colours) == {"glb", "ply"}
    for fmt, probes in colours.items():
        assert (out / f"{fmt}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        np.testing.assert_allclose(probes["red"]["flat_srgb"], RED, atol=3, err_msg=fmt)
        # Lit: the white sky's specular lifts each channel a little (about +5, +15, +20 at 128
        # samples); sRGB read as linear would lift green and blue by about 75.
        lit = np.array(probes["red"]["srgb"])
        assert np.all(lit - RED > -6), (fmt, lit)
        assert np.all(lit - RED < 30), (fmt, lit)
