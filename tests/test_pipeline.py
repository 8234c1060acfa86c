"""The pipeline's orchestration: stage order, progress, time limits, error translation, degradation."""

from __future__ import annotations

import base64
import io
import sys
import time
import types

import numpy as np
import pytest
import trimesh
from PIL import Image

from orfeas.errors import BackendUnavailable, OutOfMemory, StageFailed, StageTimeout
from orfeas.pipeline import Pipeline
from orfeas.registry import Backends
from orfeas.request import parse_request
from orfeas.settings import Settings
from orfeas.types import Cutout, ShapeResult


class Painter:
    """Text-to-image that paints a white square on black."""

    name = "painter"

    def generate(self, prompt, ctx):
        img = np.zeros((64, 64, 4), np.uint8)
        img[..., 3] = 255
        img[16:48, 16:48, :3] = 255
        return Image.fromarray(img, "RGBA")


class SquareCutter:
    name = "cutter"

    def remove(self, image, ctx):
        rgba = np.asarray(image)
        mask = rgba[..., 0] > 128
        return Cutout(image=image, mask=mask, method="test")


class BoxShape:
    name = "box"

    def __init__(self, behaviour=None):
        self.behaviour = behaviour

    def generate(self, cutout, request, ctx):
        if self.behaviour is not None:
            self.behaviour(ctx)
        mesh = trimesh.creation.box(extents=(32, 32, 4))
        return ShapeResult(mesh=mesh, picture_box=(-32.0, -32.0, 32.0, 32.0), stands=False)


class BrokenTexture:
    name = "broken"

    def apply(self, shape, cutout, ctx):
        raise RuntimeError("paint kernel missing")


class FakeBackends(Backends):
    """Backends handed in by the test instead of the registry's."""

    def __init__(self, settings, shape, texture=None):
        super().__init__(settings)
        self._shape = shape
        self._texture = texture

    def text_to_image(self):
        return Painter()

    def background(self):
        return SquareCutter()

    def shape(self, name):
        return self._shape

    def texture(self):
        return self._texture if self._texture is not None else super().texture()

    def free_memory(self):
        self.freed = True


def _settings(**kw):
    return Settings(**{"stage_timeout_s": 5.0, "job_timeout_s": 30.0, **kw})


def _run(shape, *, texture=None, settings=None, **req):
    settings = settings or _settings()
    backends = FakeBackends(settings, shape, texture)
    events = []
    request = parse_request({"prompt": "a square", "backend": "extrude", **req})
    result = Pipeline(settings, backends).run(request, job_id="job-1", progress=events.append)
    return result, events, backends


def test_missing_text_to_image_model_is_a_clear_error():
    """A prompt with no text-to-image model configured fails with backend_unavailable on the prompt."""
    settings = _settings()
    request = parse_request({"prompt": "a cat"})
    with pytest.raises(BackendUnavailable) as info:
        Pipeline(settings).run(request)
    assert info.value.field == "prompt"


def test_a_stage_that_overruns_its_limit_times_out_quickly():
    """A shape stage sleeping past its limit fails with stage_timeout naming 'shape' at the limit."""
    started = time.monotonic()
    with pytest.raises(StageTimeout) as info:
        _run(BoxShape(lambda ctx: time.sleep(3)), settings=_settings(stage_timeout_s=0.3))
    assert info.value.stage == "shape"
    assert time.monotonic() - started < 2.0


def test_the_job_deadline_bounds_every_stage():
    """A stage gets at most what is left of the job's deadline, even under a longer stage limit."""
    with pytest.raises(StageTimeout) as info:
        _run(BoxShape(lambda ctx: time.sleep(3)), settings=_settings(stage_timeout_s=60, job_timeout_s=0.4))
    assert info.value.stage == "shape"


def test_a_stray_exception_becomes_stage_failed_with_the_stage():
    """An unexpected exception inside a stage is reported as stage_failed for that stage."""

    def boom(ctx):
        raise ValueError("bad geometry")

    with pytest.raises(StageFailed) as info:
        _run(BoxShape(boom))
    assert info.value.code == "stage_failed"
    assert info.value.stage == "shape"
    assert "ValueError: bad geometry" in info.value.message


def test_out_of_memory_is_fatal_and_frees_memory():
    """An out-of-memory error (by class name, as torch's) becomes out_of_memory and frees the cache."""

    class OutOfMemoryError(RuntimeError):
        pass

    def oom(ctx):
        raise OutOfMemoryError("CUDA out of memory")

    settings = _settings()
    backends = FakeBackends(settings, BoxShape(oom))
    with pytest.raises(OutOfMemory) as info:
        Pipeline(settings, backends).run(parse_request({"prompt": "x", "backend": "extrude"}))
    assert info.value.fatal
    assert info.value.stage == "shape"
    assert backends.freed


def test_progress_rises_through_every_stage_to_one():
    """A prompt job's progress never falls, names each stage in order (no picture input), ends at 1.0."""
    result, events, _ = _run(BoxShape())
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions)
    assert fractions[-1] == pytest.approx(1.0)
    stages = list(dict.fromkeys(e.stage for e in events))
    assert stages == ["text_to_image", "background", "shape", "texture", "export"]
    assert set(result.timings) == {"text_to_image", "background", "shape", "texture", "export", "total"}


def test_a_picture_job_starts_with_the_input_stage():
    """A picture job decodes its input first and never runs text-to-image."""
    settings = _settings()
    events = []
    picture = io.BytesIO()
    Image.new("RGBA", (48, 48), (255, 255, 255, 255)).save(picture, "PNG")
    request = parse_request({"image": base64.b64encode(picture.getvalue()).decode(), "backend": "extrude"})
    result = Pipeline(settings, FakeBackends(settings, BoxShape())).run(request, progress=events.append)
    stages = list(dict.fromkeys(e.stage for e in events))
    assert stages == ["input", "background", "shape", "texture", "export"]
    assert "text_to_image" not in result.timings
    assert events[-1].fraction == pytest.approx(1.0)


def test_a_failing_texture_degrades_with_a_warning():
    """When the texture backend fails, the job completes with the weights-free colours and a warning."""
    result, _, _ = _run(
        BoxShape(), texture=BrokenTexture(), settings=_settings(texture_backend="hunyuan_paint")
    )
    assert any("texture degraded" in w for w in result.warnings)
    assert set(result.artifacts) == {"glb", "stl"}


def test_result_is_scaled_and_exported():
    """The box comes out in millimetres at the asked width, in every asked format."""
    result, _, _ = _run(BoxShape(), formats=["stl", "ply"], dimensions={"width_mm": 80})
    assert result.mesh.extents_mm[0] == pytest.approx(80, rel=0.01)
    assert result.mesh.watertight
    assert set(result.artifacts) == {"stl", "ply"}
    assert result.backend == "extrude"


class MetaShape(BoxShape):
    def generate(self, cutout, request, ctx):
        shape = super().generate(cutout, request, ctx)
        shape.meta.update({"steps": 2, "dtype": "bf16"})
        return shape


def test_shape_meta_and_device_memory_peaks_reach_the_result(monkeypatch):
    """The shape backend's meta and each stage's device-memory peak are reported with the result."""

    class FakeCuda:
        calls = 0

        @staticmethod
        def is_available():
            return True

        @classmethod
        def reset_peak_memory_stats(cls):
            cls.calls += 1

        @classmethod
        def max_memory_allocated(cls):
            return cls.calls * 2**20

    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=FakeCuda))
    result, _, _ = _run(MetaShape())
    assert result.extra["shape"] == {"steps": 2, "dtype": "bf16"}
    peaks = result.extra["vram_peak_mb"]
    assert list(peaks)[:3] == ["text_to_image", "background", "shape"]
    assert peaks["shape"] == 3.0  # the third stage measured: third reset
    assert result.as_dict({})["vram_peak_mb"] == peaks


def test_choosing_the_auto_shape_counts_as_shape_time(monkeypatch):
    """`auto`'s judgement of the picture runs inside the shape stage, so it is in that stage's time."""
    import orfeas.shape.select

    def slow_choice(cutout):
        time.sleep(0.3)
        return "extrude"

    monkeypatch.setattr(orfeas.shape.select, "choose_weights_free", slow_choice)
    result, _, _ = _run(BoxShape(), backend="auto")
    assert result.backend == "extrude"
    assert result.timings["shape"] >= 0.3
    stages = sum(v for k, v in result.timings.items() if k != "total")
    assert result.timings["total"] - stages < 0.3


def test_each_mesh_is_handed_over_as_soon_as_it_is_written():
    """on_artifact gets every format in the asked order, from inside the export stage."""
    handed = []

    def sink(artifact):
        handed.append((artifact.format, events[-1].stage))

    settings = _settings()
    events = []
    request = parse_request({"prompt": "a square", "backend": "extrude", "formats": ["stl", "glb", "ply"]})
    result = Pipeline(settings, FakeBackends(settings, BoxShape())).run(
        request, progress=events.append, on_artifact=sink
    )
    assert handed == [("stl", "export"), ("glb", "export"), ("ply", "export")]
    assert list(result.artifacts) == ["stl", "glb", "ply"]
