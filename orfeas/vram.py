"""Peak device memory per stage, read only when torch is already loaded and a GPU is present.

The weights-free path never imports torch, so on it this records nothing and costs nothing.
"""

from __future__ import annotations

import sys


def reset_peak() -> bool:
    """Start a measurement; False when there is no loaded torch with a GPU to measure."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return False
    torch.cuda.reset_peak_memory_stats()
    return True


def peak_mb() -> float:
    """Peak allocated device memory since the last reset, in MiB."""
    torch = sys.modules["torch"]
    return float(torch.cuda.max_memory_allocated()) / 2**20
