"""Hypothesis-generated junk over HTTP: every callback is answered 200 and recorded, whatever it is."""

from __future__ import annotations

import json
import sqlite3
import urllib.request
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cb_fakes import ServedApp


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    with ServedApp(tmp_path_factory.mktemp("junk") / "cb.db") as app:
        yield app


def post(url: str, body: bytes, content_type: str) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return resp.status


json_text = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=30,
).map(lambda v: json.dumps(v).encode())


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    provider=st.sampled_from(["runpod", "kie", "replicate", "orfeas", "x-y_z", "UPPER"]),
    body=st.binary(max_size=300) | json_text,
    content_type=st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain", ""]),
    query=st.text(max_size=20),
)
def test_junk_is_answered_200_and_recorded(served: ServedApp, provider, body, content_type, query):
    """Any provider name, body, content type and query string gets 200, and its bytes are stored."""
    url = f"{served.base_url}/callbacks/{provider}?{quote(query, safe='=&')}"
    assert post(url, body, content_type) == 200
    conn = sqlite3.connect(served.db)
    try:
        (last,) = conn.execute("SELECT body FROM callbacks ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        conn.close()
    assert bytes(last) == body
