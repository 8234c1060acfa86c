"""Helpers for the stack tests: tiny python children and process-gone checks without psutil."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path


def gone(pid: int) -> bool:
    """True when no such process exists, or only its zombie is left (nothing runs any more)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


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
