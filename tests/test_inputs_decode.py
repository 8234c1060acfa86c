"""Headers read before decoding (bombs, truncation, non-pictures) and the decode to upright RGBA."""

from __future__ import annotations

import struct
import subprocess
import sys
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from orfeas.errors import InvalidInput
from orfeas.inputs.decode import decode_image
from orfeas.inputs.headers import check_header, read_header
from tests.inputs_support import EMBLEM, ROOT, bomb_png, encode, gradient_rgb, png_chunk, with_orientation

LIMIT = 40_000_000


def sample_files() -> dict[str, bytes]:
    rgb = gradient_rgb(67, 45)
    rgba = rgb.copy()
    rgba.putalpha(Image.linear_gradient("L").resize(rgb.size))
    return {
        "png": encode(rgb, "PNG"),
        "png-rgba": encode(rgba, "PNG"),
        "jpeg": encode(rgb, "JPEG", quality=90),
        "jpeg-progressive": encode(rgb, "JPEG", quality=90, progressive=True),
        "jpeg-exif": with_orientation(rgb, 1),
        "webp-lossy": encode(rgb, "WEBP", quality=80),
        "webp-lossless": encode(rgb, "WEBP", lossless=True),
        "webp-alpha": encode(rgba, "WEBP", quality=80),  # extended (VP8X) header
    }


SAMPLES = sample_files()


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_header_matches_what_pillow_decodes(name: str) -> None:
    """The size read from the header is the size Pillow decodes, for every PNG, JPEG and WebP flavour."""
    data = SAMPLES[name]
    header = read_header(data)
    image = decode_image(data, max_pixels=LIMIT)
    assert (header.width, header.height) == image.size == (67, 45)
    assert image.mode == "RGBA"


def test_emblem_decodes_with_its_alpha() -> None:
    """The bundled emblem decodes to 256x256 RGBA with its transparent surround kept."""
    image = decode_image(EMBLEM.read_bytes(), max_pixels=LIMIT)
    alpha = np.asarray(image)[..., 3]
    assert image.size == (256, 256)
    assert alpha.min() == 0
    assert alpha.max() == 255


def _jpeg_with_size(width: int, height: int) -> bytes:
    data = bytearray(SAMPLES["jpeg"])
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _webp_vp8x_with_size(width: int, height: int) -> bytes:
    data = bytearray(SAMPLES["webp-alpha"])
    assert data[12:16] == b"VP8X"
    data[24:27] = (width - 1).to_bytes(3, "little")
    data[27:30] = (height - 1).to_bytes(3, "little")
    return bytes(data)


BOMBS = {
    "png": bomb_png(20000, 20000),
    "jpeg": _jpeg_with_size(30000, 30000),
    "webp": _webp_vp8x_with_size(20000, 20000),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_bomb_is_refused_from_the_header(name: str) -> None:
    """A 20000x20000 (or larger) header is refused without allocating its pixels.

    tracemalloc sees Python's and numpy's allocations; Pillow's pixel buffers come from C
    malloc, so the next test measures those through a child process's peak memory.
    """
    data = BOMBS[name]
    assert len(data) < 64 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput, match="pixels, over the limit of 40000000") as caught:
            decode_image(data, max_pixels=LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.field == "image"
    assert peak < 256 * 1024  # bytes; the RGBA frame would be 1.6e9


def test_bomb_does_not_grow_the_process() -> None:
    """Refusing the bomb leaves the process's peak memory where it was (no 1.6 GB frame, not even 50 MB)."""
    script = """
import resource, sys
from orfeas.inputs.decode import decode_image
from orfeas.errors import InvalidInput
from tests.inputs_support import bomb_png
data = bomb_png(20000, 20000)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    decode_image(data, max_pixels=40_000_000)
except InvalidInput:
    pass
else:
    sys.exit("not refused")
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(after - before)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    growth_kib = int(done.stdout.strip())
    assert growth_kib < 16 * 1024


def test_pixel_cap_boundary() -> None:
    """A frame of exactly max_pixels decodes; one pixel fewer allowed and it is refused."""
    data = SAMPLES["png"]
    assert decode_image(data, max_pixels=67 * 45).size == (67, 45)
    with pytest.raises(InvalidInput, match="67x45 = 3015 pixels, over the limit of 3014"):
        decode_image(data, max_pixels=67 * 45 - 1)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<!doctype html><title>x</title>", "not a PNG, JPEG or WebP (31 bytes)"),
        (b"", "not a PNG, JPEG or WebP (0 bytes)"),
        (b"GIF89a" + b"\x00" * 20, "not a PNG, JPEG or WebP (26 bytes)"),
        (b"\x89PNG\r\n\x1a\n", "PNG header is truncated (8 bytes)"),
        (b"\xff\xd8\xff", "JPEG header is truncated (3 bytes)"),
        (b"RIFF\x00\x00\x00\x00WEBP", "WebP header is truncated (12 bytes)"),
    ],
)
def test_non_pictures_and_stubs_are_refused(data: bytes, message: str) -> None:
    """HTML, empty files, GIFs and bare signatures are refused with a message naming what is wrong."""
    with pytest.raises(InvalidInput) as caught:
        decode_image(data, max_pixels=LIMIT)
    assert str(caught.value) == f"invalid_input: image: {message}"


def test_other_formats_pillow_knows_are_refused() -> None:
    """GIF, BMP and TIFF are not accepted even though Pillow could decode them."""
    for fmt in ("GIF", "BMP", "TIFF"):
        with pytest.raises(InvalidInput, match="not a PNG, JPEG or WebP"):
            decode_image(encode(gradient_rgb(), fmt), max_pixels=LIMIT)


@pytest.mark.parametrize("name", ["png", "jpeg", "webp-lossy", "webp-lossless"])
def test_truncated_files_are_refused(name: str) -> None:
    """Cut at any point before its image data ends, a file is refused, never half-decoded."""
    data = SAMPLES[name]
    for cut in sorted({1, 8, 20, 40, len(data) // 4, len(data) // 2, len(data) - 40}):
        with pytest.raises(InvalidInput) as caught:
            decode_image(data[:cut], max_pixels=LIMIT)
        assert caught.value.field == "image"


def test_png_without_ihdr_and_jpeg_without_frame() -> None:
    """Structurally wrong headers are refused by the header reader."""
    no_ihdr = b"\x89PNG\r\n\x1a\n" + png_chunk(b"tEXt", b"a\x00b" * 10)
    with pytest.raises(InvalidInput, match="IHDR"):
        read_header(no_ihdr)
    scan_first = b"\xff\xd8\xff\xda\x00\x08" + b"\x00" * 40
    with pytest.raises(InvalidInput, match="scan starts before"):
        read_header(scan_first)
    zero_height = _jpeg_with_size(100, 0)
    with pytest.raises(InvalidInput, match="empty frame"):
        check_header(zero_height, max_pixels=LIMIT)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(SAMPLES)),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_corrupt_files_never_escape_as_other_errors(
    name: str, edits: list[tuple[int, int]], cut: int | None
) -> None:
    """Random byte edits and cuts end in an RGBA picture or InvalidInput, nothing else."""
    data = bytearray(SAMPLES[name])
    for position, value in edits:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    try:
        image = decode_image(bytes(data), max_pixels=LIMIT)
    except InvalidInput as exc:
        field = exc.field
    else:
        field = "image"
        assert image.mode == "RGBA"
        assert image.width * image.height <= LIMIT
    assert field == "image"


def _marked(width: int = 60, height: int = 40) -> Image.Image:
    """A grey picture with a red block in its top-left corner."""
    array = np.full((height, width, 3), 128, np.uint8)
    array[:10, :10] = (255, 0, 0)
    return Image.fromarray(array, "RGB")


def _red_corner(image: Image.Image) -> str:
    rgb = np.asarray(image)[..., :3].astype(int)
    h, w = rgb.shape[:2]
    corners = {
        "top-left": rgb[2, 2],
        "top-right": rgb[2, w - 3],
        "bottom-left": rgb[h - 3, 2],
        "bottom-right": rgb[h - 3, w - 3],
    }
    return next(name for name, px in corners.items() if px[0] > 200 and px[1] < 60)


@pytest.mark.parametrize(
    ("orientation", "size", "corner"),
    [
        (1, (60, 40), "top-left"),
        (3, (60, 40), "bottom-right"),  # stored upside down
        (6, (40, 60), "top-right"),  # stored lying: turn 90 degrees clockwise
        (8, (40, 60), "bottom-left"),  # turn 90 degrees counter-clockwise
        (2, (60, 40), "top-right"),  # mirrored
    ],
)
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_is_applied(orientation: int, size: tuple[int, int], corner: str, fmt: str) -> None:
    """A phone photo's EXIF orientation is applied, so the picture stands as it was seen."""
    image = decode_image(with_orientation(_marked(), orientation, fmt), max_pixels=LIMIT)
    assert image.size == size
    assert _red_corner(image) == corner


def test_palette_transparency_is_kept() -> None:
    """A palette PNG with a transparent index decodes to alpha 0 there, 255 elsewhere."""
    array = np.zeros((20, 30), np.uint8)
    array[5:15, 10:20] = 1
    image = Image.fromarray(array, "P")
    image.putpalette([0, 0, 0, 200, 50, 50] + [0] * 762)
    decoded = decode_image(encode(image, "PNG", transparency=0), max_pixels=LIMIT)
    rgba = np.asarray(decoded)
    assert (rgba[..., 3] == np.where(array == 1, 255, 0)).all()
    assert tuple(rgba[10, 15]) == (200, 50, 50, 255)


def test_grey_modes() -> None:
    """Grey with alpha keeps its alpha; 1-bit and grey are opaque; 16-bit grey is scaled, not clipped."""
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))
    la = Image.merge("LA", [Image.fromarray(grey), Image.fromarray(255 - grey)])
    rgba = np.asarray(decode_image(encode(la, "PNG"), max_pixels=LIMIT))
    assert (rgba[..., 0] == grey).all()
    assert (rgba[..., 3] == 255 - grey).all()

    bits = Image.fromarray(grey > 127).convert("1")
    rgba = np.asarray(decode_image(encode(bits, "PNG"), max_pixels=LIMIT))
    assert set(np.unique(rgba[..., 0])) == {0, 255}
    assert (rgba[..., 3] == 255).all()

    deep = Image.fromarray(grey.astype(np.uint16) * 257)  # full 16-bit range
    assert deep.mode.startswith("I")
    rgba = np.asarray(decode_image(encode(deep, "PNG"), max_pixels=LIMIT))
    assert np.abs(rgba[..., 0].astype(int) - grey).max() <= 1
    assert (rgba[..., 3] == 255).all()


def test_cmyk_jpeg_becomes_rgb() -> None:
    """A CMYK JPEG decodes to the RGB colours it prints as."""
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # full magenta and yellow: red
    rgba = np.asarray(decode_image(encode(cmyk, "JPEG", quality=95), max_pixels=LIMIT)).astype(int)
    r, g, b, a = rgba[16, 16]
    assert r > 230
    assert g < 30
    assert b < 30
    assert a == 255


def test_pillow_bomb_warning_never_leaks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above Pillow's own bomb threshold but within our cap: no DecompressionBombWarning escapes;
    beyond twice its threshold Pillow's error becomes InvalidInput."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = decode_image(encode(gradient_rgb(50, 30)), max_pixels=LIMIT)  # 1500 px: below
        assert image.size == (50, 30)
        image = decode_image(encode(gradient_rgb(60, 50)), max_pixels=LIMIT)  # 3000 px: warns
        assert image.size == (60, 50)
    with pytest.raises(InvalidInput, match="too large to decode"):
        decode_image(encode(gradient_rgb(80, 60)), max_pixels=LIMIT)  # 4800 px: Pillow's error
