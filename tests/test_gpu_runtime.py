"""Device and dtype choice, out-of-memory translation, VRAM measurement and the quality mapping."""

from __future__ import annotations

import itertools

import pytest

from orfeas.errors import BackendUnavailable, OutOfMemory, StageFailed
from orfeas.gpu import runtime
from orfeas.gpu.hunyuan_shape import shape_params
from tests.gpu_support import cpu_settings, torch


def test_cpu_gets_fp32_and_settings_override():
    """On the CPU auto is fp32; an explicit ORFEAS_DTYPE is honoured."""
    cpu = torch.device("cpu")
    assert runtime.choose_dtype(cpu_settings(), cpu) is torch.float32
    assert runtime.choose_dtype(cpu_settings(dtype="bf16"), cpu) is torch.bfloat16
    assert runtime.choose_dtype(cpu_settings(dtype="fp16"), cpu) is torch.float16


@pytest.mark.parametrize(("capability", "expected"), [((12, 0), "bf16"), ((8, 0), "bf16"), ((7, 5), "fp16")])
def test_cuda_dtype_follows_capability(monkeypatch, capability, expected):
    """bf16 from compute capability 8.0 (Blackwell sm_120 included), fp16 below."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    dtype = runtime.choose_dtype(cpu_settings(device="cuda"), torch.device("cuda"))
    assert runtime.dtype_name(dtype) == expected


def test_cuda_asked_without_cuda_is_backend_unavailable(monkeypatch):
    """ORFEAS_DEVICE=cuda on a machine without CUDA is a clear error; auto falls back to the CPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackendUnavailable, match="ORFEAS_DEVICE=cuda"):
        runtime.choose_device(cpu_settings(device="cuda"))
    assert runtime.choose_device(cpu_settings(device="auto")).type == "cpu"


def test_oom_guard_translates_and_empties_the_cache(monkeypatch):
    """A torch.cuda.OutOfMemoryError becomes OutOfMemory for the stage, after empty_cache()."""
    emptied = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    with pytest.raises(OutOfMemory) as info, runtime.oom_guard("shape"):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert info.value.code == "out_of_memory"
    assert info.value.stage == "shape"
    assert info.value.fatal
    assert isinstance(info.value.__cause__, torch.cuda.OutOfMemoryError)
    assert emptied == [True]


def test_oom_guard_catches_plain_runtime_oom_and_lets_others_pass():
    """cuBLAS-style 'out of memory' RuntimeErrors are translated; other RuntimeErrors are not."""
    with pytest.raises(OutOfMemory), runtime.oom_guard("texture"):
        raise RuntimeError("CUDA error: out of memory")
    with pytest.raises(RuntimeError, match="shape mismatch"), runtime.oom_guard("texture"):
        raise RuntimeError("shape mismatch")


def test_vram_measurement_is_none_on_cpu():
    """Without CUDA the peak is not measured (None), and the block still runs."""
    with runtime.measure_vram(torch.device("cpu")) as peak:
        torch.ones(4) + 1
    assert peak.mb is None


def test_generator_is_seeded():
    """The same seed gives the same noise; no seed draws fresh entropy."""
    a = torch.randn(3, generator=runtime.make_generator(torch.device("cpu"), 7))
    b = torch.randn(3, generator=runtime.make_generator(torch.device("cpu"), 7))
    assert torch.equal(a, b)


def test_quality_mapping_grows_and_matches_hy3dgen_at_the_top():
    """Steps and octree resolution never shrink with quality; quality 10 is hy3dgen's 50 steps at 384."""
    plans = [shape_params(q) for q in range(1, 11)]
    assert all(
        a.steps <= b.steps and a.octree_resolution <= b.octree_resolution
        for a, b in itertools.pairwise(plans)
    )
    assert (plans[-1].steps, plans[-1].octree_resolution) == (50, 384)
    assert (plans[4].steps, plans[4].octree_resolution) == (28, 256)


def test_sdpa_switch_replaces_xformers_processors():
    """A diffusers model carrying an xformers-named processor is put back on SDPA."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    class XFormersAttnProcessor:  # the name is all use_sdpa looks at; nothing imports xformers
        pass

    class Model:
        def __init__(self):
            self.attn_processors = {"a": XFormersAttnProcessor()}

        def set_attn_processor(self, processor):
            self.attn_processors = {"a": processor}

    model = Model()
    assert runtime.use_sdpa(model, None) == 1
    assert isinstance(model.attn_processors["a"], AttnProcessor2_0)
    assert not runtime.xformers_loaded()


def test_stage_failed_is_not_swallowed():
    """Errors of our own pass through the guard unchanged."""
    with pytest.raises(StageFailed, match="empty surface"), runtime.oom_guard("shape"):
        raise StageFailed("empty surface", stage="shape")


# torch.compile's first import touches torch.jit, which warns about its own deprecation.
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compile_only_when_asked():
    """ORFEAS_TORCH_COMPILE wraps the module with torch.compile; off, the module is returned as is."""
    module = torch.nn.Linear(2, 2)
    assert runtime.maybe_compile(module, cpu_settings()) is module
    compiled = runtime.maybe_compile(module, cpu_settings(torch_compile=True))
    assert compiled is not module
    assert compiled._orig_mod is module
