"""The shape-and-paint memory plan: counted parameters, the keep-or-offload rule, and its use."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from orfeas.gpu import memory_plan
from orfeas.gpu.memory_plan import GIB, paint_need_bytes, plan_residency
from orfeas.registry import SHAPE_BACKENDS, Backends
from tests.gpu_support import cpu_settings

ROOT = Path(__file__).resolve().parents[1]


def test_the_counts_are_the_published_architectures_built_on_the_meta_device():
    """SHAPE/PAINT/DELIGHT_PARAMS equal bench/vram_plan.py's count of the real modules."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import vram_plan
    finally:
        sys.path.remove(str(ROOT / "bench"))
    models = vram_plan.totals(vram_plan.count_params())
    assert models == {
        "shape": memory_plan.SHAPE_PARAMS,
        "paint": memory_plan.PAINT_PARAMS,
        "delight": memory_plan.DELIGHT_PARAMS,
    }


def test_paint_need_is_its_weights_until_loaded_plus_activations_by_view_size():
    """Unloaded paint needs its bf16 weights and activations; loaded, the activations alone, more at 768."""
    weights = (memory_plan.PAINT_PARAMS + memory_plan.DELIGHT_PARAMS) * 2
    assert paint_need_bytes(loaded=False, view_size=512) == weights + 4 * GIB
    assert paint_need_bytes(loaded=True, view_size=512) == 4 * GIB
    assert paint_need_bytes(loaded=True, view_size=768) == 9 * GIB
    assert paint_need_bytes(loaded=True, view_size=32) < GIB  # the tiny models' 32-px views


def test_a_32_gb_card_keeps_both_and_a_small_one_moves_the_shape_model_off():
    """With the shape model loaded on a 32 GB card paint fits beside it; with 8 GiB free it does not."""
    need = paint_need_bytes(loaded=False, view_size=512)  # 10.6 GiB
    rtx5090_free = int(31.4 * GIB) - memory_plan.SHAPE_PARAMS * 2 - GIB  # context and shape activations
    assert plan_residency(rtx5090_free, need).keep_shape_resident
    small = plan_residency(8 * GIB, need)
    assert not small.keep_shape_resident
    assert small.need_mb == pytest.approx(need / 2**20, abs=0.1)
    assert "margin" in small.reason
    # The margin counts: exactly the need free is not enough.
    assert not plan_residency(need, need).keep_shape_resident
    assert plan_residency(need + GIB, need).keep_shape_resident


def test_the_setting_fixes_the_choice_whatever_is_free():
    """ORFEAS_MODEL_RESIDENCY=keep keeps the model at 1 GiB free; offload moves it at 100 GiB free."""
    assert plan_residency(1 * GIB, 10 * GIB, mode="keep").keep_shape_resident
    assert not plan_residency(100 * GIB, 10 * GIB, mode="offload").keep_shape_resident


class FakeShape:
    def __init__(self) -> None:
        self.offloaded = 0

    def resident(self) -> bool:
        return self.offloaded == 0

    def offload(self) -> None:
        self.offloaded += 1


class FakePaint:
    def memory_need(self) -> int:
        return 10 * GIB


@pytest.mark.parametrize(("free_gib", "offloads"), [(30, 0), (8, 1)])
def test_before_paint_the_shape_model_moves_off_only_when_paint_would_not_fit(
    monkeypatch, free_gib, offloads
):
    """The registry applies the rule to a fake free-memory figure: 30 GiB keeps, 8 GiB offloads."""
    backends = Backends(cpu_settings(texture_backend="hunyuan_paint"))
    shape, paint = FakeShape(), FakePaint()
    backends._instances[SHAPE_BACKENDS["hunyuan"]] = shape
    monkeypatch.setattr(backends, "texture", lambda: paint)
    monkeypatch.setattr(memory_plan, "device_free_bytes", lambda: free_gib * GIB)
    plan = backends.make_room_for_texture()
    assert plan is not None
    assert plan.keep_shape_resident is (offloads == 0)
    assert shape.offloaded == offloads
    assert plan.free_mb == free_gib * 1024


def test_nothing_is_decided_without_paint_a_resident_shape_model_or_a_gpu(monkeypatch):
    """Vertex colours, no loaded Hunyuan shape, or no CUDA device: no plan, nothing moved."""
    monkeypatch.setattr(memory_plan, "device_free_bytes", lambda: None)
    assert Backends(cpu_settings(texture_backend="vertex")).make_room_for_texture() is None
    backends = Backends(cpu_settings(texture_backend="hunyuan_paint"))
    assert backends.make_room_for_texture() is None  # no shape model built
    shape = FakeShape()
    backends._instances[SHAPE_BACKENDS["hunyuan"]] = shape
    assert backends.make_room_for_texture() is None  # CPU: no device memory to plan
    assert shape.offloaded == 0


def test_the_job_result_carries_the_plan_made_before_its_texture_stage(monkeypatch):
    """The plan the registry returns before the texture stage is the result's `memory_plan`."""
    import base64

    from orfeas.gpu.memory_plan import ResidencyPlan
    from orfeas.pipeline import Pipeline
    from orfeas.request import parse_request
    from tests.inputs_support import EMBLEM

    backends = Backends(cpu_settings())
    plan = ResidencyPlan(
        False, 8192.0, 10854.4, "texture needs 10854 MiB, 8192 MiB free less a 1024 MiB margin"
    )
    calls = []
    monkeypatch.setattr(backends, "make_room_for_texture", lambda: calls.append(1) or plan)
    request = parse_request({"image": base64.b64encode(EMBLEM.read_bytes()).decode(), "formats": ["stl"]})
    result = Pipeline(cpu_settings(), backends).run(request)
    assert calls == [1]
    assert result.extra["memory_plan"] == {
        "keep_shape_resident": False,
        "free_mb": 8192.0,
        "need_mb": 10854.4,
        "reason": plan.reason,
    }
