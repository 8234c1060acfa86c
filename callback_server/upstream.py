"""The RunPod endpoint client: RunPod's cloud API and its local dev server (`--rp_serve_api`).

Cloud: POST /run, GET /status/{id}, POST /cancel/{id}, POST /retry/{id}.
Local dev server: POST /run only queues the job; POST /status/{id} *runs* it and answers with
the result (a second /status call then answers "Job ID not found"), and there is no cancel. So
in local mode the server calls /status once itself, in the background, right after /run, and
never polls it.

aiohttp and JSON errors are translated here into UpstreamError.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from callback_server.metrics import Metrics
from orfeas_contract.errors import OrfeasError


class UpstreamError(OrfeasError):
    """The RunPod endpoint could not be reached or answered with an error."""

    code = "upstream_error"


class UpstreamUnavailable(UpstreamError):
    """No RunPod endpoint is configured (RUNPOD_ENDPOINT_URL / RUNPOD_ENDPOINT_ID)."""

    code = "upstream_unavailable"


class UpstreamTimeout(UpstreamError, TimeoutError):
    code = "upstream_timeout"


class UpstreamNotFound(UpstreamError):
    """The endpoint does not know the job (RunPod forgets results 30 minutes after the end)."""

    code = "upstream_not_found"


class RunPodClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        api_key: str | None,
        *,
        local: bool,
        timeout_s: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.local = local
        self._timeout_s = timeout_s
        self._metrics = metrics or Metrics()

    async def _call(
        self, op: str, method: str, path: str, body: Any = None, timeout_s: float | None = None
    ) -> dict[str, Any]:
        url = f"{self._base}{path}"
        timeout = aiohttp.ClientTimeout(total=timeout_s or self._timeout_s)
        result = "error"
        try:
            async with self._session.request(
                method, url, json=body, headers=self._headers, timeout=timeout
            ) as resp:
                text = await resp.text()
                if resp.status == 404:
                    result = "not_found"
                    raise UpstreamNotFound(f"{method} {path}: 404", field=op)
                if resp.status >= 400:
                    raise UpstreamError(f"{method} {path}: HTTP {resp.status}: {text[:200]}", field=op)
                try:
                    data = json.loads(text)
                except ValueError:
                    raise UpstreamError(f"{method} {path}: not JSON: {text[:200]!r}", field=op) from None
                if not isinstance(data, dict):
                    raise UpstreamError(f"{method} {path}: expected an object", field=op)
                result = "ok"
                return data
        except TimeoutError:
            result = "timeout"
            raise UpstreamTimeout(f"{method} {path}: no answer in {timeout.total} s", field=op) from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"{method} {path}: {exc}", field=op) from None
        finally:
            self._metrics.inc("orfeas_upstream_calls_total", op=op, result=result)

    async def submit(self, job_input: dict[str, Any], webhook: str | None) -> dict[str, Any]:
        """POST /run; returns RunPod's {"id", "status"}."""
        body: dict[str, Any] = {"input": job_input}
        if webhook:
            body["webhook"] = webhook
        data = await self._call("run", "POST", "/run", body)
        if not isinstance(data.get("id"), str) or not data["id"]:
            raise UpstreamError(f"/run answered without a job id: {str(data)[:200]}", field="run")
        return data

    async def status(self, job_id: str, timeout_s: float | None = None) -> dict[str, Any]:
        """The job's status envelope. Local mode: runs the job (POST) and answers its result."""
        if self.local:
            return await self._call("status", "POST", f"/status/{job_id}", timeout_s=timeout_s)
        return await self._call("status", "GET", f"/status/{job_id}", timeout_s=timeout_s)

    async def cancel(self, job_id: str) -> dict[str, Any] | None:
        """POST /cancel/{id}; None on the local dev server, which cannot cancel."""
        if self.local:
            return None
        return await self._call("cancel", "POST", f"/cancel/{job_id}")

    async def retry(self, job_id: str) -> dict[str, Any]:
        if self.local:
            raise UpstreamUnavailable("the local dev server cannot retry a job", field="retry")
        return await self._call("retry", "POST", f"/retry/{job_id}")
