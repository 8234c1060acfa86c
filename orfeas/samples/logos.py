"""Generated flat-colour pictures whose truth is known: the palette and every pixel's colour label.

Each picture is drawn with Pillow at SUPERSAMPLE times its size into a label image (0 for the
background, i + 1 for colour i) and shrunk by averaging, so edges are anti-aliased the way a
drawing program's are: an edge pixel's colour is the coverage-weighted mix of the colours under
it. The truth label of a pixel is the colour covering most of it; a pixel is foreground when the
colours cover at least half of it (the alpha ≥ 128 rule of the background stage). Drawing is
deterministic: the same Pillow gives the same bytes (the text uses Pillow's bundled font).

    logo          red ring and blue bar, transparent backdrop (a hole to keep)
    logo_on_white the same on opaque white (the backdrop is found by its colour)
    icon          anti-aliased three-colour icon: orange tile, navy triangle, white dot
    thin_text     black 40 px lettering on white, strokes 3–5 px wide
    smiley        yellow disc with black eyes and mouth (only colour tells them apart)
    letter_tile   white letter on a blue tile
    banner        4000 × 500 px lettering in two colours on white
    ball          a shaded sphere: a photo-like picture, no palette (`flat` is False)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SUPERSAMPLE = 4
WHITE = (255, 255, 255)
RED, BLUE = (220, 30, 30), (30, 60, 200)
ORANGE, NAVY, SNOW = (245, 150, 30), (20, 30, 90), (250, 250, 250)
BLACK, YELLOW = (0, 0, 0), (250, 210, 40)

Drawing = Callable[[ImageDraw.ImageDraw, int], None]  # (draw, scale): fills with i + 1 for colour i


@dataclass(frozen=True)
class Sample:
    """A picture with its truth: `colours` (k, 3) uint8 and `labels` (rows, cols) int16, the
    index of each foreground pixel's colour and -1 for the backdrop."""

    name: str
    image: Image.Image
    colours: np.ndarray
    labels: np.ndarray
    flat: bool = True

    def png(self) -> bytes:
        import io

        buffer = io.BytesIO()
        self.image.save(buffer, format="PNG")
        return buffer.getvalue()


def render(
    name: str,
    size: tuple[int, int],
    colours: list[tuple[int, int, int]],
    draw: Drawing,
    backdrop: tuple[int, int, int] | None = None,
) -> Sample:
    """Draw at SUPERSAMPLE × `size`, shrink by averaging; transparent unless `backdrop` is a colour."""
    w, h, s = size[0], size[1], SUPERSAMPLE
    big = Image.new("L", (w * s, h * s), 0)
    draw(ImageDraw.Draw(big), s)
    ids = np.asarray(big).reshape(h, s, w, s)
    cover = np.stack([(ids == v).mean(axis=(1, 3)) for v in range(len(colours) + 1)], axis=-1)
    palette = np.array(colours, dtype=np.float64)
    foreground = 1.0 - cover[..., 0]
    labels = np.where(foreground >= 0.5, np.argmax(cover[..., 1:], axis=-1), -1).astype(np.int16)
    mixed = cover[..., 1:] @ palette
    if backdrop is None:
        rgb = np.where(foreground[..., None] > 0, mixed / np.maximum(foreground, 1e-9)[..., None], 0.0)
        alpha = np.round(foreground * 255)
        pixels = np.dstack([np.round(rgb), alpha]).astype(np.uint8)
        image = Image.fromarray(pixels, "RGBA")
    else:
        rgb = mixed + cover[..., :1] * np.array(backdrop, dtype=np.float64)
        image = Image.fromarray(np.round(rgb).astype(np.uint8), "RGB")
    return Sample(name, image, np.array(colours, dtype=np.uint8), labels)


def _font(size: int) -> ImageFont.FreeTypeFont:
    font = ImageFont.load_default(size=size)
    assert isinstance(font, ImageFont.FreeTypeFont)  # Pillow ≥ 10.1 with FreeType
    return font


def _logo_drawing(d: ImageDraw.ImageDraw, s: int) -> None:
    d.ellipse((40 * s, 40 * s, 472 * s, 472 * s), fill=1)
    d.ellipse((150 * s, 150 * s, 362 * s, 362 * s), fill=0)
    d.rectangle((226 * s, 70 * s, 286 * s, 442 * s), fill=2)


def logo() -> Sample:
    return render("logo", (512, 512), [RED, BLUE], _logo_drawing)


def logo_on_white() -> Sample:
    return render("logo_on_white", (512, 512), [RED, BLUE], _logo_drawing, backdrop=WHITE)


def icon() -> Sample:
    def draw(d: ImageDraw.ImageDraw, s: int) -> None:
        d.rounded_rectangle((16 * s, 16 * s, 240 * s, 240 * s), radius=40 * s, fill=1)
        d.polygon([(88 * s, 64 * s), (88 * s, 192 * s), (192 * s, 128 * s)], fill=2)
        d.ellipse((176 * s, 40 * s, 216 * s, 80 * s), fill=3)

    return render("icon", (256, 256), [ORANGE, NAVY, SNOW], draw)


def thin_text() -> Sample:
    def draw(d: ImageDraw.ImageDraw, s: int) -> None:
        d.text((12 * s, 14 * s), "Flat colours, crisp", font=_font(40 * s), fill=1)

    return render("thin_text", (400, 72), [BLACK], draw, backdrop=WHITE)


def smiley() -> Sample:
    def draw(d: ImageDraw.ImageDraw, s: int) -> None:
        d.ellipse((24 * s, 24 * s, 360 * s, 360 * s), fill=1)
        d.ellipse((120 * s, 110 * s, 160 * s, 170 * s), fill=2)
        d.ellipse((224 * s, 110 * s, 264 * s, 170 * s), fill=2)
        d.arc((100 * s, 140 * s, 284 * s, 300 * s), start=20, end=160, fill=2, width=18 * s)

    return render("smiley", (384, 384), [YELLOW, BLACK], draw)


def letter_tile() -> Sample:
    def draw(d: ImageDraw.ImageDraw, s: int) -> None:
        d.rounded_rectangle((24 * s, 24 * s, 360 * s, 360 * s), radius=48 * s, fill=1)
        d.text((192 * s, 200 * s), "A", font=_font(260 * s), fill=2, anchor="mm")

    return render("letter_tile", (384, 384), [BLUE, SNOW], draw)


def banner() -> Sample:
    def draw(d: ImageDraw.ImageDraw, s: int) -> None:
        font = _font(340 * s)
        x = 80 * s
        for i, letter in enumerate("ORFEAS PRINTS"):
            d.text((x, 60 * s), letter, font=font, fill=1 + i % 2)
            x += round(d.textlength(letter, font=font))

    return render("banner", (4000, 500), [RED, BLUE], draw, backdrop=WHITE)


def ball() -> Sample:
    """A sphere lit from the upper left on a transparent backdrop: shading, not flat colours."""
    size = 320
    y, x = (np.mgrid[0:size, 0:size] + 0.5) / size * 2 - 1
    r2 = x * x + y * y
    inside = r2 < 0.9**2
    z = np.sqrt(np.clip(0.81 - r2, 0, None)) / 0.9
    light = np.clip(0.15 + 0.85 * (-0.45 * x / 0.9 - 0.45 * y / 0.9 + 0.77 * z), 0, 1)
    rgb = np.stack([40 + 200 * light, 90 + 120 * light, 200 + 40 * light], axis=-1)
    pixels = np.dstack([np.round(rgb), inside * 255]).astype(np.uint8)
    labels = np.where(inside, 0, -1).astype(np.int16)
    return Sample("ball", Image.fromarray(pixels, "RGBA"), np.zeros((0, 3), np.uint8), labels, flat=False)


ALL: dict[str, Callable[[], Sample]] = {
    "logo": logo,
    "logo_on_white": logo_on_white,
    "icon": icon,
    "thin_text": thin_text,
    "smiley": smiley,
    "letter_tile": letter_tile,
    "banner": banner,
    "ball": ball,
}
