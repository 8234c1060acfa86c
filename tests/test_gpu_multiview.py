"""Several views of one object for Hunyuan3D-2mv: each view cut out, all four given to the model as
hy3dgen's multi-view pipeline takes them; a model that takes one picture refuses views up front."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from orfeas.errors import InvalidInput
from orfeas.gpu import hunyuan_shape
from orfeas.gpu.tiny_models import write_tiny_hunyuan
from orfeas.pipeline import Pipeline
from orfeas.request import parse_request
from tests.gpu_support import cpu_settings, import_shapegen

EMBLEM = Path(__file__).resolve().parents[1] / "orfeas" / "samples" / "emblem.png"
MV = "tencent/Hunyuan3D-2mv"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_tiny_hunyuan(root, repo=MV, subfolder="hunyuan3d-dit-v2-mv", multiview=True)
    write_tiny_hunyuan(root)  # tencent/Hunyuan3D-2: one picture only
    return root


@pytest.fixture
def tiny_plans(monkeypatch):
    """2 sampler steps at octree 16 for every quality (the real mapping is tested apart)."""
    monkeypatch.setattr(hunyuan_shape, "shape_params", lambda q: hunyuan_shape.ShapeParams(2, 16, 5.0))


def _b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def four_views() -> dict[str, str]:
    front = Image.open(EMBLEM).convert("RGBA")
    return {
        "front": _b64(front),
        "left": _b64(front.rotate(90, expand=True)),
        "back": _b64(ImageOps.mirror(front)),
        "right": _b64(front.rotate(-90, expand=True)),
    }


def test_four_views_make_one_mesh_with_every_view_in_the_conditioning(model_dir, tiny_plans, monkeypatch):
    """A 4-view job cuts out each view, hands the DiT the tokens of all four, and exports a mesh."""
    import_shapegen()
    from hy3dgen.shapegen.models.conditioner import DinoImageEncoderMV

    seen: list[tuple[int, tuple[int, ...]]] = []
    forward = DinoImageEncoderMV.forward

    def recording(self, image, mask=None, value_range=(-1, 1), view_idxs=None):
        seen.append((image.shape[1], tuple(view_idxs[0])))
        return forward(self, image, mask=mask, value_range=value_range, view_idxs=view_idxs)

    monkeypatch.setattr(DinoImageEncoderMV, "forward", recording)
    settings = cpu_settings(model_dir=model_dir, shape_model=MV)
    request = parse_request(
        {"images": four_views(), "backend": "hunyuan", "formats": ["stl"], "texture": False, "seed": 0}
    )
    result = Pipeline(settings).run(request, job_id="mv-4")
    assert result.mesh.faces > 0
    assert result.extra["shape"]["views"] == ["front", "left", "back", "right"]
    assert seen
    assert seen[0] == (4, (0, 1, 2, 3))  # hy3dgen's view order: front, left, back, right


def test_front_only_on_the_multiview_model_is_one_view(model_dir, tiny_plans, monkeypatch):
    """`image` on Hunyuan3D-2mv reaches its multi-view processor as the front view alone."""
    settings = cpu_settings(model_dir=model_dir, shape_model=MV)
    request = parse_request(
        {
            "image": four_views()["front"],
            "backend": "hunyuan",
            "formats": ["stl"],
            "texture": False,
            "seed": 0,
        }
    )
    result = Pipeline(settings).run(request, job_id="mv-1")
    assert result.mesh.faces > 0
    assert "views" not in result.extra["shape"]


@pytest.mark.parametrize(
    ("shape_model", "backend", "named"),
    [("tencent/Hunyuan3D-2", "hunyuan", "tencent/Hunyuan3D-2"), (MV, "extrude", "extrude")],
)
def test_views_a_model_cannot_take_are_refused_before_anything_loads(model_dir, shape_model, backend, named):
    """Hunyuan3D-2 and the weights-free backends refuse a left view at once, naming field and model."""
    settings = cpu_settings(model_dir=model_dir, shape_model=shape_model)
    pipeline = Pipeline(settings)
    events = []
    request = parse_request({"images": {"front": "Zg==", "left": "bA=="}, "backend": backend})
    started = time.monotonic()
    with pytest.raises(InvalidInput) as info:
        pipeline.run(request, job_id="mv-refused", progress=events.append)
    assert time.monotonic() - started < 1.0
    assert info.value.field == "images.left"
    assert named in info.value.message
    assert events == []  # no stage started: no picture read, no model built
    assert pipeline.backends._instances == {}


def test_front_only_images_on_a_weights_free_backend_is_the_picture(model_dir):
    """`images` with only front is the same job as `image` for a backend that takes one picture."""
    settings = cpu_settings(model_dir=model_dir)
    front = four_views()["front"]
    by_views = Pipeline(settings).run(
        parse_request({"images": {"front": front}, "backend": "extrude", "formats": ["stl"]})
    )
    by_image = Pipeline(settings).run(
        parse_request({"image": front, "backend": "extrude", "formats": ["stl"]})
    )
    assert by_views.artifacts["stl"].sha256 == by_image.artifacts["stl"].sha256


def test_an_unreadable_view_names_its_field(model_dir):
    """A view that is not a picture fails the job as invalid_input on `images.<view>`."""
    settings = cpu_settings(model_dir=model_dir, shape_model=MV)
    views = {**four_views(), "back": base64.b64encode(b"not a picture").decode("ascii")}
    with pytest.raises(InvalidInput) as info:
        Pipeline(settings).run(parse_request({"images": views, "backend": "hunyuan"}))
    assert info.value.field == "images.back"
