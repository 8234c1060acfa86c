"""hy3dgen.shapegen imported where torchvision is missing (a CPU test or smoke-test environment).

hy3dgen's image conditioner imports `torchvision.transforms` at module level for three tensor
transforms (Resize, CenterCrop, Normalize). torchvision's PyPI wheels pin one torch build and do
not load beside a CPU torch, so when it cannot be imported a small stand-in with the same tensor
semantics sits in `sys.modules` for the length of that one import. Production images install the
real torchvision next to their CUDA torch (see the Dockerfile), and then nothing is stood in.
"""

from __future__ import annotations

import enum
import importlib
import sys
import types
from collections.abc import Callable, Sequence

import torch

F = torch.nn.functional


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


class Compose:
    def __init__(self, transforms: Sequence[Callable[[torch.Tensor], torch.Tensor]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for t in self.transforms:
            x = t(x)
        return x


class Resize:
    """Resize so the shorter side is `size` (an int), as torchvision does for tensors."""

    def __init__(
        self,
        size: int | Sequence[int],
        interpolation: InterpolationMode = InterpolationMode.BILINEAR,
        antialias: bool = True,
    ) -> None:
        self.size = size
        self.mode = interpolation.value
        self.antialias = antialias

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        out: tuple[int, ...]
        if isinstance(self.size, int):
            short = min(h, w)
            out = (
                (self.size, round(w * self.size / short))
                if h <= w
                else (round(h * self.size / short), self.size)
            )
        else:
            out = tuple(self.size)
        dtype = x.dtype
        y = F.interpolate(x.float(), size=out, mode=self.mode, antialias=self.antialias, align_corners=False)
        return y.to(dtype)


class CenterCrop:
    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = (size, size) if isinstance(size, int) else tuple(size)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        th, tw = self.size
        top, left = (h - th) // 2, (w - tw) // 2
        return x[..., top : top + th, left : left + tw]


class Normalize:
    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = mean
        self.std = std

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return (x - mean) / std


def import_shapegen() -> None:
    """Import hy3dgen.shapegen, with the torchvision stand-in only for that import if torchvision is missing.

    transformers and diffusers are imported first, so their cached "is torchvision installed"
    answers stay truthful; the stand-in leaves `sys.modules` again once hy3dgen holds it.
    """
    importlib.import_module("transformers")
    importlib.import_module("diffusers")
    try:
        importlib.import_module("torchvision.transforms")
        importlib.import_module("hy3dgen.shapegen")
        return
    except ImportError as exc:
        if exc.name is None or not exc.name.startswith("torchvision"):
            raise
    package = types.ModuleType("torchvision")
    package.__path__ = []
    transforms = types.ModuleType("torchvision.transforms")
    for obj in (Compose, Resize, CenterCrop, Normalize, InterpolationMode):
        setattr(transforms, obj.__name__, obj)
    setattr(package, "transforms", transforms)  # noqa: B010 - a module attribute mypy cannot see
    sys.modules["torchvision"] = package
    sys.modules["torchvision.transforms"] = transforms
    try:
        importlib.import_module("hy3dgen.shapegen")
    finally:
        del sys.modules["torchvision.transforms"]
        del sys.modules["torchvision"]
