"""Pictures made on the spot, and a loopback https server with a self-signed certificate."""

from __future__ import annotations

import datetime
import http.server
import io
import ssl
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from PIL import Image

from orfeas_contract.netguard import Resolver, is_public_address

ROOT = Path(__file__).resolve().parents[1]
EMBLEM = ROOT / "orfeas" / "samples" / "emblem.png"


# -- pictures ---------------------------------------------------------------------------------
def encode(image: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def gradient_rgb(width: int = 64, height: int = 48) -> Image.Image:
    """An RGB picture whose every pixel differs (red follows x, green follows y)."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // (width - 1), y * 255 // (height - 1), np.full_like(x, 90)], axis=2)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 20000, height: int = 20000, rows: int = 64) -> bytes:
    """A valid-looking 1-bit grey PNG of width x height whose IDAT holds only the first rows.

    A few kilobytes on disk; decoded as RGBA it would take width * height * 4 bytes (1.6 GB).
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    idat = zlib.compress(row * rows, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def with_orientation(image: Image.Image, orientation: int, fmt: str = "JPEG") -> bytes:
    """`image` saved with the EXIF Orientation tag (0x0112) set."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    params: dict[str, object] = {"exif": exif.tobytes()}
    if fmt == "JPEG":
        params["quality"] = 95
    return encode(image, fmt, **params)


# -- https server -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Certificate:
    cert_pem: bytes
    key_pem: bytes

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts only this certificate."""
        return ssl.create_default_context(cadata=self.cert_pem.decode("ascii"))


def issue_certificate(
    common_name: str,
    names: list[str],
    *,
    issuer: tuple[Any, Any] | None = None,
    ca: bool = False,
    valid: tuple[datetime.timedelta, datetime.timedelta] = (
        datetime.timedelta(hours=1),
        datetime.timedelta(days=1),
    ),
) -> tuple[Any, Any]:
    """A new EC P-256 key and its certificate for `common_name`, with `names` as subjectAltName
    DNS entries (none when empty) and a CA basic constraint when `ca`; signed by `issuer`
    ((name, key)) or by itself; valid from now - valid[0] to now + valid[1]. (certificate, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer_name, signing_key = (subject, key) if issuer is None else issuer
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - valid[0])
        .not_valid_after(now + valid[1])
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return builder.sign(signing_key, hashes.SHA256()), key


def key_pem(key: Any) -> bytes:
    """The private key as unencrypted PKCS#8 PEM."""
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: Any) -> bytes:
    """The certificate as PEM."""
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def self_signed(names: list[str]) -> Certificate:
    """A self-signed EC certificate for `names` (subjectAltName DNS entries), valid for a day."""
    cert, key = issue_certificate(names[0], names, ca=True)
    return Certificate(cert_pem=cert_pem(cert), key_pem=key_pem(key))


@dataclass
class Seen:
    path: str
    host: str | None


@dataclass
class PictureServer:
    """What the https server saw and sent; `routes` maps a path to the bytes served there."""

    port: int = 0
    routes: dict[str, bytes] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)
    streamed: dict[str, int] = field(default_factory=dict)  # path -> bytes written before it stopped
    finished: threading.Event = field(default_factory=threading.Event)  # a streaming route ended
    stop: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str, host: str = "images.test") -> str:
        return f"https://{host}:{self.port}{path}"


STREAM_TOTAL = 64 * 1024 * 1024
DRIP_BYTES = 300  # the slow route's body, one byte per DRIP_EVERY_S
DRIP_EVERY_S = 0.1


def _handler(state: PictureServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            state.requests.append(Seen(self.path, self.headers.get("Host")))
            parts = urlsplit(self.path)
            route = parts.path
            try:
                if route in state.routes:
                    self._send(200, state.routes[route], "image/png")
                elif route == "/redirect":
                    target = parse_qs(parts.query)["to"][0]
                    self.send_response(302)
                    self.send_header("Location", target)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif route == "/loop":
                    self.send_response(307)
                    self.send_header("Location", "/loop")
                    self.end_headers()
                elif route == "/lying.png":
                    self._send(200, b"<!doctype html><html><body>not a picture</body></html>", "image/png")
                elif route == "/gzip.png":
                    self.send_response(200)
                    self.send_header("Content-Encoding", "gzip")
                    self.end_headers()
                    self.wfile.write(b"\x1f\x8b" + b"\x00" * 64)
                elif route == "/declared-huge.png":
                    self.send_response(200)
                    self.send_header("Content-Length", str(50 * 1024 * 1024))
                    self.end_headers()
                    self.wfile.write(b"\x89PNG\r\n\x1a\n")
                    self.wfile.flush()
                    state.stop.wait(10)
                elif route == "/endless.png":
                    self._stream(route)
                elif route == "/slow.png":
                    self._drip_body(route)
                elif route == "/slow-headers.png":
                    self._drip_headers(route)
                else:
                    self._send(404, b"missing", "text/plain")
            except OSError:
                pass  # the client went away: what these routes are for

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _stream(self, route: str) -> None:
            # No Content-Length: the body runs until the connection closes (HTTP/1.0).
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            sent = 0
            block = b"\x89PNG\r\n\x1a\n" + b"\x00" * (64 * 1024 - 8)
            try:
                while sent < STREAM_TOTAL and not state.stop.is_set():
                    self.wfile.write(block)
                    sent += len(block)
                    block = b"\x00" * len(block)
            finally:
                state.streamed[route] = sent
                state.finished.set()

        def _drip_body(self, route: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            body = b"\x89PNG\r\n\x1a\n" + b"\x00" * DRIP_BYTES
            self._drip(route, [body[i : i + 1] for i in range(len(body))])

        def _drip_headers(self, route: str) -> None:
            lines = [b"HTTP/1.0 200 OK\r\n"] + [f"X-Pad-{i}: x\r\n".encode() for i in range(DRIP_BYTES)]
            self._drip(route, lines)

        def _drip(self, route: str, pieces: list[bytes]) -> None:
            """Write `pieces` one at a time, DRIP_EVERY_S apart, until stopped; count them."""
            sent = 0
            try:
                for piece in pieces:
                    if state.stop.is_set():
                        break
                    self.wfile.write(piece)
                    self.wfile.flush()
                    sent += 1
                    time.sleep(DRIP_EVERY_S)
            finally:
                state.streamed[route] = sent
                state.finished.set()

    return Handler


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # handshakes the client refuses (the certificate tests) end here on purpose


@contextmanager
def https_picture_server(certificate: Certificate) -> Iterator[PictureServer]:
    """An https server on a free loopback port; stopped (and its threads joined) on exit."""
    state = PictureServer()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert_file = _temp_pem(certificate.cert_pem + certificate.key_pem)
    try:
        context.load_cert_chain(cert_file)
    finally:
        Path(cert_file).unlink()

    def remember_name(sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, ctx: ssl.SSLContext) -> None:
        state.server_names.append(name)

    context.sni_callback = remember_name
    server = _QuietServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = False  # joined at close: no handler outlives the test
    server.block_on_close = True
    # The handshake runs in each request's own thread, on its first read.
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stop.set()
        server.shutdown()
        server.server_close()
        thread.join()


def _temp_pem(data: bytes) -> str:
    import tempfile

    with tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False) as handle:
        handle.write(data)
        return handle.name


def table_resolver(table: dict[str, list[str]]) -> Resolver:
    """A resolver that answers from `table` and fails like DNS for any other name."""
    import socket

    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, f"unknown test host {host}")
        return list(table[host])

    return resolve


def loopback_or_public(address: str) -> bool:
    """The test policy: the production rule, plus 127.0.0.1 where the test server listens."""
    return address == "127.0.0.1" or is_public_address(address)
