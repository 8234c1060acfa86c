"""Device, dtype, attention and memory handling shared by the GPU backends.

- dtype: bf16 where the GPU has native bf16 (compute capability ≥ 8.0: Ampere, Ada, Hopper,
  Blackwell sm_120), fp16 on older GPUs, fp32 on the CPU (fp16 matmuls there are slow or missing);
  ORFEAS_DTYPE overrides.
- attention: PyTorch SDPA (flash / memory-efficient kernels on CUDA). xformers is never imported;
  a model that arrives with xformers processors is switched back to SDPA.
- out of memory: translated at the stage boundary into OutOfMemory after the allocator's cache
  is emptied; the worker is then recycled (OutOfMemory.fatal).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import torch

from orfeas.errors import BackendUnavailable, OutOfMemory
from orfeas.settings import DEVICE, Settings

T = TypeVar("T")

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


def require(module: str, backend: str) -> Any:
    """Import an optional GPU package, or say clearly that the backend is not installed here."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(
            f"backend {backend!r} needs {module} ({exc}); install requirements-gpu.txt and "
            "requirements-gpu-nodeps.txt",
            field="backend",
        ) from exc


def choose_device(settings: Settings) -> torch.device:
    """`cuda` when asked or available, else `cpu`; asking for cuda without one is an error."""
    if settings.device == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if settings.device == "cuda":
        raise BackendUnavailable(f"{DEVICE}=cuda but no CUDA device is visible", field="device")
    return torch.device("cpu")


def choose_dtype(settings: Settings, device: torch.device) -> torch.dtype:
    """The settings' dtype, or the fastest exact-enough one for the device."""
    if settings.dtype != "auto":
        return DTYPES[settings.dtype]
    if device.type != "cuda":
        return torch.float32
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def dtype_name(dtype: torch.dtype) -> str:
    return DTYPE_NAMES.get(dtype, str(dtype).removeprefix("torch."))


def use_sdpa(*modules: Any) -> int:
    """Put every diffusers attention processor that is not SDPA-based back on SDPA; returns how many.

    diffusers' default processors already call `F.scaled_dot_product_attention`; this undoes an
    xformers processor left by a saved pipeline or a library default, so none can import xformers.
    """
    from diffusers.models.attention_processor import AttnProcessor2_0

    switched = 0
    for module in modules:
        processors = getattr(module, "attn_processors", None)
        if not processors:
            continue
        if any("xformers" in type(p).__name__.lower() for p in processors.values()):
            module.set_attn_processor(AttnProcessor2_0())
            switched += 1
    return switched


def xformers_loaded() -> bool:
    return any(name == "xformers" or name.startswith("xformers.") for name in sys.modules)


def maybe_compile(module: Any, settings: Settings) -> Any:
    """`torch.compile(module)` when ORFEAS_TORCH_COMPILE is on; the first call then pays the compile."""
    if not settings.torch_compile:
        return module
    return torch.compile(module)


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    # Some kernels (cuBLAS, cuDNN) report it as a plain RuntimeError.
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_device_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextmanager
def oom_guard(stage: str) -> Iterator[None]:
    """Translate a device out-of-memory error into OutOfMemory after emptying the cache."""
    try:
        yield
    except OutOfMemory:
        free_device_memory()
        raise
    except (RuntimeError, MemoryError) as exc:
        if not is_out_of_memory(exc):
            raise
        free_device_memory()
        raise OutOfMemory(
            f"device out of memory: {str(exc).splitlines()[0] if str(exc) else exc!r}", stage=stage
        ) from exc


class LoadOnce(Generic[T]):
    """A backend's model, built on first use and then kept for every job of the process.

    Thread-safe (jobs may run in several threads); an out-of-memory error while building is
    OutOfMemory for `stage`. `lock` is the one the build holds, for a backend that moves the
    model between devices afterwards.
    """

    def __init__(self, stage: str, build: Callable[[], T], *, eager: bool = False) -> None:
        self.stage = stage
        self._build = build
        self._value: T | None = None
        self.lock = threading.Lock()
        if eager:  # ORFEAS_EAGER_LOAD: a missing or broken model fails the worker's start
            self.get()

    def get(self) -> T:
        with self.lock:
            if self._value is None:
                with oom_guard(self.stage):
                    self._value = self._build()
            return self._value

    @property
    def loaded(self) -> bool:
        return self._value is not None

    def peek(self) -> T | None:
        """The model if built, without building it or taking the lock."""
        return self._value


class ModelBackend(Generic[T]):
    """What every GPU backend shares: its device and dtype from the settings, and its model built
    once (`load`, `_build` in the subclass; `stage` names the stage an out-of-memory error is in).

    A subclass sets what `_build` reads before calling `super().__init__`: with ORFEAS_EAGER_LOAD
    the model is built right there.
    """

    stage = "model"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device = choose_device(settings)
        self.dtype = choose_dtype(settings, self.device)
        self._model: LoadOnce[T] = LoadOnce(self.stage, self._build, eager=settings.eager_load)

    def load(self) -> T:
        return self._model.get()

    def _build(self) -> T:
        raise NotImplementedError


@dataclass
class VramPeak:
    """Peak allocated device memory over a block, in MiB (None on the CPU)."""

    device: torch.device
    mb: float | None = field(default=None)


@contextmanager
def measure_vram(device: torch.device) -> Iterator[VramPeak]:
    """Reset the CUDA peak counter, run the block, read `max_memory_allocated` after it."""
    peak = VramPeak(device)
    cuda = device.type == "cuda" and torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    try:
        yield peak
    finally:
        if cuda:
            peak.mb = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def make_generator(device: torch.device, seed: int | None) -> torch.Generator:
    """A generator on the device, seeded from the request (or from fresh entropy)."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator
