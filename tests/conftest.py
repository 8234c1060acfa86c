"""Fixtures shared by several test modules: a local S3 server over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.moto_server import moto_s3


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port for the whole test session, stopped at its end."""
    with moto_s3() as endpoint:
        yield endpoint
