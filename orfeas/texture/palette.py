"""A flat-colour picture's palette: its few real colours and which one each foreground pixel is.

Logos, icons and lettering are drawn in a handful of flat colours; anti-aliasing and JPEG add
blended pixels along every edge (a 40 px black text on white has a grey fringe over 23 % of its
pixels). The palette is found from the *flat* pixels only — those whose 8 neighbours are all in
the foreground and within ΔE 6 of them (CIE76 in CIELAB, where 2.3 is a just-noticeable step and
JPEG noise on a flat area stays under ~4) — so blends never become colours of their own:

1. The flat pixels' colours (binned to 1 ΔE in CIELAB) are held by the fewest colours, at most
   16, that hold 99.5 % of them within ΔE 10 — taken greedily, the most common colour not yet
   held first — then centred by weighted k-means; the count is capped by the request's
   `max_colors` (k-means then runs at the cap, merging the closest colours).
2. A photo is told apart by two measured criteria, either of which keeps the per-vertex
   projection: 16 colours do not hold 99.5 % (textures, noise), or the palette's boundaries are not
   edges of the picture — more than 25 % of the label changes between neighbouring pixels fall
   between two flat pixels (a shaded ball or a gradient cut into bands; on flat-colour art a
   label changes only across an edge, where pixels are not flat: 0 % on the generated logos).
   Without flat pixels (strokes two or three pixels wide are all edge), every foreground pixel
   counts, but only when the mask itself is thin.
3. Every foreground pixel gets a label: flat pixels their nearest colour; an edge pixel the nearest
   among the colours of the flat pixels within 2 px of it, so a blend of black and yellow snaps
   to black or yellow, never to a third colour that happens to lie between them; then specks of
   fewer than SPECK_PIXELS pixels join the neighbouring colour they touch most. An edge pixel
   also keeps how much of it is the other colour next to it (its position on the line between
   the two in sRGB, where drawing programs mix an edge), so region boundaries can be traced
   between pixels (`Palette.membership`).

Each colour is the median of its flat pixels in sRGB, so a PNG's (220, 30, 30) stays exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from orfeas.types import Cutout

# Pictures are shrunk to this longest side first; labels are scaled back to the mask's size.
MAX_SIDE = 2048
MAX_COLOURS = 16  # the request field's own limit: the decision below does not depend on the cap
FLAT_DE = 6.0
COVER_DE = 10.0
COVER_SHARE = 0.995
# More than this share of label changes between two flat pixels: the bands of a gradient.
SOFT_BOUNDARY_SHARE = 0.25
# Fewer flat pixels than this share of the foreground: the picture is strokes, use every pixel.
MIN_FLAT_SHARE = 0.1
# A mask is thin when eroding it once keeps less than this share: strokes of a few pixels (the
# 40 px text keeps 54 %, a filled shape over 90 %).
THIN_SHARE = 0.7
SNAP_RADIUS = 2
# An edge pixel is a mix of two colours when it lies within this many levels (of 255, in sRGB)
# of the line between them: JPEG noise stays under ~10.
BLEND_LEVELS = 24.0
SPECK_PIXELS = 8
KMEANS_ROUNDS = 25
MAX_SAMPLES = 400_000


@dataclass(frozen=True)
class Palette:
    """`colours`: (k, 3) uint8 sRGB, most pixels first. `labels`: (rows, cols) int16 at the mask's
    size, the palette index of each foreground pixel and -1 outside it. `blend`: the anti-aliased
    pixels between two colours, for boundaries finer than a pixel (see `membership`)."""

    colours: np.ndarray
    labels: np.ndarray
    blend: EdgeBlend | None = None

    def __len__(self) -> int:
        return len(self.colours)

    def membership(self, i: int) -> np.ndarray:
        """How much of each pixel is colour i, float32 at the mask's size: 1 or 0 inside the
        colours, the blend's share along an anti-aliased boundary between two of them (a pixel
        of 30 % red and 70 % blue is 0.3 red), so a boundary traced at 0.5 falls where the
        picture's own edge is, not on the pixel grid."""
        if self.blend is None:
            result: np.ndarray = (self.labels == i).astype(np.float32)
            return result
        b = self.blend
        m = (b.labels == i).astype(np.float32)
        own = b.labels[b.rows, b.cols]
        m[b.rows, b.cols] = np.where(
            own == i, 1.0 - b.share, np.where(b.other == i, b.share, m[b.rows, b.cols])
        )
        if m.shape != self.labels.shape:
            rows, cols = self.labels.shape
            m = np.asarray(Image.fromarray(m, "F").resize((cols, rows), Image.Resampling.BILINEAR))
        return np.where(self.labels >= 0, m, 0.0).astype(np.float32)


@dataclass(frozen=True)
class EdgeBlend:
    """At the working resolution: `labels`, and for each blended pixel (rows, cols) the other
    colour it mixes with and that colour's share of it (0..1)."""

    labels: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    other: np.ndarray
    share: np.ndarray


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (…, 3) uint8 → CIELAB (…, 3) float32, D65 white."""
    c = np.asarray(rgb, dtype=np.float32) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ],
        dtype=np.float32,
    )
    xyz = linear @ m.T / np.array([0.95047, 1.0, 1.08883], dtype=np.float32)
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    lab = np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1
    )
    return lab.astype(np.float32)


def find_palette(cutout: Cutout, max_colors: int) -> Palette | None:
    """The picture's palette (at most `max_colors` colours), or None for a photo (see above)."""
    from scipy.ndimage import binary_erosion

    rgb, mask = _working_picture(cutout)
    if not mask.any():
        return None
    lab = srgb_to_lab(rgb)
    flat = _flat_pixels(lab, mask)
    if flat.sum() >= MIN_FLAT_SHARE * mask.sum():
        samples = flat
        centres = _choose_centres(lab[flat])
    elif binary_erosion(mask).sum() < THIN_SHARE * mask.sum():
        samples = mask
        centres = _stroke_colours(lab[mask], _backdrop(lab, mask))
    else:
        return None  # a thick shape with no flat area: texture or noise
    if centres is None:
        return None
    if len(centres) > max_colors:
        centres = _kmeans(*_binned(lab[samples]), max_colors)
    nearest = _nearest(lab[mask], centres)
    if _soft_boundary_share(mask, flat, nearest) > SOFT_BOUNDARY_SHARE:
        return None
    labels = _snap_edges(lab, mask, flat, nearest, centres)
    labels = merge_specks(labels, SPECK_PIXELS)
    colours, remap = _colours_by_size(rgb, flat, labels, len(centres))
    labels = remap[labels]
    blend = _blends(rgb, labels, flat, colours)
    return Palette(
        colours=colours, labels=_to_mask_size(labels, np.asarray(cutout.mask, dtype=bool)), blend=blend
    )


def _working_picture(cutout: Cutout) -> tuple[np.ndarray, np.ndarray]:
    image = cutout.image.convert("RGB")
    mask = np.asarray(cutout.mask, dtype=bool)
    size = image.size
    if max(size) > MAX_SIDE:
        scale = MAX_SIDE / max(size)
        size = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
        image = image.resize(size, Image.Resampling.BOX)
    if mask.shape != (size[1], size[0]):
        shrunk = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.BOX)
        mask = np.asarray(shrunk) > 127
    return np.asarray(image), mask


def _shifts(radius: int = 1) -> list[tuple[int, int]]:
    return [(dr, dc) for dr in range(-radius, radius + 1) for dc in range(-radius, radius + 1) if dr or dc]


def _shifted(a: np.ndarray, dr: int, dc: int, fill: float | bool) -> np.ndarray:
    """`a` moved so that out[r, c] = a[r + dr, c + dc], `fill` beyond the border."""
    out = np.full_like(a, fill)
    rows, cols = a.shape[:2]
    out[max(-dr, 0) : rows - max(dr, 0), max(-dc, 0) : cols - max(dc, 0)] = a[
        max(dr, 0) : rows + min(dr, 0), max(dc, 0) : cols + min(dc, 0)
    ]
    return out


def _flat_pixels(lab: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Foreground pixels whose 8 neighbours are foreground and within FLAT_DE of them."""
    flat = mask.copy()
    for dr, dc in _shifts():
        near = _shifted(lab, dr, dc, np.inf)
        flat &= _shifted(mask, dr, dc, False)
        flat &= np.sum((near - lab) ** 2, axis=-1) <= FLAT_DE**2
    return flat


def _binned(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Colours rounded to 1 ΔE with their counts: k-means over bins costs the same on any picture."""
    if len(lab) > MAX_SAMPLES:
        lab = lab[:: len(lab) // MAX_SAMPLES + 1]
    # One int64 key per bin (L, a, b each within ±512): a 1-D unique is ~10x faster than rows.
    q = np.round(lab).astype(np.int64) + 512
    keys, counts = np.unique((q[:, 0] << 20) | (q[:, 1] << 10) | q[:, 2], return_counts=True)
    bins = np.column_stack([keys >> 20, (keys >> 10) & 1023, keys & 1023]) - 512
    return bins.astype(np.float64), counts.astype(np.float64)


def _kmeans(points: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    """Weighted Lloyd iterations from a deterministic farthest-first start (the heaviest bin first)."""
    k = min(k, len(points))
    centres = [points[int(np.argmax(weights))]]
    d2 = np.sum((points - centres[0]) ** 2, axis=1)
    for _ in range(1, k):
        centres.append(points[int(np.argmax(weights * d2))])
        d2 = np.minimum(d2, np.sum((points - centres[-1]) ** 2, axis=1))
    c = np.array(centres)
    for _ in range(KMEANS_ROUNDS):
        owner = np.argmin(((points[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
        mass = np.bincount(owner, weights, minlength=k)
        moved = np.stack([np.bincount(owner, weights * points[:, j], minlength=k) for j in range(3)], axis=1)
        new = np.where(mass[:, None] > 0, moved / np.maximum(mass, 1e-12)[:, None], c)
        if np.allclose(new, c, atol=1e-3):
            break
        c = new
    return c


def _choose_centres(lab: np.ndarray) -> np.ndarray | None:
    """The fewest colours (≤ 16) holding COVER_SHARE of the pixels within COVER_DE: greedily the
    most common colour not yet held, then k-means at that count to centre them. Greedy first, as
    a photo's thousands of colours are refused after 16 cheap steps, where trying k-means at
    every k took 7 s on a 1024² photo."""
    points, weights = _binned(lab)
    held = np.zeros(len(points), dtype=bool)
    for k in range(1, MAX_COLOURS + 1):
        left = np.flatnonzero(~held)
        held |= np.sum((points - points[left[np.argmax(weights[left])]]) ** 2, axis=1) <= COVER_DE**2
        if weights[held].sum() >= COVER_SHARE * weights.sum():
            return _kmeans(points, weights, k)
    return None


def _backdrop(lab: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """The colour just outside the mask (median of a 2 px ring), which edge pixels blend with."""
    from scipy.ndimage import binary_dilation

    ring = binary_dilation(mask, iterations=2) & ~mask
    return np.median(lab[ring], axis=0) if ring.any() else None


def _stroke_colours(lab: np.ndarray, backdrop: np.ndarray | None) -> np.ndarray | None:
    """Colours of strokes too thin to have flat pixels: the most common colour, then the most common
    one not explained yet, where a pixel is explained when it lies within COVER_DE of a colour or
    of a blend of one with another or with the backdrop (an anti-aliased edge)."""
    points, weights = _binned(lab)
    ends = [] if backdrop is None else [np.asarray(backdrop, dtype=np.float64)]
    centres: list[np.ndarray] = []
    explained = np.zeros(len(points), dtype=bool)
    while len(centres) < MAX_COLOURS:
        left = np.flatnonzero(~explained)
        if weights[left].sum() <= (1 - COVER_SHARE) * weights.sum():
            return np.array(centres)
        new = points[left[np.argmax(weights[left])]]
        for other in [*ends, *centres]:
            explained |= _segment_distance(points, new, other) <= COVER_DE
        explained |= np.sum((points - new) ** 2, axis=1) <= COVER_DE**2
        centres.append(new)
    return None


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((points - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    result: np.ndarray = np.linalg.norm(points - (a + t[:, None] * ab), axis=1)
    return result


def _nearest(lab: np.ndarray, centres: np.ndarray) -> np.ndarray:
    out = np.empty(len(lab), dtype=np.int16)
    for start in range(0, len(lab), 1 << 18):  # (n, k) distances a chunk at a time
        chunk = lab[start : start + (1 << 18)].astype(np.float64)
        out[start : start + len(chunk)] = np.argmin(
            ((chunk[:, None, :] - centres[None]) ** 2).sum(-1), axis=1
        )
    return out


def _label_map(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    labels = np.full(mask.shape, -1, dtype=np.int16)
    labels[mask] = values
    return labels


def _soft_boundary_share(mask: np.ndarray, flat: np.ndarray, nearest: np.ndarray) -> float:
    """Of the neighbouring foreground pixel pairs whose nearest colours differ, the share where
    both pixels are flat (a label change with no edge in the picture)."""
    labels = _label_map(mask, nearest)
    changes = soft = 0
    for a, b, fa, fb in (
        (labels[:, :-1], labels[:, 1:], flat[:, :-1], flat[:, 1:]),
        (labels[:-1, :], labels[1:, :], flat[:-1, :], flat[1:, :]),
    ):
        differ = (a != b) & (a >= 0) & (b >= 0)
        changes += int(differ.sum())
        soft += int((differ & fa & fb).sum())
    return soft / changes if changes else 0.0


def _snap_edges(
    lab: np.ndarray, mask: np.ndarray, flat: np.ndarray, nearest: np.ndarray, centres: np.ndarray
) -> np.ndarray:
    """Labels for every foreground pixel; edge pixels choose among the colours of nearby flat pixels."""
    from scipy.ndimage import binary_dilation

    labels = _label_map(mask, nearest)
    edge = mask & ~flat
    if not edge.any() or not flat.any():
        return labels
    k = len(centres)
    window = np.ones((2 * SNAP_RADIUS + 1,) * 2, dtype=bool)
    er, ec = np.nonzero(edge)
    allowed = np.zeros((len(er), k), dtype=bool)
    for i in range(k):
        allowed[:, i] = binary_dilation(flat & (labels == i), structure=window)[er, ec]
    allowed[~allowed.any(axis=1)] = True  # no flat pixel near: any colour
    d2 = ((lab[er, ec].astype(np.float64)[:, None, :] - centres[None]) ** 2).sum(-1)
    d2[~allowed] = np.inf
    labels[er, ec] = np.argmin(d2, axis=1)
    return labels


def _blends(rgb: np.ndarray, labels: np.ndarray, flat: np.ndarray, colours: np.ndarray) -> EdgeBlend | None:
    """The edge pixels that are a mix of their own colour and one next to them (within 2 px),
    with that colour's share: the pixel's position on the line between the two colours in sRGB,
    where drawing programs mix an edge, taken when it lies within BLEND_LEVELS of that line."""
    from scipy.ndimage import binary_dilation

    k = len(colours)
    edge = (labels >= 0) & ~flat
    if k < 2 or not edge.any():
        return None
    window = np.ones((2 * SNAP_RADIUS + 1,) * 2, dtype=bool)
    er, ec = np.nonzero(edge)
    own = labels[er, ec].astype(np.int64)
    x = rgb[er, ec].astype(np.float64)
    a = colours[own].astype(np.float64)
    best = np.full(len(er), np.inf)
    other = np.full(len(er), -1, dtype=np.int64)
    share = np.zeros(len(er))
    for j in range(k):
        near = binary_dilation(labels == j, structure=window)[er, ec]
        ab = colours[j].astype(np.float64) - a
        t = np.clip(np.einsum("ij,ij->i", x - a, ab) / np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-12), 0, 1)
        dist = np.linalg.norm(x - (a + t[:, None] * ab), axis=1)
        dist[(own == j) | ~near] = np.inf
        better = dist < best
        best[better], other[better], share[better] = dist[better], j, t[better]
    blended = (best <= BLEND_LEVELS) & (share > 0)
    return EdgeBlend(labels, er[blended], ec[blended], other[blended], share[blended].astype(np.float32))


def merge_specks(labels: np.ndarray, min_pixels: int) -> np.ndarray:
    """Connected pieces (8-connected) of one label smaller than `min_pixels` take the label they
    share most 4-neighbour contacts with; background (-1) is never changed, nor given."""
    from scipy.ndimage import find_objects, label

    labels = labels.copy()
    eight = np.ones((3, 3), dtype=bool)
    for value in np.unique(labels[labels >= 0]).tolist():
        pieces, count = label(labels == value, structure=eight)
        if count <= 1:
            continue
        sizes = np.bincount(pieces.ravel(), minlength=count + 1)
        for piece, box in enumerate(find_objects(pieces), start=1):
            if box is None or sizes[piece] >= min_pixels:
                continue
            r0, r1 = max(box[0].start - 1, 0), box[0].stop + 1
            c0, c1 = max(box[1].start - 1, 0), box[1].stop + 1
            window, own = labels[r0:r1, c0:c1], pieces[r0:r1, c0:c1] == piece
            touching = np.zeros_like(own)
            for dr, dc in ((0, 1), (0, -1), (1, 0), (-1, 0)):
                touching |= _shifted(own, dr, dc, False)
            around = window[touching & ~own]
            around = around[(around >= 0) & (around != value)]
            if around.size:
                window[own] = np.bincount(around).argmax()
    return labels


def _colours_by_size(
    rgb: np.ndarray, flat: np.ndarray, labels: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each label's colour (median sRGB of its flat pixels, else of all its pixels), by falling
    pixel count, unused labels dropped; and the renumbering, old label → new (index -1 → -1)."""
    counts = np.bincount(labels[labels >= 0].astype(np.int64), minlength=k)
    order = [int(i) for i in np.argsort(-counts, kind="stable") if counts[i] > 0]
    colours = []
    for i in order:
        own = labels == i
        pick = own & flat if (own & flat).any() else own
        colours.append(np.median(rgb[pick], axis=0))
    remap = np.full(k + 1, -1, dtype=np.int16)  # remap[-1] (the backdrop) stays -1
    remap[np.array(order)] = np.arange(len(order))
    return np.round(np.array(colours)).astype(np.uint8), remap


def _to_mask_size(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Labels at the mask's resolution (nearest pixel; a mask pixel the shrunk mask missed takes
    the nearest label), -1 wherever the mask is off."""
    from scipy.ndimage import distance_transform_edt

    if labels.shape != mask.shape:
        rows = np.minimum(
            (np.arange(mask.shape[0]) + 0.5) * labels.shape[0] / mask.shape[0], labels.shape[0] - 1
        )
        cols = np.minimum(
            (np.arange(mask.shape[1]) + 0.5) * labels.shape[1] / mask.shape[1], labels.shape[1] - 1
        )
        labels = labels[rows.astype(int)[:, None], cols.astype(int)[None, :]]
    missing = mask & (labels < 0)
    if missing.any():
        _, (nr, nc) = distance_transform_edt(labels < 0, return_indices=True)
        labels = labels.copy()
        labels[missing] = labels[nr[missing], nc[missing]]
    out = np.where(mask, labels, -1).astype(np.int16)
    return out
