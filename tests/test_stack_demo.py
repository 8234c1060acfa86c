"""The demo's parts that need no pipeline: the progress line, checksum checks, failure handling."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.demo import DemoError, ProgressPrinter, download, progress_of, render_bar
from tests.stack_support import gone

ROOT = Path(__file__).resolve().parent.parent


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shapes_are_read_leniently() -> None:
    assert progress_of(
        {"status": "IN_PROGRESS", "progress": {"stage": "shape", "fraction": 0.4, "eta_seconds": 2}}
    ) == (
        "shape",
        0.4,
        2,
    )
    assert progress_of({"status": "IN_PROGRESS", "progress": {"stage": "x", "fraction": 40, "eta_s": 1.5}})[
        1:
    ] == (
        0.4,
        1.5,
    )
    assert progress_of({"status": "IN_QUEUE", "progress": None}) == ("in_queue", 0.0, None)
    assert progress_of({"status": "COMPLETED", "progress": {"stage": "export", "fraction": 0.9}})[1] == 1.0
    assert progress_of({"status": "IN_PROGRESS", "progress": {"fraction": "junk"}})[1] == 0.0
    assert progress_of({"status": "IN_PROGRESS", "progress": ["not", "a", "dict"]})[1] == 0.0


def test_bar_shows_fraction_state_stage_and_eta() -> None:
    line = render_bar(
        {"status": "IN_PROGRESS", "progress": {"stage": "shape", "fraction": 0.5, "eta_seconds": 3}}
    )
    assert line == "[" + "#" * 15 + "-" * 15 + "]  50.0% IN_PROGRESS shape eta 3s"
    done = render_bar(
        {"status": "COMPLETED", "progress": {"stage": "export", "fraction": 1.0, "eta_seconds": 0}}
    )
    assert done.startswith("[" + "#" * 30 + "] 100.0% COMPLETED")
    assert "eta" not in done


def test_printer_updates_one_line_on_a_terminal_and_prints_lines_otherwise() -> None:
    jobs = [
        {"status": "IN_QUEUE"},
        {"status": "IN_PROGRESS", "progress": {"stage": "shape", "fraction": 0.3}},
        {"status": "IN_PROGRESS", "progress": {"stage": "shape", "fraction": 0.3}},  # unchanged: not repeated
        {"status": "COMPLETED", "progress": {"stage": "export", "fraction": 1.0}},
    ]
    tty, plain = Tty(), io.StringIO()
    for out in (tty, plain):
        printer = ProgressPrinter(out)
        for job in jobs:
            printer.show(job)
        printer.done()
    assert plain.getvalue().count("\n") == 3
    assert "\r" not in plain.getvalue()
    assert tty.getvalue().count("\r") == 3
    assert tty.getvalue().count("\n") == 1  # one final newline after the updating line
    assert tty.getvalue().endswith("COMPLETED   export\n")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "model.glb").write_bytes(b"glTF" + bytes(60))
    handler = type(
        "H",
        (http.server.SimpleHTTPRequestHandler,),
        {"log_message": lambda *a: None, "__init__": _handler_init(tmp_path)},
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/model.glb"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _handler_init(directory: Path):  # type: ignore[no-untyped-def]
    def init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        http.server.SimpleHTTPRequestHandler.__init__(self, *args, directory=str(directory), **kwargs)

    return init


def test_download_checks_sha256_and_size(served: str, tmp_path: Path) -> None:
    data = b"glTF" + bytes(60)
    good = hashlib.sha256(data).hexdigest()
    target = tmp_path / "out.glb"
    download(served, target, good, len(data))
    assert target.read_bytes() == data
    other = tmp_path / "bad.glb"
    with pytest.raises(DemoError, match="sha256"):
        download(served, other, "0" * 64, len(data))
    with pytest.raises(DemoError, match="bytes"):
        download(served, other, good, len(data) + 1)
    assert not other.exists()  # nothing unverified is left next to the user


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in environ and not gone(int(entry.name)):
            found.append(int(entry.name))
    return found


def test_demo_failing_at_start_says_why_exits_1_and_leaves_no_process(tmp_path: Path) -> None:
    marker = f"ORFEAS_STACK_TEST_MARKER={uuid.uuid4().hex}"
    env = dict(os.environ, ORFEAS_DEFAULT_SIZE_MM="not-a-number", PYTHONPATH=str(ROOT))
    env[marker.split("=")[0]] = marker.split("=")[1]
    result = subprocess.run(
        [sys.executable, "-m", "stack", "--out", str(tmp_path / "demo")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "demo failed: worker died before" in result.stderr
    assert "ORFEAS_DEFAULT_SIZE_MM" in result.stderr  # the worker's own log tail names the variable
    assert (tmp_path / "demo" / "logs" / "s3.log").exists()  # S3 had started before the worker failed
    assert _processes_with(marker) == []


def _wait_for_text(path: Path, text: str, proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never printed:\n{path.read_text() if path.exists() else ''}")


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_keeps_the_stack_up_until_interrupted(tmp_path: Path, sig: signal.Signals) -> None:
    marker = uuid.uuid4().hex
    env = dict(os.environ, PYTHONPATH=str(ROOT), ORFEAS_STACK_TEST_MARKER=marker)
    out_dir = tmp_path / "demo"
    log = tmp_path / "demo.out"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stack", "--out", str(out_dir), "--serve"],
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        printed = _wait_for_text(log, "serving until Ctrl-C", proc, 240)
        page_url = re.search(r"status page: (\S+)", printed).group(1)  # type: ignore[union-attr]
        with urllib.request.urlopen(page_url + "healthz", timeout=10) as answer:
            assert answer.status == 200
        assert (out_dir / "model.glb").read_bytes()[:4] == b"glTF"
        assert (out_dir / "model.stl").stat().st_size > 84
        running = _processes_with(f"ORFEAS_STACK_TEST_MARKER={marker}")
        assert proc.pid in running
        assert len(running) >= 4  # the demo and its three services (and whatever they started)
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert "stopping" in log.read_text()
    assert _processes_with(f"ORFEAS_STACK_TEST_MARKER={marker}") == []
