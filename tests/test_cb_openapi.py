"""/openapi.json is valid OpenAPI 3.1, names every route, and the running app keeps to it
(schemathesis over a bounded number of examples, against the app and a fake RunPod on loopback)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from callback_server.app import create_app
from callback_server.openapi import openapi_document
from callback_server.store import open_store
from tests.cb_fakes import AUTH, ServedApp, base_settings

EXAMPLES = 25


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    with ServedApp(tmp_path_factory.mktemp("openapi") / "cb.db") as app:
        yield app


def test_document_names_every_route():
    """Every route the app serves is in the document, and nothing else is."""
    app = create_app(base_settings(), open_store("sqlite:///unused.db"))
    served_routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    documented = {
        (method.upper(), path) for path, ops in openapi_document()["paths"].items() for method in ops
    }
    assert served_routes == documented
    assert openapi_document()["openapi"] == "3.1.0"


def test_served_document_is_the_same(served: ServedApp):
    """GET /openapi.json serves the document."""
    import json
    import urllib.request

    with urllib.request.urlopen(f"{served.base_url}/openapi.json", timeout=5) as resp:
        assert json.load(resp) == openapi_document()


def test_api_keeps_to_its_schema(served: ServedApp):
    """Generated requests to every operation get documented answers and bodies, never a 5xx."""
    api = schemathesis.openapi.from_dict(openapi_document())
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) == 14

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def check(case) -> None:
            case.call_and_validate(base_url=served.base_url, timeout=10, headers=AUTH)

        check()


def test_the_job_api_declares_its_bearer_scheme():
    """Every /v1/* operation requires the bearer API key and documents 401 (and 415 for a POST);
    callbacks and the operations routes require nothing."""
    document = openapi_document()
    assert document["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "One of the server's API_KEYS, as 'Authorization: Bearer <key>'",
    }
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            if path.startswith("/v1/"):
                assert op["security"] == [{"apiKey": []}], (method, path)
                assert "401" in op["responses"], (method, path)
                assert ("415" in op["responses"]) == (method == "post"), (method, path)
            else:
                assert "security" not in op, (method, path)
