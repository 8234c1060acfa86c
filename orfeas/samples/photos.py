"""Generated photo-like pictures whose foreground mask is known, for tests and bench/quality_cutout.py.

Each sample is what a camera would give for a simple scene: a shaded object (Lambert shading from
the upper left, a specular highlight) on a backdrop that is not one flat colour, with sensor
noise. The object is drawn with 4x4 supersampled coverage, so its edge is anti-aliased like a
photo's; the truth mask is coverage >= 0.5 at the picture's resolution (the displayed one, after
any EXIF rotation).

- `ball_on_gradient`: a red ball on a blue-to-sand gradient (the issue's case: the border method
  kept a band of backdrop, 39 % of the frame).
- `object_on_vignette`: a green bottle on a grey backdrop that darkens towards the corners.
- `object_on_texture`: a yellow blob of three discs on a mottled, woven backdrop.
- `photo_jpeg`: a blue mug shape on a warm gradient, JPEG-encoded at quality 75.
- `exif_portrait`: a tall egg stored landscape with EXIF orientation 6 (rotate to display).
- `frame_filling_photo`: a shaded landscape-like picture with no backdrop at all (a lithophane's
  picture): its truth is the whole frame.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

SUPERSAMPLE = 4


@dataclass(frozen=True)
class PhotoSample:
    """A picture as a file (`data`), as the pipeline decodes it (`image`, RGB) and its true mask."""

    name: str
    data: bytes
    image: Image.Image
    truth: np.ndarray  # bool (rows, cols) of the displayed picture


def _coverage(height: int, width: int, inside: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Share of each pixel inside the shape, from SUPERSAMPLE² samples per pixel."""
    k = SUPERSAMPLE
    y, x = np.mgrid[0 : height * k, 0 : width * k].astype(np.float64)
    hits = inside((x + 0.5) / k, (y + 0.5) / k).astype(np.float64)
    share: np.ndarray = hits.reshape(height, k, width, k).mean(axis=(1, 3))
    return share


def _shaded(
    height: int, width: int, centre: tuple[float, float], radius: float, colour: tuple[int, int, int]
) -> np.ndarray:
    """An object's colour as a sphere of `radius` at `centre` would be lit: ambient, Lambert, highlight."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    nx, ny = (x - centre[0]) / radius, (y - centre[1]) / radius
    nz = np.sqrt(np.clip(1.0 - nx**2 - ny**2, 0.0, 1.0))
    light = np.array([-0.45, -0.55, 0.7])
    light /= np.linalg.norm(light)
    lambert = np.clip(nx * light[0] + ny * light[1] + nz * light[2], 0.0, 1.0)
    shade = 0.25 + 0.75 * lambert
    rgb = np.asarray(colour, dtype=np.float64) * shade[..., None]
    highlight = np.clip(lambert, 0.0, 1.0) ** 40 * 120.0
    lit: np.ndarray = rgb + highlight[..., None]
    return lit


def _compose(
    backdrop: np.ndarray, subject: np.ndarray, coverage: np.ndarray, noise: float, seed: int
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rgb = backdrop * (1.0 - coverage[..., None]) + subject * coverage[..., None]
    rgb += rng.normal(0.0, noise, rgb.shape)
    pixels: np.ndarray = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    return pixels


def _png(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(out, format="PNG")
    return out.getvalue()


def _sample(name: str, data: bytes, coverage: np.ndarray) -> PhotoSample:
    from PIL import ImageOps

    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    return PhotoSample(name=name, data=data, image=image, truth=coverage >= 0.5)


def _vertical_gradient(
    height: int, width: int, top: tuple[int, int, int], bottom: tuple[int, int, int], tilt: float = 0.0
) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    t = np.clip(y / (height - 1) + tilt * (x / (width - 1) - 0.5), 0.0, 1.0)[..., None]
    blend: np.ndarray = np.asarray(top, dtype=np.float64) * (1 - t) + np.asarray(bottom, dtype=np.float64) * t
    return blend


def ball_on_gradient(height: int = 480, width: int = 640, seed: int = 0) -> PhotoSample:
    """A red ball (radius 30 % of the height) on a blue-to-sand vertical gradient, noise σ 4."""
    cx, cy, r = width / 2, height * 0.52, 0.3 * height
    cover = _coverage(height, width, lambda x, y: np.hypot(x - cx, y - cy) < r)
    backdrop = _vertical_gradient(height, width, (70, 110, 190), (230, 200, 150), tilt=0.2)
    subject = _shaded(height, width, (cx, cy), r, (205, 45, 40))
    return _sample("ball_on_gradient", _png(_compose(backdrop, subject, cover, 4.0, seed)), cover)


def _bottle(
    cx: float, top: float, bottom: float, body_r: float, neck_r: float
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A bottle: an elliptical body, a neck and a round lip (x, y in pixels, y down)."""
    body_cy = bottom - 1.1 * body_r
    neck_top = top + 0.12 * (bottom - top)

    def inside(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        body = ((x - cx) / body_r) ** 2 + ((y - body_cy) / (1.1 * body_r)) ** 2 < 1
        neck = (np.abs(x - cx) < neck_r) & (y > neck_top) & (y < body_cy)
        lip = ((x - cx) / (1.3 * neck_r)) ** 2 + ((y - neck_top) / (0.5 * neck_r)) ** 2 < 1
        return body | neck | lip

    return inside


def object_on_vignette(height: int = 480, width: int = 640, seed: int = 1) -> PhotoSample:
    """A green bottle on a grey backdrop that falls from 205 in the middle to about 90 in the corners."""
    cx, top, bottom = width * 0.5, height * 0.12, height * 0.9
    body_r, neck_r = 0.2 * height, 0.06 * height
    cover = _coverage(height, width, _bottle(cx, top, bottom, body_r, neck_r))
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r2 = ((x - width / 2) / (width / 2)) ** 2 + ((y - height / 2) / (height / 2)) ** 2
    backdrop = np.asarray((205, 203, 198), dtype=np.float64) * (1.0 - 0.28 * r2)[..., None]
    subject = _shaded(height, width, (cx, bottom - 1.1 * body_r), 1.6 * body_r, (40, 150, 70))
    return _sample("object_on_vignette", _png(_compose(backdrop, subject, cover, 5.0, seed)), cover)


def object_on_texture(height: int = 480, width: int = 640, seed: int = 2) -> PhotoSample:
    """A yellow blob (three overlapping discs) on a mottled, woven grey-green backdrop, noise σ 8."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    discs = [(width * 0.42, height * 0.55, 0.25 * height), (width * 0.6, height * 0.45, 0.2 * height)]
    discs.append((width * 0.55, height * 0.7, 0.16 * height))

    def inside(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = np.zeros(x.shape, dtype=bool)
        for dx, dy, dr in discs:
            out |= np.hypot(x - dx, y - dy) < dr
        return out

    cover = _coverage(height, width, inside)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    mottle = gaussian_filter(rng.normal(0.0, 1.0, (height, width)), 6.0)
    mottle *= 30.0 / mottle.std()
    weave = 22.0 * np.sin(x * 0.9) * np.sin(y * 0.9)
    backdrop = np.asarray((115, 135, 110), dtype=np.float64) + (mottle + weave)[..., None]
    subject = _shaded(height, width, (width * 0.5, height * 0.55), 0.35 * height, (235, 190, 40))
    return _sample("object_on_texture", _png(_compose(backdrop, subject, cover, 8.0, seed)), cover)


def photo_jpeg(height: int = 480, width: int = 640, seed: int = 3) -> PhotoSample:
    """A blue mug (a body and a ring handle) on a warm gradient, saved as a quality-75 JPEG."""
    bx0, bx1, by0, by1 = width * 0.3, width * 0.62, height * 0.22, height * 0.82
    hx, hy, ro, ri = width * 0.62, height * 0.5, height * 0.17, height * 0.09

    def inside(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        body = (x > bx0) & (x < bx1) & (y > by0) & (y < by1)
        handle = (np.hypot(x - hx, y - hy) < ro) & (np.hypot(x - hx, y - hy) > ri) & (x > hx - 2)
        return body | handle

    cover = _coverage(height, width, inside)
    backdrop = _vertical_gradient(height, width, (235, 215, 190), (170, 120, 90), tilt=-0.3)
    subject = _shaded(height, width, ((bx0 + bx1) / 2, height * 0.5), 0.4 * height, (40, 70, 180))
    out = io.BytesIO()
    Image.fromarray(_compose(backdrop, subject, cover, 3.0, seed), "RGB").save(out, format="JPEG", quality=75)
    return _sample("photo_jpeg", out.getvalue(), cover)


def exif_portrait(height: int = 480, width: int = 360, seed: int = 4) -> PhotoSample:
    """A tall purple egg on a grey-blue gradient, shown portrait, stored landscape with EXIF orientation 6."""
    cx, cy, rx, ry = width / 2, height * 0.5, width * 0.3, height * 0.36
    cover = _coverage(height, width, lambda x, y: ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1)
    backdrop = _vertical_gradient(height, width, (200, 205, 215), (120, 130, 150), tilt=0.1)
    subject = _shaded(height, width, (cx, cy), ry, (150, 60, 170))
    shown = Image.fromarray(_compose(backdrop, subject, cover, 4.0, seed), "RGB")
    # Orientation 6: the stored picture is turned 90° counter-clockwise from the scene; a viewer
    # turns it back 90° clockwise (Pillow's exif_transpose uses ROTATE_270 for it).
    stored = shown.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    stored.save(out, format="JPEG", quality=90, exif=exif.tobytes())
    return _sample("exif_portrait", out.getvalue(), cover)


def frame_filling_photo(height: int = 360, width: int = 480, seed: int = 5) -> PhotoSample:
    """Hills under a sky, shaded and noisy, filling the frame: there is no backdrop."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    horizon = height * (0.55 + 0.08 * np.sin(x / 47.0) + 0.05 * np.sin(x / 13.0 + 1.0))
    sky = _vertical_gradient(height, width, (90, 140, 220), (200, 220, 240))
    hills = _vertical_gradient(height, width, (70, 140, 60), (40, 80, 30))
    grass = gaussian_filter(rng.normal(0.0, 1.0, (height, width)), 2.0)
    hills += (grass * 40.0)[..., None]
    ground = (y > horizon)[..., None]
    rgb = np.where(ground, hills, sky)
    rgb += rng.normal(0.0, 5.0, rgb.shape)
    data = _png(np.clip(np.round(rgb), 0, 255).astype(np.uint8))
    return _sample("frame_filling_photo", data, np.ones((height, width)))


SAMPLES: dict[str, Callable[[], PhotoSample]] = {
    "ball_on_gradient": ball_on_gradient,
    "object_on_vignette": object_on_vignette,
    "object_on_texture": object_on_texture,
    "photo_jpeg": photo_jpeg,
    "exif_portrait": exif_portrait,
}
