"""Bytes → an RGBA picture, with the frame size checked before any pixel is decoded.

Decoding is limited to PNG, JPEG and WebP (the formats `headers` understands), the pixel count
is capped from the header (a bomb never allocates), EXIF orientation is applied so a phone photo
stands the right way up, and alpha is kept. Pillow's own errors become InvalidInput(field="image").
"""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from orfeas.errors import InvalidInput
from orfeas.inputs.headers import check_header

# Modes Pillow converts to RGBA correctly on its own (palette transparency included).
_DIRECT_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"})


def decode_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Decode a PNG, JPEG or WebP into an upright RGBA picture of at most `max_pixels` pixels."""
    header = check_header(data, max_pixels=max_pixels)
    try:
        with warnings.catch_warnings():
            # The pixel count was checked against our own cap above; Pillow's global bomb check
            # (89 MP by default) would only warn about sizes the setting allows on purpose.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # Corrupt metadata ("Corrupt EXIF data", odd chunks) is warned about and skipped by
            # Pillow: the picture is still good, and the request has nobody to read a warning.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
            opened = Image.open(io.BytesIO(data), formats=[header.format])
            if opened.width * opened.height > max_pixels:
                raise InvalidInput(
                    f"picture is {opened.width}x{opened.height} pixels, over the limit of {max_pixels}",
                    field="image",
                )
            opened.load()
            image = _upright(opened)
    except InvalidInput:
        raise
    except UnidentifiedImageError:
        raise InvalidInput(
            f"cannot decode {header.format}: its header is valid but Pillow cannot read the file",
            field="image",
        ) from None
    except Image.DecompressionBombError as exc:
        raise InvalidInput(f"picture is too large to decode: {exc}", field="image") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        # OSError: truncated or corrupt data ("image file is truncated", "broken data stream");
        # ValueError: oversized text chunks; SyntaxError: Pillow's "not a PNG file" and kin.
        raise InvalidInput(f"cannot decode {header.format}: {exc}", field="image") from None
    return to_rgba(image)


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a malformed EXIF block leaves the picture as stored."""
    try:
        upright = ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError, KeyError, TypeError):
        return image
    return upright if upright is not None else image


def to_rgba(image: Image.Image) -> Image.Image:
    """Any decoded mode as 8-bit RGBA: 16-bit and 32-bit grey are scaled, not clipped."""
    mode = image.mode
    if mode == "RGBA":
        return image
    if mode in _DIRECT_MODES:
        return image.convert("RGBA")
    if mode.startswith("I"):
        # 16-bit PNG grey arrives as I;16 (or I): Pillow's convert would clip at 255 and turn
        # most of the picture white, so scale 0..65535 down to 0..255 instead.
        values = np.asarray(image).astype(np.float64)
        grey = np.clip(np.rint(values * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGBA")
    try:
        return image.convert("RGB").convert("RGBA")
    except ValueError as exc:
        raise InvalidInput(f"unsupported colour mode {mode}: {exc}", field="image") from None
