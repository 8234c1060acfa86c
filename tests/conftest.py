"""Fixtures shared by several test modules: a local S3 server, a webhook receiver (both on
loopback) and the store maker (`maker`: every store backend, instances closed after the test)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.moto_server import moto_s3
from tests.receivers import Receiver, serve_receiver
from tests.store_support import BACKENDS, StoreMaker


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port for the whole test session, stopped at its end."""
    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture
def webhook_receiver() -> Iterator[Receiver]:
    """An HTTP server on a free loopback port that records webhooks; stopped after the test."""
    with serve_receiver() as receiver:
        yield receiver


@pytest_asyncio.fixture(params=BACKENDS)
async def maker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreMaker]:
    """Store instances on one database per backend (SQLite; PostgreSQL when configured), all closed
    at the end of the test."""
    stores = StoreMaker(request.param, tmp_path)
    await stores.prepare()
    try:
        yield stores
    finally:
        await stores.close_all()
