"""Helpers for the stack tests: tiny python children and process-gone checks without psutil."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from stack.processes import pid_alive


def gone(pid: int) -> bool:
    """True when no such process exists, or only its zombie is left (nothing runs any more)."""
    return not pid_alive(pid)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, 15 s for a graceful exit (a server drains its requests), then SIGKILL."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.05)
    return gone(pid)


def wait_file(path: Path, timeout_s: float = 10.0) -> str:
    """The content of `path` once it exists and is not empty."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


def python_child(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--headless",
    # Without it a screenshot waits for a frame that a still <model-viewer> (no auto-rotate) never
    # draws, and Chromium 156 hangs until the timeout.
    "--run-all-compositor-stages-before-draw",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
    "--virtual-time-budget=5000",
)


def run_chromium(args: list[str], profile: Path, timeout_s: float = 60.0) -> tuple[int, str, str]:
    """Headless Chromium in its own process group, which is killed afterwards (no helper outlives it)."""
    import signal
    import subprocess

    proc = subprocess.Popen(
        [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
