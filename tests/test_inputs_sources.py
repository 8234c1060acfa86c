"""The request's `image` string → bytes: base64, data URIs, s3:// through a reader, schemes refused."""

from __future__ import annotations

import base64
import re

import pytest

from orfeas.errors import InvalidInput, StorageError
from orfeas.inputs.sources import read_image_source
from orfeas.settings import Settings
from tests.inputs_support import EMBLEM

PICTURE = EMBLEM.read_bytes()
SETTINGS = Settings(input_buckets=("my-bucket/inputs", "bucket"))


def read(source: str, settings: Settings = SETTINGS, **kwargs: object) -> bytes:
    kwargs.setdefault("object_reader", None)
    return read_image_source(source, settings=settings, **kwargs)  # type: ignore[arg-type]


def refused(source: str, pattern: str, settings: Settings = SETTINGS, **kwargs: object) -> InvalidInput:
    with pytest.raises(InvalidInput, match=pattern) as caught:
        read(source, settings, **kwargs)
    assert caught.value.field == "image"
    return caught.value


def test_raw_base64_variants() -> None:
    """Standard, URL-safe, unpadded and MIME-wrapped base64 all give the same bytes."""
    standard = base64.b64encode(PICTURE).decode()
    urlsafe = base64.urlsafe_b64encode(PICTURE).decode().rstrip("=")
    wrapped = "\n".join(standard[i : i + 76] for i in range(0, len(standard), 76))
    for text in (standard, urlsafe, wrapped, f"  {standard}\n"):
        assert read(text) == PICTURE


def test_data_uri_variants() -> None:
    """Data URIs with and without a media type or parameters; the media type is not trusted."""
    payload = base64.b64encode(PICTURE).decode()
    for prefix in ("data:image/png;base64,", "data:;base64,", "DATA:image/jpeg;name=x.png;base64,"):
        assert read(prefix + payload) == PICTURE


@pytest.mark.parametrize(
    ("source", "pattern"),
    [
        ("data:image/png,%89PNG", "only base64 data URIs"),
        ("data:image/png;base64", "no ','"),
        ("data:image/png;base64,", "empty"),
        ("not base64 at all!", "not valid base64"),
        ("iVBORw0KGgo=AAAA", "not valid base64"),
        ("A", "not valid base64"),
        ("   ", "empty"),
        ("é" * 10, "not valid base64"),
    ],
)
def test_malformed_inline_pictures(source: str, pattern: str) -> None:
    """Broken data URIs and base64 are refused with the field named."""
    refused(source, pattern)


@pytest.mark.parametrize(
    "source",
    [
        "http://example.com/a.png",
        "ftp://example.com/a.png",
        "file:///etc/passwd",
        "gs://bucket/a.png",
        "C:/a.png",
    ],
)
def test_unknown_schemes_are_refused(source: str) -> None:
    """Only base64, data URIs, https and s3 are sources; http, ftp, file and others are not."""
    error = refused(source, "is not accepted")
    assert str(error).startswith("invalid_input: image: ")


def test_plain_http_says_use_https() -> None:
    """The refusal of http:// names the fix."""
    refused("http://example.com/a.png", re.escape("plain http is not accepted (use https)"))


def test_size_cap_is_checked_before_decoding() -> None:
    """Base64 over the cap is refused from its length; just under the cap passes."""
    settings = Settings(max_image_bytes=len(PICTURE))
    assert read(base64.b64encode(PICTURE).decode(), settings) == PICTURE
    small = Settings(max_image_bytes=len(PICTURE) - 1)
    refused(base64.b64encode(PICTURE).decode(), f"over the {len(PICTURE) - 1}-byte limit", small)
    # Far over the cap: refused from the string's length, before any decoding.
    huge = "A" * (10 * 1024 * 1024)
    refused(huge, "over the 1024-byte limit", Settings(max_image_bytes=1024))
    refused("data:image/png;base64," + huge, "over the 1024-byte limit", Settings(max_image_bytes=1024))


def test_s3_goes_through_the_object_reader() -> None:
    """s3://bucket/key is read by the reader it is given, with the key's slashes kept."""
    calls: list[tuple[str, str]] = []

    def reader(bucket: str, key: str) -> bytes:
        calls.append((bucket, key))
        return PICTURE

    assert read("s3://my-bucket/inputs/2026/emblem.png", object_reader=reader) == PICTURE
    assert calls == [("my-bucket", "inputs/2026/emblem.png")]


def test_s3_without_a_store_is_refused() -> None:
    """Without an object reader, s3:// sources say a store must be configured."""
    refused("s3://bucket/emblem.png", "need a configured object store")


@pytest.mark.parametrize(
    "source",
    [
        "s3://other-bucket/inputs/emblem.png",  # not listed
        "s3://my-bucket/emblem.png",  # listed with a prefix it is outside of
        "s3://my-bucket/inputs-old/emblem.png",  # a prefix is a folder, not a string start
        "s3://my-bucket/inputs/../secrets/key.png",
        "s3://my-bucket/inputs",
    ],
)
def test_s3_outside_the_allowed_buckets_is_refused_without_reading(source: str) -> None:
    """Only ORFEAS_INPUT_BUCKETS entries are read; anything else is refused before the reader is
    called, with one message whatever the object (the bucket named, nothing about the key)."""
    calls: list[tuple[str, str]] = []

    def reader(bucket: str, key: str) -> bytes:
        calls.append((bucket, key))
        return PICTURE

    error = refused(source, "only from the buckets in ORFEAS_INPUT_BUCKETS", object_reader=reader)
    assert calls == []
    bucket = source[5:].split("/", 1)[0]
    assert (
        error.message == f"s3://{bucket}/...: pictures are read only from the buckets in ORFEAS_INPUT_BUCKETS"
    )


def test_no_bucket_is_open_by_default() -> None:
    """Without ORFEAS_INPUT_BUCKETS no s3:// picture is read."""
    refused("s3://bucket/a.png", "ORFEAS_INPUT_BUCKETS", Settings(), object_reader=lambda b, k: PICTURE)


@pytest.mark.parametrize(
    "source", ["s3://", "s3://bucket", "s3://bucket/", "s3://B_ad/key", "s3:/bucket/key"]
)
def test_malformed_s3_sources(source: str) -> None:
    """An s3 source without a valid bucket and key is refused."""
    refused(source, re.escape("s3://bucket/key"), object_reader=lambda b, k: PICTURE)


def test_s3_reader_errors() -> None:
    """The reader's own errors pass through; foreign ones become storage_error; the cap applies."""

    def missing(bucket: str, key: str) -> bytes:
        raise InvalidInput(f"s3://{bucket}/{key} cannot be read (NoSuchKey)", field="image")

    refused("s3://bucket/none.png", "NoSuchKey", object_reader=missing)

    def broken(bucket: str, key: str) -> bytes:
        raise ConnectionResetError("peer reset")

    with pytest.raises(StorageError, match="peer reset") as caught:
        read("s3://bucket/a.png", object_reader=broken)
    assert caught.value.field == "image"
    refused(
        "s3://bucket/a.png",
        "over the 1024-byte limit",
        Settings(max_image_bytes=1024, input_buckets=("bucket",)),
        object_reader=lambda b, k: PICTURE,
    )
    refused("s3://bucket/a.png", "is empty", object_reader=lambda b, k: b"")
