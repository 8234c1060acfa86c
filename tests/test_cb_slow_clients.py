"""Slow clients hold nobody: the server, run as a process under a 256-descriptor limit, still
answers /healthz and a callback while 300+ half-sent requests are open, closes heads that never
finish, and keeps its log small."""

from __future__ import annotations

import os
import resource
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from callback_server.connections import RESERVED_FDS, RateLimitedErrors, connection_cap
from stack.processes import free_port
from tests.stack_support import stop

ROOT = Path(__file__).resolve().parent.parent
FD_LIMIT = 256
HALF_SENT = b"POST /callbacks/runpod HTTP/1.1\r\nHost: attacker\r\nContent-Length: 10"  # no end


def _low_descriptor_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, min(hard, FD_LIMIT) if hard > 0 else FD_LIMIT))


@contextmanager
def limited_server(tmp_path: Path, **env: str) -> Iterator[tuple[int, Path, Path]]:
    """`python -m callback_server` under a 256-descriptor limit; yields (port, db, log file)."""
    port = free_port()
    db = tmp_path / "cb.db"
    log = tmp_path / "server.log"
    full_env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{db}",
        "PORT": str(port),
        "HOST": "127.0.0.1",
        **env,
    }
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "callback_server"],
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            preexec_fn=_low_descriptor_limit,
        )
        try:
            _wait_until_up(port)
            yield port, db, log
        finally:
            stop(proc)


def _request(port: int, raw: bytes, timeout: float = 5.0) -> bytes:
    """One request on its own connection; the answer's first line (b"" when none came)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        data = b""
        deadline = time.monotonic() + timeout
        while b"\r\n" not in data and time.monotonic() < deadline:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.split(b"\r\n", 1)[0]


def _healthz(port: int, timeout: float = 5.0) -> bytes:
    return _request(port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", timeout)


def _wait_until_up(port: int, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if _healthz(port, 1.0).startswith(b"HTTP/1.1 200"):
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("the server never answered /healthz")


def _half_sent(port: int, count: int) -> list[socket.socket]:
    """`count` connections that each send part of a request head and then nothing."""
    opened = []
    for _ in range(count):
        sock = socket.socket()
        sock.settimeout(2.0)
        try:
            sock.connect(("127.0.0.1", port))
            sock.sendall(HALF_SENT)
        except OSError:
            sock.close()
            continue
        opened.append(sock)
    return opened


def _callback(port: int, job_id: str) -> bytes:
    body = f'{{"id": "{job_id}", "status": "IN_PROGRESS"}}'.encode()
    head = (
        "POST /callbacks/runpod HTTP/1.1\r\nHost: t\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return _request(port, head.encode() + body)


def test_the_server_stays_answerable_under_300_half_sent_requests(tmp_path: Path):
    """With 300 half-sent requests open and 100 more arriving, /healthz and a callback are answered
    (idle connections are closed to make room under the cap) and the log stays small."""
    attackers: list[socket.socket] = []
    with limited_server(tmp_path, CALLBACK_HEAD_TIMEOUT_S="60") as (port, db, log):
        try:
            attackers += _half_sent(port, 300)
            assert len(attackers) >= 250  # the attack really is on
            assert _healthz(port).startswith(b"HTTP/1.1 200")
            assert _callback(port, "during-attack").startswith(b"HTTP/1.1 200")
            for round_ in range(5):
                attackers += _half_sent(port, 20)
                assert _healthz(port).startswith(b"HTTP/1.1 200"), round_
        finally:
            for sock in attackers:
                sock.close()
        conn = sqlite3.connect(db)
        try:
            rows = conn.execute("SELECT job_id, outcome FROM callbacks").fetchall()
        finally:
            conn.close()
    assert rows == [("during-attack", "created")]
    assert log.stat().st_size < 64 * 1024, log.read_text()[-2000:]


def test_a_request_head_that_never_ends_is_closed_at_the_head_timeout(tmp_path: Path):
    """A connection that sends part of a head and stops is closed by the server after the head
    timeout, not kept for ever."""
    with limited_server(tmp_path, CALLBACK_HEAD_TIMEOUT_S="0.5") as (port, _db, _log):
        [sock] = _half_sent(port, 1)
        with sock:
            sock.settimeout(5.0)
            started = time.monotonic()
            assert sock.recv(4096) == b""  # closed by the server
            assert time.monotonic() - started < 3.0


def test_a_body_that_never_ends_is_cut_at_the_body_timeout_and_stored(tmp_path: Path):
    """A callback whose body stops halfway is answered 200 after the body timeout, its part stored."""
    with limited_server(tmp_path, CALLBACK_BODY_TIMEOUT_S="0.5") as (port, db, _log):
        with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
            sock.sendall(b'POST /callbacks/runpod HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{"id": ')
            started = time.monotonic()
            answer = sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 200")
            assert time.monotonic() - started < 3.0
        conn = sqlite3.connect(db)
        try:
            rows = conn.execute("SELECT body, outcome FROM callbacks").fetchall()
        finally:
            conn.close()
    assert rows == [(b'{"id": ', "oversize")]


def test_the_connection_cap_stays_below_the_descriptor_limit():
    """The cap is the configured one, or RESERVED below the descriptor limit when that is lower."""
    assert connection_cap(4096, limit=256) == 256 - RESERVED_FDS
    assert connection_cap(100, limit=100_000) == 100


def test_loop_errors_are_logged_at_most_once_a_second(caplog: pytest.LogCaptureFixture):
    """A thousand identical loop errors in one second make one log line, and the next says how many
    were left out."""
    now = [0.0]
    handler = RateLimitedErrors(clock=lambda: now[0])
    context = {
        "message": "socket.accept() out of system resource",
        "exception": OSError(24, "Too many open files"),
    }
    with caplog.at_level("ERROR", logger="callback_server.connections"):
        for _ in range(1000):
            handler(None, context)  # type: ignore[arg-type]
        now[0] = 1.5
        handler(None, context)  # type: ignore[arg-type]
    assert len(caplog.records) == 2
    assert "999 more like it" in caplog.records[1].getMessage()


def test_a_flood_of_malformed_requests_leaves_a_small_log(tmp_path: Path):
    """Two hundred requests with a raw NUL in the query are each answered 400 by the parser, and
    the server logs their traceback at most once a second, not two hundred times."""
    with limited_server(tmp_path) as (port, _db, log):
        size_before = log.stat().st_size
        for _ in range(200):
            answer = _request(
                port, b"POST /callbacks/x?a=\x00 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
            )
            assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400")
        assert _healthz(port).startswith(b"HTTP/1.1 200")
        grown = log.stat().st_size - size_before
    assert grown < 20 * 1024, grown
