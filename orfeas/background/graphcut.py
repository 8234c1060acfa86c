"""A photo's foreground: a trimap from the backdrop model, refined by a graph cut (OpenCV's GrabCut).

The backdrop model (orfeas/background/backdrop.py) scores every pixel by how far it is from the
backdrop the border predicts there. Scores make a trimap:

- sure background: score < 2, in a region connected to the frame's ring (the backdrop around
  the object) or large enough to be a hole (at least 1e-4 of the frame, as for the flood fill);
- probable background: the other pixels with score < 4 (the blur's halo, specks: the graph cut
  decides);
- probable foreground: score >= 4;
- sure foreground: score >= 8, more than 2 blur widths inside (the blur's halo is not trusted).

GrabCut (5 Gaussians per side, 4 iterations) then labels every pixel by colour and by the
picture's edges, on the unblurred working copy, so the edge is where the picture's edge is
rather than where the blurred score crosses a threshold.

Confidence is how well the final mask agrees with the scores away from its edge (the share of
its inside that is unlike the backdrop, score >= 3, and the share of its outside that is like
it, score < 3: the smaller of the two), times how clearly it stands out (`separation`). A clean
cut-out scores about 1; a patch of a frame-filling texture agrees with the scores by
construction but barely stands out, and scores about 0.1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orfeas.background.backdrop import BackdropFit

SURE_BACKGROUND = 2.0
PROBABLE_FOREGROUND = 4.0
SURE_FOREGROUND = 8.0
AGREE = 3.0  # the score that tells backdrop-like from not, for the confidence
GAUSSIANS_ITERATIONS = 4
# A mask at least this confident is trusted as a cut-out of an object (see orfeas/shape/select.py):
# the clean samples of orfeas/samples/photos.py score 0.97-1.0, a frame-filling scene under 0.6.
CONFIDENT = 0.8
HOLE_SHARE = 1e-4  # as orfeas/background/classic.py's
MIN_HOLE_PX = 9
BAND_PX = 2  # pixels either side of the mask's edge left out of the confidence (edges blur)


@dataclass(frozen=True)
class GraphCut:
    mask: np.ndarray  # bool, at the working copy's size
    confidence: float


def graph_cut(rgb: np.ndarray, fit: BackdropFit) -> GraphCut:
    """The foreground of a uint8 RGB working copy (rows, cols, 3) given its backdrop fit."""
    import cv2  # opencv-python-headless; imported here so the rest of the pipeline never loads it
    from scipy import ndimage

    score = fit.score
    near = score < SURE_BACKGROUND
    labels, count = ndimage.label(near)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    # Backdrop around the object, and backdrop seen through it (a mug's handle): a graph cut
    # left to itself fills a small enclosed hole, whose rim is a long cut.
    sure = sizes >= max(MIN_HOLE_PX, HOLE_SHARE * score.size)
    sure[np.unique(labels[fit.ring & near])] = True
    sure[0] = False
    sure_bg = sure[labels]

    trimap = np.full(score.shape, cv2.GC_PR_BGD, dtype=np.uint8)
    trimap[sure_bg] = cv2.GC_BGD
    trimap[score >= PROBABLE_FOREGROUND] = cv2.GC_PR_FGD
    inner = ndimage.binary_erosion(score >= SURE_FOREGROUND, iterations=max(1, round(2 * fit.blur_px)))
    trimap[inner] = cv2.GC_FGD
    if not (trimap == cv2.GC_PR_FGD).any() and not inner.any():
        return GraphCut(mask=np.zeros(score.shape, dtype=bool), confidence=0.0)

    background_model = np.zeros((1, 65), np.float64)
    foreground_model = np.zeros((1, 65), np.float64)
    image = np.ascontiguousarray(rgb[..., ::-1])  # OpenCV's channel order; GrabCut does not mind
    # OpenCV's stub types `rect` as a Rect, but GC_INIT_WITH_MASK ignores it and takes None.
    cv2.grabCut(  # type: ignore[call-overload]
        image, trimap, None, background_model, foreground_model, GAUSSIANS_ITERATIONS, cv2.GC_INIT_WITH_MASK
    )
    mask = (trimap == cv2.GC_FGD) | (trimap == cv2.GC_PR_FGD)
    return GraphCut(mask=mask, confidence=agreement(mask, score < AGREE) * separation(score, mask))


def separation(score: np.ndarray, mask: np.ndarray) -> float:
    """How clearly the mask stands out from the backdrop model: its median score mapped from
    AGREE → 0 to SURE_FOREGROUND → 1 (the samples' objects: 22-56; a bright patch of a
    frame-filling grey texture: 3.6)."""
    if not mask.any():
        return 0.0
    median = float(np.median(score[mask]))
    return float(np.clip((median - AGREE) / (SURE_FOREGROUND - AGREE), 0.0, 1.0))


def agreement(mask: np.ndarray, backdrop_like: np.ndarray, band_px: int = BAND_PX) -> float:
    """min(share of the mask's inside not backdrop-like, share of its outside backdrop-like).

    A band of `band_px` either side of the mask's edge is left out: edges blur."""
    from scipy import ndimage

    if not mask.any() or mask.all():
        return 0.0
    inside = ndimage.binary_erosion(mask, iterations=band_px)
    outside = ndimage.binary_erosion(~mask, iterations=band_px, border_value=1)
    if not inside.any() or not outside.any():
        inside, outside = mask, ~mask
    fg_agree = float(np.mean(~backdrop_like[inside]))
    bg_agree = float(np.mean(backdrop_like[outside]))
    return min(fg_agree, bg_agree)


def decontaminate(rgb: np.ndarray, mask: np.ndarray, small: np.ndarray, band_px: float) -> np.ndarray:
    """The picture with the foreground's outer band recoloured from just inside it.

    A photo's edge pixels blend the object with the backdrop (and a JPEG's chroma bleeds a few
    pixels further); projected onto a model's rim they would paint it in backdrop colours. Each
    foreground pixel of `mask` (the picture's size) within `band_px` of the edge of `small` (the
    working copy's mask, `band_px` in its pixels) takes the picture's colour at the nearest
    working pixel deeper than that. Distances are taken on the working copy, so the cost does
    not grow with the picture (a 12 MP photo: 0.96 s on its full-size mask, 0.16 s this way).
    """
    from scipy.ndimage import distance_transform_edt

    deep = distance_transform_edt(small) > band_px
    if not deep.any():
        return rgb
    _, (near_r, near_c) = distance_transform_edt(~deep, return_indices=True)
    sy, sx = small.shape[0] / mask.shape[0], small.shape[1] / mask.shape[1]
    rows, cols = np.nonzero(mask)
    rs = np.minimum((rows * sy).astype(np.int64), small.shape[0] - 1)
    cs = np.minimum((cols * sx).astype(np.int64), small.shape[1] - 1)
    edge = ~deep[rs, cs]
    rows, cols, rs, cs = rows[edge], cols[edge], rs[edge], cs[edge]
    from_r = np.minimum(((near_r[rs, cs] + 0.5) / sy).astype(np.int64), mask.shape[0] - 1)
    from_c = np.minimum(((near_c[rs, cs] + 0.5) / sx).astype(np.int64), mask.shape[1] - 1)
    out = rgb.copy()
    out[rows, cols] = rgb[from_r, from_c]
    return out
