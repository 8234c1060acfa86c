"""The one loopback webhook receiver of the tests and benchmarks: a threaded HTTP(S) server that
records every POST and answers with the statuses it is given (then `default_status`)."""

from __future__ import annotations

import http.server
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float


@dataclass
class Receiver:
    """Records every POST; answers with `statuses` in turn (then `default_status`); `gate` holds
    answers while clear."""

    url: str = ""
    port: int = 0
    default_status: int = 200
    statuses: list[int] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Block until `count` requests were answered (or the timeout passes); return them."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.requests) >= count, timeout)
            return list(self.requests)


@contextmanager
def serve_receiver(
    path: str = "/hooks/orfeas", *, default_status: int = 200, tls: ssl.SSLContext | None = None
) -> Iterator[Receiver]:
    """A receiver on a free loopback port (HTTPS with `tls`), stopped however the block ends."""
    receiver = Receiver(default_status=default_status)
    receiver.gate.set()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            receiver.gate.wait(30)
            with receiver.arrived:
                status = receiver.statuses.pop(0) if receiver.statuses else receiver.default_status
                receiver.requests.append(
                    Received(self.path, dict(self.headers), body, status, time.monotonic())
                )
                receiver.arrived.notify_all()
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    receiver.port = server.server_address[1]
    receiver.url = f"{'https' if tls else 'http'}://127.0.0.1:{receiver.port}{path}"
    try:
        yield receiver
    finally:
        receiver.gate.set()
        server.shutdown()
        server.server_close()
        thread.join()
