"""Hunyuan3D-Paint on the CPU with tiny random-weight models: a UV-textured GLB, no compiled renderer."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import pytest

from orfeas.gpu import hunyuan_paint
from orfeas.gpu.texgen_import import RENDERER_MODULES
from orfeas.gpu.tiny_models import write_tiny_delight, write_tiny_paint
from orfeas.mesh.gltf import read_glb
from orfeas.pipeline import Pipeline
from orfeas.request import parse_request
from tests.gltf_support import assert_textured_glb
from tests.gpu_support import cpu_settings
from tests.inputs_support import EMBLEM

pytest.importorskip("xatlas")
pytestmark = [
    pytest.mark.slow,  # two diffusion models on the CPU: about 20 s on one free core
    # diffusers' Euler-ancestral scheduler (the one hy3dgen uses) calls np.array on a tensor.
    pytest.mark.filterwarnings(
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
    ),
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("paint-models")
    write_tiny_delight(root)
    write_tiny_paint(root)
    return root


@pytest.fixture
def few_steps(monkeypatch):
    """Two denoising steps per model (the step counts are constants; the loop is the same)."""
    monkeypatch.setattr(hunyuan_paint, "DELIGHT_STEPS", 2)
    monkeypatch.setattr(hunyuan_paint, "PAINT_STEPS", 2)


def test_an_extruded_logo_gets_a_baked_uv_texture(model_dir, few_steps):
    """The emblem's extruded mesh is painted on the CPU into a valid GLB with TEXCOORD_0 and a PNG texture."""
    settings = cpu_settings(model_dir=model_dir, texture_backend="hunyuan_paint")
    picture = base64.b64encode(EMBLEM.read_bytes()).decode("ascii")
    request = parse_request(
        {"image": picture, "backend": "extrude", "formats": ["glb", "stl", "ply"], "seed": 0}
    )
    result = Pipeline(settings).run(request, job_id="paint-cpu")
    assert not [w for w in result.warnings if "texture degraded" in w], result.warnings
    glb = result.artifacts["glb"].data
    document, _, primitive, _ = assert_textured_glb(glb)
    material = document["materials"][primitive["material"]]
    assert material["pbrMetallicRoughness"]["baseColorTexture"]["index"] == 0
    assert document["images"][0]["mimeType"] == "image/png"
    stl_faces = int.from_bytes(result.artifacts["stl"].data[80:84], "little")
    assert stl_faces == result.mesh.faces == document["accessors"][primitive["indices"]]["count"] // 3
    assert not [m for m in RENDERER_MODULES if m in sys.modules]


def test_the_cli_paints_with_texture_backend_hunyuan_paint(
    model_dir, tmp_path, few_steps, monkeypatch, capsys
):
    """`generate --texture-backend hunyuan_paint` on the CPU writes a textured GLB, with no warning."""
    from orfeas.cli import main

    monkeypatch.setenv("ORFEAS_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("ORFEAS_DEVICE", "cpu")
    args = ["generate", str(EMBLEM), "--out", str(tmp_path), "--formats", "glb"]
    assert main([*args, "--texture-backend", "hunyuan_paint", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert not [w for w in result["warnings"] if "texture degraded" in w], result["warnings"]
    document, _ = read_glb(Path(result["meshes"]["glb"]["path"]).read_bytes())
    assert "baseColorTexture" in document["materials"][0]["pbrMetallicRoughness"]


def test_a_small_face_budget_keeps_the_texture_and_the_obj_is_a_textured_bundle(
    model_dir, few_steps, tmp_path
):
    """With target_faces under paint's own 40k, paint unwraps within the job's budget, so the texture
    reaches export: the OBJ comes with its MTL and PNG, which trimesh opens as a textured mesh."""
    import trimesh

    settings = cpu_settings(model_dir=model_dir, texture_backend="hunyuan_paint")
    picture = base64.b64encode(EMBLEM.read_bytes()).decode("ascii")
    request = parse_request(
        {"image": picture, "backend": "extrude", "formats": ["obj"], "target_faces": 1500, "seed": 0}
    )
    result = Pipeline(settings).run(request, job_id="paint-budget")
    assert not [w for w in result.warnings if "texture degraded" in w], result.warnings
    assert set(result.artifacts) == {"obj", "mtl", "png"}
    assert result.mesh.faces <= 1500 * 1.05
    for artifact in result.artifacts.values():
        (tmp_path / f"model.{artifact.format}").write_bytes(artifact.data)
    obj = trimesh.load(tmp_path / "model.obj", process=False)
    assert isinstance(obj.visual, trimesh.visual.TextureVisuals)
    assert obj.visual.material.image.size == (128, 128)  # 4 × the tiny model's 32-px views
