"""The task id search and the status mapping over many callback shapes; neither ever raises."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callback_server.payload import MAX_PARSE_DEPTH, parse_body
from callback_server.status_map import interpret
from callback_server.task_id import MAX_DEPTH, extract_task_id
from orfeas_contract.status import JobStatus

CASES = [
    # (provider, body, query, headers, expected id)
    ("runpod", {"id": "rp-1", "status": "COMPLETED", "output": {"job_id": "other"}}, "", {}, "rp-1"),
    ("runpod", {"output": {"job_id": "test-9", "files": {}}}, "", {}, "test-9"),
    ("kie", {"code": 200, "data": {"taskId": "k1", "state": "success"}}, "", {}, "k1"),
    ("kie", {"code": 200, "data": {"task_id": "k2"}}, "", {}, "k2"),
    ("kie", {"code": 200, "data": {"recordId": "k3"}}, "", {}, "k3"),
    ("replicate", {"id": "r1", "status": "succeeded", "output": ["x"]}, "", {}, "r1"),
    ("orfeas", {"type": "progress", "job_id": "j1", "status": "IN_PROGRESS"}, "", {}, "j1"),
    ("generic", {"id": 7, "data": {"taskId": "t7"}}, "", {}, "t7"),  # specific key beats generic id
    ("generic", {"result": {"jobId": "deep"}, "taskId": "shallow"}, "", {}, "shallow"),
    ("generic", {"a": {"b": {"c": {"task_id": "deeper"}}}, "x": {"task_id": "deep"}}, "", {}, "deep"),
    ("generic", [{"nothing": 1}, {"Task-ID": "in-array"}], "", {}, "in-array"),
    ("generic", {"payload": json.dumps({"record_id": "in-string"})}, "", {}, "in-string"),
    ("generic", {"id": True, "job": {"id": "nested-generic"}}, "", {}, "nested-generic"),
    ("generic", {"taskId": "has space"}, "taskId=from-query", {}, "from-query"),
    ("generic", None, "token=x&task_id=q2", {}, "q2"),
    ("generic", "just text", "", {"X-Task-Id": "h1"}, "h1"),
    ("generic", b"\x00\xff".decode("latin-1"), "", {"x-job-id": "h2"}, "h2"),
    ("runpod", {"id": ""}, "", {}, None),
    ("generic", {"nothing": [1, 2, {"deeper": None}]}, "", {}, None),
]


@pytest.mark.parametrize(("provider", "body", "query", "headers", "expected"), CASES)
def test_extract_task_id_table(provider, body, query, headers, expected):
    """Each shape yields the documented id, in the documented order of preference."""
    match = extract_task_id(provider, body, query, headers)
    assert (match.task_id if match else None) == expected


def test_search_depth_is_bounded():
    """An id nested deeper than the bound is not found (and the walk ends)."""
    body: dict = {"task_id": "found"}
    for _ in range(MAX_DEPTH + 2):
        body = {"data": body}
    assert extract_task_id("generic", body) is None
    shallow: dict = {"task_id": "found"}
    for _ in range(MAX_DEPTH - 1):
        shallow = {"data": shallow}
    assert extract_task_id("generic", shallow).task_id == "found"


@pytest.mark.parametrize(
    ("provider", "body", "status"),
    [
        ("runpod", {"id": "a", "status": "IN_QUEUE"}, JobStatus.IN_QUEUE),
        ("runpod", {"id": "a", "status": "TIMED_OUT"}, JobStatus.TIMED_OUT),
        ("runpod", {"output": {"job_id": "a"}}, JobStatus.COMPLETED),
        ("runpod", {"error": "boom"}, JobStatus.FAILED),
        ("kie", {"data": {"taskId": "a", "state": "waiting"}}, JobStatus.IN_QUEUE),
        ("kie", {"data": {"taskId": "a", "state": "queuing"}}, JobStatus.IN_QUEUE),
        ("kie", {"data": {"taskId": "a", "state": "generating"}}, JobStatus.IN_PROGRESS),
        ("kie", {"data": {"taskId": "a", "state": "success"}}, JobStatus.COMPLETED),
        ("kie", {"data": {"taskId": "a", "state": "fail", "failMsg": "x"}}, JobStatus.FAILED),
        ("replicate", {"id": "a", "status": "starting"}, JobStatus.IN_QUEUE),
        ("replicate", {"id": "a", "status": "processing"}, JobStatus.IN_PROGRESS),
        ("replicate", {"id": "a", "status": "succeeded"}, JobStatus.COMPLETED),
        ("replicate", {"id": "a", "status": "failed"}, JobStatus.FAILED),
        ("replicate", {"id": "a", "status": "canceled"}, JobStatus.CANCELLED),
        ("orfeas", {"type": "progress", "job_id": "a", "progress": {"fraction": 0.5}}, JobStatus.IN_PROGRESS),
        (
            "orfeas",
            {"type": "completed", "job_id": "a", "status": "COMPLETED", "output": {}},
            JobStatus.COMPLETED,
        ),
        ("orfeas", {"type": "failed", "job_id": "a", "error": {"code": "x"}}, JobStatus.FAILED),
    ],
)
def test_status_mapping(provider, body, status):
    """Every provider's status words map onto the shared enum."""
    match = extract_task_id(provider, body)
    update = interpret(provider, body, match.container if match else None)
    assert update is not None
    assert update.status is status


def test_kie_failure_keeps_its_message_and_worker_progress_is_kept():
    """A KIE failure carries failMsg as the error's message; a worker progress event keeps its progress."""
    body = {"data": {"taskId": "a", "state": "fail", "failMsg": "bad prompt"}}
    assert interpret("kie", body, body["data"]).error == {"code": "provider_error", "message": "bad prompt"}
    event = {"type": "progress", "job_id": "a", "status": "IN_PROGRESS", "progress": {"stage": "shape"}}
    assert interpret("orfeas", event, event).progress == {"stage": "shape"}


def test_parse_body_kinds():
    """JSON, form fields, binary, empty, NaN and absurd nesting all decode without raising."""
    assert parse_body(b'{"a": 1}') == {"a": 1}
    assert parse_body(b"taskId=x&state=success", "application/x-www-form-urlencoded") == {
        "taskId": "x",
        "state": "success",
    }
    assert parse_body(b"\x89PNG\r\n\x1a\n\x00\xff") is None
    assert parse_body(b"") is None
    assert parse_body(b'{"a": NaN}') == {"a": None}
    deep = parse_body(b"[" * 100_000 + b"]" * 100_000)
    depth = 0
    while isinstance(deep, list) and deep:
        deep, depth = deep[0], depth + 1
    assert (deep, depth) == (None, MAX_PARSE_DEPTH)  # the shallow part kept, the rest cut to null


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=40,
)
keys = st.sampled_from(["id", "taskId", "task_id", "job_id", "data", "output", "status", "state", "type"])
shaped = st.recursive(
    st.none() | st.integers() | st.text(max_size=12) | st.sampled_from(["COMPLETED", "success", "progress"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(
    provider=st.sampled_from(["runpod", "kie", "replicate", "orfeas", "generic"]),
    body=json_values | shaped,
    query=st.text(max_size=40),
    header=st.text(max_size=20),
)
def test_never_raises_on_arbitrary_json(provider, body, query, header):
    """The search and the mapping accept any JSON value, query and header without raising."""
    match = extract_task_id(provider, body, query, {"X-Task-Id": header})
    if match is not None:
        assert 1 <= len(match.task_id) <= 128
    interpret(provider, body, match.container if match else None)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200))
def test_parse_and_search_never_raise_on_bytes(raw):
    """Arbitrary bytes decode (or not) and are searched without raising."""
    parsed = parse_body(raw, "application/json")
    extract_task_id("generic", parsed, raw.decode("latin-1"))
