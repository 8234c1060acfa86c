"""Test-only support for the GPU backends on a CPU machine (torch skipped where missing)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from orfeas.gpu.torchvision_standin import import_shapegen  # noqa: E402

__all__ = ["cpu_settings", "import_shapegen", "torch"]


def cpu_settings(**changes):
    """Settings for running the GPU backends on the CPU in fp32."""
    from orfeas.settings import Settings

    base = {"device": "cpu", "dtype": "auto", "hf_home": "/nonexistent-hf-home"}
    base.update(changes)
    return Settings(**base)


def oom_on_forward(monkeypatch: pytest.MonkeyPatch, model_class: type) -> None:
    """Make every `model_class.forward` call raise CUDA's out-of-memory error, as a full GPU would."""

    def explode(self, *args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(model_class, "forward", explode)
