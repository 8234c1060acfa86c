"""Which weights-free shape `auto` picks for a cutout: `extrude` for logos, `inflate` for photographed
objects, `relief` for pictures that fill the frame.

The rule, in order:
1. An empty mask → relief (there is no outline to extrude; relief uses the whole picture).
2. A mask covering more than 90 % of the frame → relief: its outline is the frame itself (a
   landscape, a portrait without a backdrop: a lithophane's picture).
3. A cut-out the background stage is not sure of (confidence under CONFIDENT) → relief: a
   relief shows the picture whatever the mask got wrong.
4. Flat colours from an alpha channel or a backdrop method → extrude: at most 6 colour clusters
   (each ±8 levels of 255 per channel, room for JPEG noise) hold at least 90 % of the
   foreground's inner pixels (one pixel in from the edge, so anti-aliased borders do not
   count); or, for a compressed picture whose noise spills out of those clusters, 6 narrow
   peaks (±4 levels) of the lightly blurred luma hold at least 88 % of them (see luma_share:
   JPEG logos 0.89-0.99, the shaded objects of orfeas/samples/photos.py 0.73-0.82).
5. Otherwise (a shaded object cut out of a photo, or a segmentation model's mask: such masks
   are made for photographed subjects) → inflate, a rounded solid of the object.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from orfeas.backend_names import WeightsFreeShape
from orfeas.background.graphcut import CONFIDENT
from orfeas.types import Cutout

MASK_METHODS = frozenset({"alpha", "border", "graphcut"})
MAX_FRAME_SHARE = 0.9
PALETTE_SIZE = 6
PALETTE_SHARE = 0.9
LUMA_SHARE = 0.88
LUMA_BLUR_PX = 1.5  # σ that evens out JPEG's 8 x 8 block noise inside a flat region
LUMA_ERODE_PX = 3  # inner pixels for the luma test: clear of the blur's reach across an edge
LUMA_HALF_WIDTH = 4  # levels of 255 either side of a luma peak
LEVELS = 32  # histogram bins per channel (8 levels of 255 each); a cluster is ±1 bin
MAX_SAMPLES = 250_000


def choose_weights_free(cutout: Cutout) -> WeightsFreeShape:
    """`extrude` for a flat-colour logo, `inflate` for a confident cut-out of a shaded object, else
    `relief`."""
    mask = np.asarray(cutout.mask, dtype=bool)
    if not mask.any() or mask.mean() > MAX_FRAME_SHARE:
        return "relief"
    if cutout.confidence < CONFIDENT:
        return "relief"
    if cutout.method in MASK_METHODS and is_flat(cutout):
        return "extrude"
    return "inflate"


def is_flat(cutout: Cutout) -> bool:
    """Flat colours (rule 4): by the colour clusters, or by the luma peaks for a compressed picture."""
    return palette_share(cutout) >= PALETTE_SHARE or luma_share(cutout) >= LUMA_SHARE


def luma_share(cutout: Cutout, peaks: int = PALETTE_SIZE) -> float:
    """The share of the foreground's inner pixels whose blurred luma `peaks` narrow peaks cover (greedy).

    A flat region's luma, once JPEG's block noise is blurred away, sits within a few levels of
    one value; a shaded object's spreads over a ramp of many levels.
    """
    from scipy.ndimage import binary_erosion, gaussian_filter

    mask = np.asarray(cutout.mask, dtype=bool)
    image = cutout.image.convert("L")
    if mask.shape != (image.height, image.width):
        image = image.resize((mask.shape[1], mask.shape[0]), Image.Resampling.NEAREST)
    inner = binary_erosion(mask, iterations=LUMA_ERODE_PX)
    if inner.sum() < 0.25 * mask.sum():  # thin strokes
        inner = mask
    luma = gaussian_filter(np.asarray(image, dtype=np.float32), LUMA_BLUR_PX)[inner]
    if len(luma) > MAX_SAMPLES:
        luma = luma[:: len(luma) // MAX_SAMPLES + 1]
    hist = np.bincount(np.clip(np.round(luma), 0, 255).astype(np.int64), minlength=256).astype(np.float64)
    total, covered = hist.sum(), 0.0
    window = np.ones(2 * LUMA_HALF_WIDTH + 1)
    for _ in range(peaks):
        density = np.convolve(hist, window, mode="same")
        peak = int(np.argmax(density))
        if density[peak] <= 0:
            break
        covered += density[peak]
        hist[max(peak - LUMA_HALF_WIDTH, 0) : peak + LUMA_HALF_WIDTH + 1] = 0.0
    return covered / total if total else 0.0


def palette_share(cutout: Cutout, clusters: int = PALETTE_SIZE) -> float:
    """The share of the foreground's inner pixels that `clusters` colour clusters cover (greedy)."""
    from scipy.ndimage import binary_erosion

    mask = np.asarray(cutout.mask, dtype=bool)
    image = cutout.image.convert("RGB")
    if mask.shape != (image.height, image.width):  # a mask found at another resolution
        image = image.resize((mask.shape[1], mask.shape[0]), Image.Resampling.NEAREST)
    inner = binary_erosion(mask)
    if inner.sum() < 0.25 * mask.sum():  # thin strokes: the edge is most of the foreground
        inner = mask
    rgb = np.asarray(image)[inner]
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
    result: float = covered / total
    return result


def _box_sum(hist: np.ndarray) -> np.ndarray:
    from scipy.ndimage import uniform_filter

    result: np.ndarray = uniform_filter(hist, size=3, mode="constant") * 27.0
    return result
