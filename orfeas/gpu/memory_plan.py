"""Shape and paint in one worker: keep the shape model on the device while painting, or move it off.

The rule is one comparison, made before the texture stage on a CUDA device: what paint still
needs (its weights when they are not loaded yet, plus its activation peak) against what the
device has free (`torch.cuda.mem_get_info`, plus what PyTorch's allocator holds cached but
unused), less a margin. If it fits, both stay resident (the next job's shape stage starts at
once); if not, the shape pipeline goes to host memory first and comes back for the next shape
stage (4.6 GiB over PCIe: about 0.4 s at 12 GB/s).
`ORFEAS_MODEL_RESIDENCY=keep|offload` fixes the choice instead.

Parameter counts are the published architectures built on PyTorch's meta device from their
configs (`python bench/vram_plan.py` prints them; docs/backends.md has the table):

    Hunyuan3D-2 shape   DiT 1113.3 M + ShapeVAE 214.2 M + DINOv2-giant 1136.5 M = 2464.0 M
    Hunyuan3D-Paint     UNet2p5D 1831.2 M + VAE 83.7 M + CLIP ViT-H text 340.4 M = 2255.3 M
    delight             UNet (8 inputs) 865.9 M + VAE 83.7 M + CLIP ViT-H text 340.4 M = 1290.0 M

At bf16 (2 bytes each) the shape model is 4.6 GiB, paint and delight together 6.6 GiB: on a
32 GB RTX 5090 (31.4 GiB usable) both stay resident with ~19 GiB left for activations.

Activation peaks are estimates from tensor sizes, not device measurements (no GPU has run this
yet; each job's `vram_peak_mb` per stage is the measured figure to replace them with):
  paint at 512-px views: 6 views + the reference, classifier-free guidance (batch 2), SD-2.1
  widths (64² latents, 320-1280 channels, multiview attention over 6 × 4096 tokens through
  memory-efficient SDPA), then the VAE decoding six 512² views (128-channel 512² maps, 64 MiB
  each at bf16, several alive at once): ~4 GiB. At 768 px the maps are 2.25× larger: ~9 GiB.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

GIB = 2**30
BF16_BYTES = 2
SHAPE_PARAMS = 2_463_968_073
PAINT_PARAMS = 2_255_254_844  # the paint pipeline (UNet2p5D, VAE, text encoder)
DELIGHT_PARAMS = 1_289_964_024
# Estimated activation peak of the texture stage by paint view size (see the module docstring).
PAINT_ACTIVATION_BYTES = {512: 4 * GIB, 768: 9 * GIB}
# CUDA context, cuBLAS workspaces and allocator fragmentation: what free memory never fully gives.
MARGIN_BYTES = 1 * GIB


@dataclass(frozen=True)
class ResidencyPlan:
    """Whether the shape model stays on the device through the texture stage, and why (MiB, 0.1)."""

    keep_shape_resident: bool
    free_mb: float
    need_mb: float
    reason: str


def paint_need_bytes(*, loaded: bool, view_size: int, bytes_per_param: int = BF16_BYTES) -> int:
    """What the texture stage still needs on the device: weights not yet there, plus activations."""
    weights = 0 if loaded else (PAINT_PARAMS + DELIGHT_PARAMS) * bytes_per_param
    size = min(PAINT_ACTIVATION_BYTES, key=lambda s: abs(s - view_size))
    activation = int(PAINT_ACTIVATION_BYTES[size] * (view_size / size) ** 2)
    return weights + activation


def plan_residency(
    free_bytes: int, need_bytes: int, *, mode: str = "auto", margin_bytes: int = MARGIN_BYTES
) -> ResidencyPlan:
    """Keep the shape model resident when the texture stage's need fits in free memory less the margin."""
    free_mb, need_mb = round(free_bytes / 2**20, 1), round(need_bytes / 2**20, 1)
    if mode == "keep":
        return ResidencyPlan(True, free_mb, need_mb, "ORFEAS_MODEL_RESIDENCY=keep")
    if mode == "offload":
        return ResidencyPlan(False, free_mb, need_mb, "ORFEAS_MODEL_RESIDENCY=offload")
    fits = need_bytes <= free_bytes - margin_bytes
    margin_mb = margin_bytes / 2**20
    reason = f"texture needs {need_mb:.0f} MiB, {free_mb:.0f} MiB free less a {margin_mb:.0f} MiB margin"
    return ResidencyPlan(fits, free_mb, need_mb, reason)


def device_free_bytes() -> int | None:
    """Free device memory plus what PyTorch holds cached but unused; None without a loaded CUDA torch."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info()
    cached = torch.cuda.memory_reserved() - torch.cuda.memory_allocated()
    return int(free + cached)
