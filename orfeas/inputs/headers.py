"""Read a picture's format and dimensions from its first bytes, before any pixel is decoded.

A decompression bomb (a 20000 x 20000 PNG is a few kilobytes on disk and 1.6 GB as RGBA) is
refused from its header alone, and a file that is not a PNG, JPEG or WebP is refused without
handing it to a decoder. Every parser here is bounded by the data's length, so a truncated file
fails at once instead of waiting for bytes that never come.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from orfeas.errors import InvalidInput

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
# SOF0..SOF15 carry the frame size; C4 (DHT), C8 (JPG extension) and CC (DAC) share the range.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0..RST7, SOI.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})


@dataclass(frozen=True)
class ImageHeader:
    """What the header says: Pillow's format name and the frame size in pixels."""

    format: str  # "PNG", "JPEG" or "WEBP"
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def sniff_format(data: bytes) -> str | None:
    """The format the magic bytes announce, or None (needs only the first 12 bytes)."""
    if data.startswith(PNG_SIGNATURE):
        return "PNG"
    if data.startswith(JPEG_SIGNATURE):
        return "JPEG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def read_header(data: bytes) -> ImageHeader:
    """Parse the format and size; InvalidInput(field="image") if the bytes are not a usable picture."""
    fmt = sniff_format(data)
    if fmt is None:
        raise InvalidInput(f"not a PNG, JPEG or WebP ({len(data)} bytes)", field="image")
    if fmt == "PNG":
        width, height = _png_size(data)
    elif fmt == "JPEG":
        width, height = _jpeg_size(data)
    else:
        width, height = _webp_size(data)
    if width <= 0 or height <= 0:
        raise InvalidInput(f"{fmt} header gives an empty frame ({width}x{height})", field="image")
    return ImageHeader(fmt, width, height)


def check_header(data: bytes, *, max_pixels: int) -> ImageHeader:
    """read_header, then refuse a frame over `max_pixels` (a decompression bomb) or of degenerate
    proportions (orfeas.sizes: a 40,000,000 x 1 strip is under the pixel cap) before decoding."""
    from orfeas.sizes import check_frame

    header = read_header(data)
    if header.pixels > max_pixels:
        raise InvalidInput(
            f"picture is {header.width}x{header.height} = {header.pixels} pixels, "
            f"over the limit of {max_pixels}",
            field="image",
        )
    check_frame(header.width, header.height)
    return header


def _truncated(fmt: str, data: bytes) -> InvalidInput:
    return InvalidInput(f"{fmt} header is truncated ({len(data)} bytes)", field="image")


def _png_size(data: bytes) -> tuple[int, int]:
    # The signature, then the IHDR chunk first: length 13, type, width, height (big-endian).
    if len(data) < 33:  # signature 8 + length 4 + type 4 + IHDR data 13 + CRC 4
        raise _truncated("PNG", data)
    length, kind = struct.unpack(">I4s", data[8:16])
    if kind != b"IHDR" or length != 13:
        raise InvalidInput("PNG does not start with an IHDR chunk", field="image")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def _jpeg_size(data: bytes) -> tuple[int, int]:
    # Walk the marker segments up to the first start-of-frame; each step moves forward, so the
    # loop ends within len(data) steps whatever the bytes are.
    i = 2
    n = len(data)
    while i < n:
        if data[i] != 0xFF:
            raise InvalidInput(f"JPEG marker expected at byte {i}", field="image")
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            break
        marker = data[i]
        i += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker == 0xD9:
            raise InvalidInput("JPEG ends before its frame header", field="image")
        if marker == 0xDA:
            raise InvalidInput("JPEG scan starts before its frame header", field="image")
        if i + 2 > n:
            break
        (length,) = struct.unpack(">H", data[i : i + 2])
        if length < 2:
            raise InvalidInput(f"JPEG segment length {length} at byte {i}", field="image")
        if marker in _JPEG_SOF:
            if i + 7 > n:
                break
            height, width = struct.unpack(">HH", data[i + 3 : i + 7])
            return int(width), int(height)
        i += length
    raise _truncated("JPEG", data)


def _webp_size(data: bytes) -> tuple[int, int]:
    if len(data) < 30:
        raise _truncated("WebP", data)
    chunk = data[12:16]
    if chunk == b"VP8 ":
        # Lossy: 3-byte frame tag, start code 9d 01 2a, then 14-bit width and height.
        if data[23:26] != b"\x9d\x01\x2a":
            raise InvalidInput("WebP VP8 frame has no start code", field="image")
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        # Lossless: signature 0x2f, then width-1 and height-1 in 14 bits each.
        if data[20] != 0x2F:
            raise InvalidInput("WebP VP8L frame has no signature", field="image")
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        # Extended: flags, 3 reserved bytes, then canvas width-1 and height-1 in 24 bits each.
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    raise InvalidInput(f"WebP with an unknown first chunk {chunk!r}", field="image")
