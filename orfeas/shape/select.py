"""Which weights-free shape `auto` picks for a cutout: `extrude` for logos, `relief` for photos.

The rule, in order:
1. An empty mask → relief (there is no outline to extrude; relief uses the whole picture).
2. A mask from a segmentation model (method not "alpha" or "border") → relief: such masks are
   made for photographed subjects.
3. A mask covering more than 90 % of the frame → relief: its outline is the frame itself, and an
   extruded rectangle shows nothing of the picture.
4. Flat colours → extrude: at most 6 colour clusters (each ±8 levels of 255 per channel, room
   for JPEG noise) hold at least 90 % of the foreground's inner pixels (one pixel in from the
   edge, so anti-aliased borders do not count). Otherwise → relief.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from orfeas.types import Cutout

MASK_METHODS = frozenset({"alpha", "border"})
MAX_FRAME_SHARE = 0.9
PALETTE_SIZE = 6
PALETTE_SHARE = 0.9
LEVELS = 32  # histogram bins per channel (8 levels of 255 each); a cluster is ±1 bin
MAX_SAMPLES = 250_000


def choose_weights_free(cutout: Cutout) -> Literal["extrude", "relief"]:
    """`extrude` for an alpha or flat-colour logo that leaves background around it, else `relief`."""
    mask = np.asarray(cutout.mask, dtype=bool)
    if not mask.any() or cutout.method not in MASK_METHODS:
        return "relief"
    if mask.mean() > MAX_FRAME_SHARE:
        return "relief"
    return "extrude" if palette_share(cutout) >= PALETTE_SHARE else "relief"


def palette_share(cutout: Cutout, clusters: int = PALETTE_SIZE) -> float:
    """The share of the foreground's inner pixels that `clusters` colour clusters cover (greedy)."""
    from scipy.ndimage import binary_erosion

    mask = np.asarray(cutout.mask, dtype=bool)
    inner = binary_erosion(mask)
    if inner.sum() < 0.25 * mask.sum():  # thin strokes: the edge is most of the foreground
        inner = mask
    rgb = np.asarray(cutout.image.convert("RGB"))[inner]
    if len(rgb) > MAX_SAMPLES:
        rgb = rgb[:: len(rgb) // MAX_SAMPLES + 1]
    bins = (rgb.astype(np.int64) * LEVELS) // 256
    hist = np.bincount((bins[:, 0] * LEVELS + bins[:, 1]) * LEVELS + bins[:, 2], minlength=LEVELS**3)
    hist = hist.reshape(LEVELS, LEVELS, LEVELS).astype(np.float64)
    total = hist.sum()
    covered = 0.0
    for _ in range(clusters):
        # The densest ±1-bin neighbourhood, taken out so the next cluster is another colour.
        density = _box_sum(hist)
        centre = np.unravel_index(int(np.argmax(density)), hist.shape)
        if density[centre] <= 0:
            break
        covered += density[centre]
        sl = tuple(slice(max(c - 1, 0), c + 2) for c in centre)
        hist[sl] = 0.0
    return covered / total


def _box_sum(hist: np.ndarray) -> np.ndarray:
    from scipy.ndimage import uniform_filter

    return uniform_filter(hist, size=3, mode="constant") * 27.0
