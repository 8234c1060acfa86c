"""Find the task (job) id in a callback of any shape. Never raises.

Order:
1. the provider's documented field (`runpod`/`replicate`: the envelope's `id`; `kie`:
   `data.taskId`/`data.task_id`/`data.recordId`; `orfeas`: the event's `job_id`);
2. a breadth-first walk of the body, shallow before deep, bounded in depth and nodes: first the
   specific keys (taskId, task_id, recordId, record_id, jobId, job_id, in any case or separator),
   then a generic `id`; inside a dict the wrappers `data`, `result`, `output`, `payload` are
   visited before other values; arrays are walked; strings holding JSON are parsed and walked;
3. the query string (`?taskId=`, `?task_id=`, `?job_id=`, `?id=`);
4. the `X-Task-Id` (or `X-Job-Id`) header.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

from callback_server.payload import loads_json

MAX_DEPTH = 8
MAX_NODES = 2000
# A string longer than this is not parsed as embedded JSON (a mesh in base64 is no wrapper).
MAX_EMBEDDED_JSON = 64 * 1024
# Ids are used in URLs (/v1/jobs/{id}) and logs: printable, no separators that need escaping.
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+=@-]{0,127}$")

SPECIFIC_KEYS = frozenset({"taskid", "recordid", "jobid"})
GENERIC_KEYS = frozenset({"id"})
WRAPPERS = ("data", "result", "output", "payload")
TASK_ID_HEADERS = ("X-Task-Id", "X-Job-Id")


class TaskIdMatch(NamedTuple):
    task_id: str
    source: str  # "provider", "body", "query" or "header"
    container: Mapping[str, Any] | None = None  # the dict that held the id, when it came from the body


def normalise_key(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def as_task_id(value: Any) -> str | None:
    """`value` as a task id when it looks like one (a short printable string or an integer)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, str):
        text: str = value.strip()
        if _ID_RE.match(text):
            return text
    return None


def _embedded_json(value: str) -> Any:
    text = value.strip()
    if not text.startswith(("{", "[")) or len(text) > MAX_EMBEDDED_JSON:
        return None
    try:
        return loads_json(text)
    except ValueError:
        return None


def _children(node: Any) -> list[Any]:
    """The values below `node` worth walking, wrappers first."""
    if isinstance(node, Mapping):
        first = [node[k] for k in WRAPPERS if k in node]
        rest = [v for k, v in node.items() if k not in WRAPPERS]
        values = first + rest
    elif isinstance(node, list):
        values = list(node)
    else:
        return []
    out: list[Any] = []
    for value in values:
        if isinstance(value, (Mapping, list)):
            out.append(value)
        elif isinstance(value, str):
            parsed = _embedded_json(value)
            if isinstance(parsed, (Mapping, list)):
                out.append(parsed)
    return out


def _walk(root: Any, wanted: frozenset[str]) -> tuple[str, Mapping[str, Any]] | None:
    """Breadth-first over dicts and lists: the shallowest dict with a key in `wanted`."""
    queue: deque[tuple[Any, int]] = deque([(root, 0)])
    seen = 0
    while queue:
        node, depth = queue.popleft()
        seen += 1
        if seen > MAX_NODES:
            return None
        if isinstance(node, Mapping):
            for key, value in node.items():
                if isinstance(key, str) and normalise_key(key) in wanted:
                    found = as_task_id(value)
                    if found is not None:
                        return found, node
        if depth < MAX_DEPTH:
            queue.extend((child, depth + 1) for child in _children(node))
    return None


def _provider_field(provider: str, body: Any) -> tuple[str, Mapping[str, Any]] | None:
    if not isinstance(body, Mapping):
        return None
    if provider in ("runpod", "replicate"):
        found = as_task_id(body.get("id"))
        return (found, body) if found else None
    if provider == "orfeas":
        found = as_task_id(body.get("job_id"))
        return (found, body) if found else None
    if provider == "kie":
        data = body.get("data")
        if isinstance(data, Mapping):
            for key in ("taskId", "task_id", "recordId"):
                found = as_task_id(data.get(key))
                if found:
                    return found, data
    return None


def extract_task_id(
    provider: str, body: Any, query: str = "", headers: Mapping[str, str] | None = None
) -> TaskIdMatch | None:
    """The task id of a callback, or None when nothing in it names one."""
    try:
        hit = _provider_field(provider, body)
        if hit:
            return TaskIdMatch(hit[0], "provider", hit[1])
        for wanted in (SPECIFIC_KEYS, GENERIC_KEYS):
            hit = _walk(body, wanted)
            if hit:
                return TaskIdMatch(hit[0], "body", hit[1])
        if query:
            params = {normalise_key(k): v for k, v in parse_qsl(query, max_num_fields=100)}
            for key in ("taskid", "jobid", "recordid", "id"):
                found = as_task_id(params.get(key))
                if found:
                    return TaskIdMatch(found, "query")
        if headers:
            lowered = {k.lower(): v for k, v in headers.items()}
            for name in TASK_ID_HEADERS:
                found = as_task_id(lowered.get(name.lower()))
                if found:
                    return TaskIdMatch(found, "header")
    except (ValueError, TypeError, RecursionError):
        # parse_qsl refuses too many fields; a body type outside JSON's (tests feed anything).
        return None
    return None
