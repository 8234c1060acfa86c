"""Weights-free background removal: the alpha channel when it says something, else the border colour,
else a photo backdrop model refined by a graph cut.

1. Alpha ("alpha"): a picture with a real transparent area (at least 0.5 % of its pixels) already
   says what its foreground is: alpha >= 128. Only dust is cleaned (specks and pin holes of a few
   pixels); holes the author cut stay holes.
2. Border ("border"): on a working copy at most 1024 px on its longest side (3000 x 2000 → 1024 x
   683, 8.6x fewer pixels, so the cost stops growing with the picture), lightly smoothed:
   - the background colours are the dominant clusters of the border ring's pixels (1 % of the
     short side wide): up to 3 colours each covering at least 20 % of the ring, each with its own
     median and a tolerance from its spread, so an object that touches the frame, a two-tone
     backdrop or noise do not throw the estimate off;
   - pixels within tolerance of a background colour form candidate regions; those connected to
     the frame's edge are background (the flood fill), and so are enclosed ones that are not
     tiny (the hole of a ring or a letter "O": background colour seen through the object);
   - the mask is cleaned: opening and closing (3x3), parts smaller than 1 % of the largest part
     dropped, holes below the hole size filled; then scaled back up to the picture's size.
3. Photo ("graphcut"): a backdrop that is not a few flat colours (a gradient, a vignette, a
   texture) defeats the flood fill: it keeps a band of the gradient, the vignette's bright
   middle, the texture's specks. A smooth model of the backdrop fitted to the border
   (backdrop.py) tells such pixels; when the flood fill's foreground holds more than 1 % of the
   frame of them, or it found nothing, a trimap from that model is refined by OpenCV's GrabCut
   (graphcut.py) on a working copy at most 512 px on its longest side, and the cut-out's rim is
   recoloured from just inside it (its pixels blend in the backdrop). The flood fill's answer is
   kept on flat backdrops, exactly as before.
4. Every mask comes with a confidence (Cutout.confidence, 0..1): 1 for an alpha channel; for
   the others how far the mask agrees with the method's own backdrop model, times how clearly
   the foreground stands out of it. Under MIN_CONFIDENCE the mask is a guess, dropped as in 5.
5. If nothing finds a sensible foreground (an empty mask, no background colour on the border, a
   foreground scattered in specks over a border too varied to be a backdrop, or an unsure one,
   as in a photo that fills the frame), the whole picture is the foreground, with a warning, so
   the job still makes a relief.
6. A small picture (under 128 px on its longest side) is cut out enlarged, with a smooth
   sub-pixel mask (enlarged_cutout), so its outline is not its pixel staircase.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from orfeas.settings import Settings
from orfeas.types import Cutout, StageContext

WORK_SIDE = 1024  # longest side the border method works at
ALPHA_CUT = 128  # alpha >= this is foreground
ALPHA_MIN_TRANSPARENT = 0.005  # share of transparent pixels that makes the alpha channel meaningful
BORDER_RING = 0.01  # ring width, share of the short side (at least 2 px)
MAX_BACKGROUND_COLOURS = 3
MIN_COLOUR_SHARE = 0.2  # a background colour covers at least this share of the ring
CLUSTER_RADIUS = 40.0  # RGB distance that gathers one background colour's ring pixels
TOLERANCE_RANGE = (16.0, 64.0)  # RGB distance within which a pixel matches a background colour
HOLE_SHARE = 1e-4  # enclosed background regions of at least this share of the frame stay holes
MIN_HOLE_PX = 9
PART_SHARE = 0.01  # parts smaller than this share of the largest part are dropped
MIN_FOREGROUND_SHARE = 0.001  # below this the mask counts as empty
# A "scattered" border result: at least this many parts, none over SCATTER_LARGEST_SHARE of the
# frame, with the backdrop's tolerance at its widest (the border is not one flat colour). A smooth
# full-frame texture gives ~85 parts of at most 0.5 %; a line of 30 letters on a flat backdrop has
# as many parts but a narrow tolerance, and stays lettering.
SCATTER_PARTS = 24
SCATTER_LARGEST_SHARE = 0.02
# The photo method (backdrop.py, graphcut.py) works on a smaller copy: GrabCut costs about 0.3 s
# at 512 x 384 and grows with the pixel count; its edge is refined back up by scale_mask.
PHOTO_SIDE = 512
# The backdrop model is trusted when this share of the ring lies near it (a frame-filling scene: ~0.9
# of a varied ring is explained only because the model's spread grows to fit it; see CONFIDENT).
MIN_RING_INLIERS = 0.8
# Backdrop-like pixels (by the photo model) inside the flood fill's foreground, share of the frame,
# above which the flood fill is judged to have kept backdrop.
LEAK_SHARE = 0.01
# A photo cut-out's outer band recoloured from inside (graphcut.decontaminate), in working-copy
# pixels: the blend of an anti-aliased edge is 1-2 px, a JPEG's chroma bleed up to 5
# (orfeas/samples/photos.py).
DECONTAMINATE_PX = 4.0
# Below this confidence a cut-out is a guess (a frame-filling scene's lighter hills, 0.10): the
# whole picture is kept instead, as a relief of it shows more than a cut of it.
MIN_CONFIDENCE = 0.5
# Pictures with a longest side under SMALL_SIDE are cut out enlarged to UPSCALE_SIDE or more (see
# enlarged_cutout): at 100 mm a 127 px picture has 0.8 mm pixels, a visible staircase.
SMALL_SIDE = 128
UPSCALE_SIDE = 1024
# The enlarged mask's blur, in source pixels: a rasterised disc's edge strays ±0.5 px from its
# circle; σ 0.6 brings the radius's spread from 0.19 to 0.11 px (a 26 px disc) and still keeps a
# 1 px line (its peak coverage stays 0.6, over the 0.5 cut); σ 0.8 gains 0.02 px more but
# would drop such lines.
BLUR_SOURCE_PX = 0.6
NO_BACKDROP = "background: no uniform background colour on the border; the whole picture is kept"


@dataclass(frozen=True)
class BackgroundColour:
    rgb: np.ndarray  # float32 (3,)
    tolerance: float
    share: float  # of the border ring


class ClassicBackgroundRemover:
    """Alpha channel or border-colour flood fill; no model weights."""

    name = "classic"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def remove(self, image: Image.Image, ctx: StageContext) -> Cutout:
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        ctx.check()
        alpha = np.asarray(rgba.getchannel("A"))
        transparent = int(np.count_nonzero(alpha < ALPHA_CUT))
        if transparent == alpha.size:
            ctx.warn("background: the picture is fully transparent; its colours are used instead")
            transparent = 0
        if transparent >= ALPHA_MIN_TRANSPARENT * alpha.size:
            # The author's own mask: nothing here is a guess.
            found = Found("alpha", mask_from_alpha(alpha, ctx), 1.0, None)
        else:
            found = mask_without_alpha(rgba, ctx)
        ctx.report(0.9)
        mask, confidence = found.mask, found.confidence
        if mask is None:
            ctx.warn(found.reason or "background: no backdrop found; the whole picture is kept")
            mask, confidence = np.ones(alpha.shape, dtype=bool), 0.0
        elif mask.mean() < MIN_FOREGROUND_SHARE:
            ctx.warn(f"background: no foreground found ({found.method}); the whole picture is kept")
            mask, confidence = np.ones(alpha.shape, dtype=bool), 0.0
        elif confidence < MIN_CONFIDENCE:
            ctx.warn(
                f"background: the cut-out is unsure ({found.method}, confidence {confidence:.2f});"
                " the whole picture is kept"
            )
            mask, confidence = np.ones(alpha.shape, dtype=bool), 0.0
        ctx.check()
        if max(rgba.size) < SMALL_SIDE and confidence > 0:
            soft = alpha.astype(np.float32) / 255.0 if found.method == "alpha" else None
            return enlarged_cutout(rgba, mask, soft, found.method, round(confidence, 4))
        cut = rgba.copy()
        if found.small is not None and confidence > 0:
            from orfeas.background.graphcut import decontaminate

            rgb = decontaminate(np.asarray(rgba.convert("RGB")), mask, found.small, DECONTAMINATE_PX)
            cut = Image.fromarray(rgb, "RGB").convert("RGBA")
        cut.putalpha(Image.fromarray(mask.astype(np.uint8) * 255, "L"))
        return Cutout(image=cut, mask=mask, method=found.method, confidence=round(confidence, 4))


def enlarged_cutout(
    rgba: Image.Image, mask: np.ndarray, soft: np.ndarray | None, method: str, confidence: float
) -> Cutout:
    """A small picture's cut-out enlarged k times (longest side to at least UPSCALE_SIDE) with a
    smooth, sub-pixel mask, so its outline is not a staircase of its pixels and the shape's
    quality can add detail (a 32 x 32 icon: k = 32, a 1024 x 1024 mask).

    Colours are enlarged by pixel replication, so they stay the picture's own. The mask is the
    coverage (an alpha channel's own soft values where they agree with the cleaned mask, else
    the mask) interpolated bilinearly and blurred by BLUR_SOURCE_PX, cut at 0.5: a pixel art's
    corners round off by about half a pixel, an anti-aliased edge keeps its sub-pixel position.
    """
    from scipy.ndimage import gaussian_filter

    k = int(np.ceil(UPSCALE_SIDE / max(rgba.size)))
    size = (rgba.width * k, rgba.height * k)
    coverage = mask.astype(np.float32)
    if soft is not None:
        agrees = (soft >= ALPHA_CUT / 255.0) == mask
        coverage = np.where(agrees, soft, coverage)
    field = np.asarray(Image.fromarray(coverage, "F").resize(size, Image.Resampling.BILINEAR))
    big_mask = gaussian_filter(field, sigma=BLUR_SOURCE_PX * k) > 0.5
    image = rgba.convert("RGB").resize(size, Image.Resampling.NEAREST).convert("RGBA")
    image.putalpha(Image.fromarray(big_mask.astype(np.uint8) * 255, "L"))
    return Cutout(image=image, mask=big_mask, method=method, confidence=confidence, upscale=k)


@dataclass(frozen=True)
class Found:
    """A method's answer: its mask at the picture's size (None: it found no backdrop, `reason` says
    why), and how far the mask agrees with the method's own model of the backdrop (0..1)."""

    method: str
    mask: np.ndarray | None
    confidence: float
    reason: str | None
    small: np.ndarray | None = None  # a photo cut's mask at its working size, for the rim's colours


def mask_without_alpha(rgba: Image.Image, ctx: StageContext) -> Found:
    """The border-colour flood fill, or the photo backdrop model and graph cut where that fails.

    The flood fill stays the answer for a backdrop of a few flat colours (logos on white, a wall
    above a floor): exact there, and fast. The photo method takes over when the backdrop model
    (a smooth surface fitted to the ring, see backdrop.py) explains the border and the flood fill
    left pixels that match that model inside its foreground (a gradient's band, a vignette's
    bright middle, a texture's specks: more than LEAK_SHARE of the frame), or found nothing.
    """
    from orfeas.background.backdrop import fit_backdrop
    from orfeas.background.graphcut import AGREE, CONFIDENT, SURE_BACKGROUND, agreement, graph_cut
    from orfeas.background.graphcut import separation as score_separation

    border = mask_from_border(rgba, ctx)
    photo = np.asarray(working_copy(rgba, PHOTO_SIDE))
    fit = fit_backdrop(photo.astype(np.float32))
    ctx.report(0.8)
    ctx.check()
    usable = border.mask is not None and border.mask.mean() >= MIN_FOREGROUND_SHARE
    leak, apart = 0.0, border.separation
    if usable and border.small is not None:
        # Not eroded first: the blur's halo makes the object's own edge score high, so the pixels
        # that score low inside the flood fill's foreground are backdrop, not the object's rim.
        flat = scale_mask(border.small, photo.shape[:2])
        leak = float(np.mean(flat & (fit.score < SURE_BACKGROUND)))
        if fit.ring_inliers >= MIN_RING_INLIERS:
            # A gradient widens the flood fill's tolerance; the photo model may see the object
            # stand out more clearly.
            apart = max(apart, score_separation(fit.score, flat))
    if fit.ring_inliers >= MIN_RING_INLIERS and (not usable or leak > LEAK_SHARE):
        cut = graph_cut(photo, fit)
        frame = cut.mask.size
        mask = clean_mask(cut.mask, min_hole=max(MIN_HOLE_PX, int(HOLE_SHARE * frame)))
        if cut.confidence >= CONFIDENT and mask.mean() >= MIN_FOREGROUND_SHARE:
            confidence = agreement(mask, fit.score < AGREE) * score_separation(fit.score, mask)
            full = scale_mask(mask, (rgba.height, rgba.width))
            return Found("graphcut", full, confidence, None, small=mask)
    confidence = border.agreement * apart
    if leak > LEAK_SHARE and border.mask is not None:
        # The flood fill kept backdrop the photo model sees: say so in its confidence.
        confidence = min(confidence, 1.0 - leak / max(float(border.mask.mean()), 1e-9))
    return Found("border", border.mask, max(confidence, 0.0), border.reason)


# -- alpha ------------------------------------------------------------------------------------
def mask_from_alpha(alpha: np.ndarray, ctx: StageContext) -> np.ndarray:
    """alpha >= 128, without specks and pin holes of a few pixels (anti-aliasing dust)."""
    mask = alpha >= ALPHA_CUT
    ctx.report(0.3)
    ctx.check()
    dust = max(4, int(2e-5 * mask.size))
    mask = drop_small_parts(mask, min_px=dust, share_of_largest=0.0)
    ctx.report(0.6)
    ctx.check()
    return fill_small_holes(mask, max_px=dust)


# -- border colour ----------------------------------------------------------------------------
@dataclass(frozen=True)
class BorderCut:
    """The flood fill's mask at the picture's size (None: no dominant border colour) and at the
    working size (`small`), its agreement with the colour test (see graphcut.agreement), its
    separation from the backdrop colours (see `separation`), and the reason it gave up."""

    mask: np.ndarray | None
    small: np.ndarray | None
    agreement: float
    separation: float
    reason: str | None


def mask_from_border(rgba: Image.Image, ctx: StageContext) -> BorderCut:
    """The foreground by flooding the border colour(s)."""
    from scipy import ndimage

    from orfeas.background.graphcut import agreement

    full = (rgba.height, rgba.width)
    small = working_copy(rgba)
    # Not smoothed: a blur would push the edge out by its radius (a 3x3 mean cost IoU 0.9965 →
    # 0.9864 on a 3000 x 2000 test picture); the box downscale already averages the noise, and
    # the tolerance follows what noise is left.
    rgb = np.asarray(small, dtype=np.float32)
    ctx.report(0.15)
    ctx.check()

    colours = background_colours(border_ring(rgb))
    if not colours:
        return BorderCut(None, None, 0.0, 0.0, NO_BACKDROP)
    candidate = np.zeros(rgb.shape[:2], dtype=bool)
    for colour in colours:
        distance = np.sqrt(np.sum((rgb - colour.rgb) ** 2, axis=2))
        candidate |= distance <= colour.tolerance
    ctx.report(0.35)
    ctx.check()

    frame = candidate.size
    min_hole = max(MIN_HOLE_PX, int(HOLE_SHARE * frame))
    labels, count = ndimage.label(candidate)
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    background_label = sizes >= min_hole  # enclosed regions big enough to be real holes
    background_label[np.unique(edge)] = True  # everything the flood from the frame reaches
    background_label[0] = False  # label 0: not background-coloured
    foreground: np.ndarray = ~background_label[labels]
    ctx.report(0.55)
    ctx.check()

    foreground = clean_mask(foreground, min_hole=min_hole)
    ctx.report(0.75)
    ctx.check()
    parts = scattered_parts(foreground, colours)
    if parts:
        reason = (
            f"background: the border is not a backdrop (the foreground would be {parts} specks);"
            " the whole picture is kept"
        )
        return BorderCut(None, None, 0.0, 0.0, reason)
    agree, apart = agreement(foreground, candidate), separation(rgb, foreground, colours)
    small_mask = foreground
    if foreground.shape != full:
        foreground = scale_mask(foreground, full)
    return BorderCut(foreground, small_mask, agree, apart, None)


def separation(rgb: np.ndarray, mask: np.ndarray, colours: list[BackgroundColour]) -> float:
    """How clearly the foreground differs from the backdrop colours, 0..1.

    The median over the foreground (one pixel in from its edge) of the distance to the nearest
    backdrop colour in units of that colour's tolerance: 1 means the foreground only just
    escapes the tolerance (a scene's lighter hills against its darker ones), 2 or more a clear
    object (a logo on white: about 6). Mapped linearly from 1 → 0 to 2 → 1.
    """
    from scipy import ndimage

    if not mask.any():
        return 0.0
    inner = ndimage.binary_erosion(mask)
    if not inner.any():
        inner = mask
    pixels = rgb[inner]
    if len(pixels) > 100_000:
        pixels = pixels[:: len(pixels) // 100_000 + 1]
    ratio = np.min([np.linalg.norm(pixels - c.rgb, axis=1) / c.tolerance for c in colours], axis=0)
    return float(np.clip(np.median(ratio) - 1.0, 0.0, 1.0))


def scattered_parts(mask: np.ndarray, colours: list[BackgroundColour]) -> int:
    """The number of parts when the mask is specks over a varied border (see SCATTER_PARTS), else 0."""
    from scipy import ndimage

    if max(c.tolerance for c in colours) < TOLERANCE_RANGE[1]:
        return 0
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count < SCATTER_PARTS:
        return 0
    largest = int(np.bincount(labels.ravel())[1:].max())
    return count if largest < SCATTER_LARGEST_SHARE * mask.size else 0


def working_copy(rgba: Image.Image, side: int = WORK_SIDE) -> Image.Image:
    """The RGB picture with its longest side at most `side` (box filter: an average, no aliasing)."""
    # RGB first: Pillow resizes RGBA through premultiplied alpha, two extra passes over the
    # full picture for an alpha channel this method does not use.
    rgb = rgba.convert("RGB")
    longest = max(rgb.size)
    if longest <= side:
        return rgb
    scale = side / longest
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    return rgb.resize(size, Image.Resampling.BOX)


def border_ring(rgb: np.ndarray) -> np.ndarray:
    """The pixels of the frame's outer ring, (n, 3)."""
    h, w = rgb.shape[:2]
    k = max(2, round(BORDER_RING * min(h, w)))
    k = min(k, max(1, min(h, w) // 2))
    parts = [rgb[:k].reshape(-1, 3), rgb[h - k :].reshape(-1, 3)]
    if h > 2 * k:
        parts += [rgb[k : h - k, :k].reshape(-1, 3), rgb[k : h - k, w - k :].reshape(-1, 3)]
    return np.concatenate(parts)


def background_colours(ring: np.ndarray) -> list[BackgroundColour]:
    """Up to 3 dominant colour clusters of the ring, each over 20 % of it, largest first."""
    total = len(ring)
    remaining = ring
    colours: list[BackgroundColour] = []
    for _ in range(MAX_BACKGROUND_COLOURS):
        if len(remaining) < MIN_COLOUR_SHARE * total:
            break
        seed = _densest_colour(remaining)
        members = np.linalg.norm(remaining - seed, axis=1) <= CLUSTER_RADIUS
        if not members.any():
            break
        centre = np.median(remaining[members], axis=0)
        distance = np.linalg.norm(remaining - centre, axis=1)
        members = distance <= CLUSTER_RADIUS
        share = float(members.sum()) / total
        if share < MIN_COLOUR_SHARE:
            break
        # Tolerance from the cluster's own spread: a noisy backdrop gets a wider one.
        spread = float(np.percentile(distance[members], 95))
        tolerance = float(np.clip(2.5 * spread + 10.0, *TOLERANCE_RANGE))
        colours.append(BackgroundColour(centre.astype(np.float32), tolerance, share))
        remaining = remaining[distance > tolerance]
    return colours


def _densest_colour(pixels: np.ndarray) -> np.ndarray:
    """The mean colour of the densest 3x3x3 neighbourhood of a 16-level-per-channel histogram."""
    from scipy import ndimage

    bins = np.clip(pixels, 0, 255).astype(np.int64) // 16
    flat = (bins[:, 0] * 16 + bins[:, 1]) * 16 + bins[:, 2]
    hist = np.bincount(flat, minlength=16**3).reshape(16, 16, 16).astype(np.float64)
    density = ndimage.uniform_filter(hist, size=3, mode="constant")
    peak = np.array(np.unravel_index(int(np.argmax(density)), hist.shape))
    near = np.all(np.abs(bins - peak) <= 1, axis=1)
    return np.asarray(pixels[near].mean(axis=0), dtype=np.float32)


# -- cleaning ---------------------------------------------------------------------------------
def clean_mask(mask: np.ndarray, *, min_hole: int) -> np.ndarray:
    """Open and close (3x3), keep the large parts, fill holes smaller than `min_hole` pixels."""
    from scipy import ndimage

    square = np.ones((3, 3), dtype=bool)
    mask = ndimage.binary_opening(mask, structure=square)
    # Closing near the frame would pull the mask off the edge: pad so the edge is not a wall.
    padded = np.pad(mask, 1, mode="edge")
    mask = ndimage.binary_closing(padded, structure=square)[1:-1, 1:-1]
    mask = drop_small_parts(mask, min_px=min_hole, share_of_largest=PART_SHARE)
    return fill_small_holes(mask, max_px=min_hole)


def drop_small_parts(mask: np.ndarray, *, min_px: int, share_of_largest: float) -> np.ndarray:
    """Keep the 8-connected parts of at least `min_px` pixels and `share_of_largest` of the largest."""
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    keep = sizes >= max(min_px, share_of_largest * sizes.max())
    keep[0] = False
    if keep[1:].all():
        return mask
    result: np.ndarray = keep[labels]
    return result


def fill_small_holes(mask: np.ndarray, *, max_px: int) -> np.ndarray:
    """Fill the enclosed background regions (4-connected, not touching the frame) under `max_px`."""
    from scipy import ndimage

    labels, count = ndimage.label(~mask)
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    fill = sizes < max_px
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    fill[np.unique(edge)] = False
    fill[0] = False
    if not fill.any():
        return mask
    result: np.ndarray = mask | fill[labels]
    return result


def scale_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A bool mask resized to (rows, cols), edges interpolated rather than blocky."""
    small = Image.fromarray(mask.astype(np.uint8) * 255, "L")
    big = small.resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(big) >= 128
