"""The Khronos glTF validator (npm `gltf-validator`, pinned in tools/package.json) run on GLB bytes.

`make setup` installs it into tools/node_modules with `npm ci`; without Node.js the tests that
use it skip, with Node.js but without the package they fail and say how to install it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from orfeas.mesh.gltf import read_accessor, read_glb

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "validate_gltf.mjs"
PACKAGE = ROOT / "tools" / "node_modules" / "gltf-validator"
# Issues that are not errors but would still mean the file is not what we meant to write.
UNWANTED = {
    "NON_OBJECT_EXTRAS",  # extras must be objects
    "MESH_PRIMITIVE_GENERATED_TANGENT_SPACE",  # normals missing where a material needs them
    "NODE_EMPTY",
    "UNUSED_OBJECT",  # an accessor, view or material written but never used
    "BUFFER_VIEW_TARGET_MISSING",  # viewers guess the GPU buffer's kind
    "ACCESSOR_NON_UNIT",  # a normal that is not unit length
    "MESH_PRIMITIVE_NO_POSITION",
}


def validate_glb(data: bytes) -> dict[str, Any]:
    """The validator's report (its JSON, parsed) on these bytes."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js absent: the glTF validator (npm gltf-validator) cannot run")
    if not PACKAGE.is_dir():
        pytest.fail("tools/node_modules/gltf-validator missing: run `make setup` (npm ci --prefix tools)")
    with tempfile.NamedTemporaryFile(suffix=".glb") as handle:
        handle.write(data)
        handle.flush()
        done = subprocess.run(
            [node, str(SCRIPT), handle.name], capture_output=True, text=True, timeout=60, cwd=ROOT
        )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def assert_valid_glb(data: bytes) -> dict[str, Any]:
    """Validate: no errors, no warnings, none of UNWANTED; the report is returned for more checks."""
    report = validate_glb(data)
    issues = report["issues"]
    messages = [f"{m['code']} at {m.get('pointer', '?')}: {m['message']}" for m in issues["messages"]]
    assert issues["numErrors"] == 0, messages[:20]
    assert issues["numWarnings"] == 0, messages[:20]
    unwanted = [m for m in issues["messages"] if m["code"] in UNWANTED]
    assert not unwanted, unwanted[:20]
    return report


def assert_textured_glb(data: bytes) -> tuple[dict[str, Any], bytes, dict[str, Any], Any]:
    """Validate a textured GLB: the validator sees a texture, the first primitive has no COLOR_0
    and its TEXCOORD_0 lies in [0, 1]; returns (document, blob, primitive, uv) for more checks."""
    report = assert_valid_glb(data)
    assert report["info"]["hasTextures"] is True
    document, blob = read_glb(data)
    primitive = document["meshes"][0]["primitives"][0]
    assert "COLOR_0" not in primitive["attributes"]
    uv = read_accessor(document, blob, primitive["attributes"]["TEXCOORD_0"])
    assert uv.min() >= 0
    assert uv.max() <= 1
    return document, blob, primitive, uv
