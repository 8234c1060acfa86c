"""A smooth model of a photo's backdrop, fitted to the frame's border: gradients and vignettes.

A photographed backdrop is rarely one colour: a studio sweep is a gradient, a lens darkens the
corners (a vignette), a wall is lit from one side. Over the frame such a backdrop is close to a
low-order surface in x and y per colour channel, while its texture and the sensor's noise are
small-scale. So the model is:

1. the picture blurred by σ = 1 % of its short side (at least 1.5 px): noise and a weave's or a
   cloth's texture average out, an object's edge moves by less than σ;
2. per channel, a quadratic surface c(x, y) = a + b·x + c·y + d·x² + e·xy + f·y² fitted by least
   squares to the border ring's blurred pixels (a ring 4 % of the short side wide), refitted
   three times without the pixels far from the last fit, so an object touching the frame does
   not drag the surface;
3. the score: each pixel's distance from the surface, measured against the covariance of the
   kept ring pixels' errors (a Mahalanobis distance): 1 is a typical backdrop pixel's error,
   and a mottled grey backdrop's large brightness swings do not hide a change of hue.

A quadratic follows a linear gradient exactly and a radial vignette (falloff in r² = x² + y²)
exactly; a backdrop the surface cannot follow (a frame-filling scene) leaves a large spread or
few ring pixels near the fit, and is not a backdrop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RING_SHARE = 0.04  # ring width, share of the short side
BLUR_SHARE = 0.01  # σ of the blur, share of the short side
MIN_BLUR_PX = 1.5
REFITS = 3
TRIM_SHARE = 0.75
KEEP_SPREADS = 3.0  # a ring pixel is kept for the next fit within this score
MIN_SPREAD = 4.0  # RGB levels: the spread of a clean, noise-free backdrop is not zero


@dataclass(frozen=True)
class BackdropFit:
    """The fitted backdrop.

    `score` (rows, cols): each pixel's distance from the surface in units of the ring's own
    spread (Mahalanobis, so a backdrop whose texture varies in brightness only still tells a
    change of hue); `spread`: the ring's spread in RGB levels (root of the covariance's trace);
    `ring_inliers`: the share of the ring within KEEP_SPREADS; `ring`: the ring's mask; `blur_px`:
    the blur's σ.
    """

    score: np.ndarray
    spread: float
    ring_inliers: float
    ring: np.ndarray
    blur_px: float


def ring_mask(shape: tuple[int, int], share: float = RING_SHARE) -> np.ndarray:
    """True on the frame's outer ring, `share` of the short side wide (at least 2 px)."""
    h, w = shape
    k = max(2, round(share * min(h, w)))
    ring = np.zeros(shape, dtype=bool)
    ring[:k] = ring[-k:] = True
    ring[:, :k] = ring[:, -k:] = True
    return ring


def _design(shape: tuple[int, int]) -> np.ndarray:
    """The quadratic terms at every pixel, x and y scaled to [-1, 1]: (rows·cols, 6)."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    x = 2.0 * x / max(w - 1, 1) - 1.0
    y = 2.0 * y / max(h - 1, 1) - 1.0
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1).reshape(-1, 6)


def fit_backdrop(rgb: np.ndarray) -> BackdropFit:
    """The quadratic backdrop surface of a float RGB picture (rows, cols, 3), fitted to its ring."""
    from scipy.ndimage import gaussian_filter

    h, w = rgb.shape[:2]
    sigma = max(MIN_BLUR_PX, BLUR_SHARE * min(h, w))
    blurred = np.stack([gaussian_filter(rgb[..., c], sigma, mode="nearest") for c in range(3)], axis=-1)
    ring = ring_mask((h, w))
    design = _design((h, w))
    flat = blurred.reshape(-1, 3).astype(np.float64)
    ring_idx = np.flatnonzero(ring.reshape(-1))
    a, b = design[ring_idx], flat[ring_idx]
    # The first fit is to the TRIM_SHARE of the ring closest to its median colour: a least-squares
    # fit to all of it would bend towards an object covering part of the ring (17 % of it, in
    # tests/test_background.py) and widen the covariance enough to keep the object in every refit.
    distance = np.linalg.norm(b - np.median(b, axis=0), axis=1)
    keep = distance <= np.percentile(distance, 100 * TRIM_SHARE)
    inverse = np.eye(3) / MIN_SPREAD**2
    for _ in range(REFITS + 1):
        coef, *_ = np.linalg.lstsq(a[keep], b[keep], rcond=None)
        error = b - a @ coef
        inverse = _inverse_covariance(error[keep])
        score = _mahalanobis(error, inverse)
        new_keep = score <= KEEP_SPREADS
        if new_keep.sum() < 0.2 * len(ring_idx) or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    error = flat - design @ coef
    score = _mahalanobis(error, inverse).reshape(h, w)
    spread = float(np.sqrt(np.trace(np.linalg.inv(inverse))))
    inliers = float(np.mean(score[ring] <= KEEP_SPREADS))
    return BackdropFit(score=score, spread=spread, ring_inliers=inliers, ring=ring, blur_px=sigma)


def _inverse_covariance(error: np.ndarray) -> np.ndarray:
    """The inverse of the errors' covariance, each direction at least MIN_SPREAD levels wide."""
    cov = np.cov(error, rowvar=False) if len(error) > 3 else np.zeros((3, 3))
    values, vectors = np.linalg.eigh(cov)
    values = np.maximum(values, MIN_SPREAD**2)
    result: np.ndarray = (vectors / values) @ vectors.T
    return result


def _mahalanobis(error: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    result: np.ndarray = np.sqrt(np.maximum(np.einsum("ni,ij,nj->n", error, inverse, error), 0.0))
    return result
