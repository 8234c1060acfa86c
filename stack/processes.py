"""A small supervisor for child processes: own process groups, log files, readiness waits, clean stops.

Every child runs in a new session (its own process group), so stopping it reaches its children too.
Output goes to a log file, never to a pipe nobody reads. `Supervisor` is a context manager: leaving
it (normally, by an exception, or by Ctrl-C / SIGTERM once `handle_signals()` is on) stops every
child: SIGTERM to the whole group, then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

DEFAULT_GRACE_S = 5.0
LOG_TAIL_BYTES = 4000
POLL_S = 0.05
# Readiness checks go to loopback directly, whatever proxy the user's environment names.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ProcessError(RuntimeError):
    """A child did not start or become ready; the message carries its log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` now (the OS picks; a race with another program is possible but rare)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _proc_group_members(pgid: int) -> bool | None:
    """Linux: whether a live (non-zombie) process is in group `pgid`; None when /proc is unusable."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After the command: state, ppid, pgrp, ...
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def _signal_zero(send: Callable[[int, int], None], target: int) -> bool | None:
    """Signal 0 to a pid or group: False when there is none, True when it exists but is not ours
    to signal (so it runs), None when we may signal it: only /proc then tells a zombie apart."""
    try:
        send(target, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return None


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies waiting for a reaper do not count)."""
    known = _signal_zero(os.killpg, pgid)
    if known is not None:
        return known
    members = _proc_group_members(pgid)
    return True if members is None else members


def pid_alive(pid: int) -> bool:
    """Whether the process still runs (its zombie, waiting for a reaper, does not count)."""
    known = _signal_zero(os.kill, pid)
    if known is not None:
        return known
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes]
    log_file: Any = field(repr=False, default=None)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self) -> str:
        return log_tail(self.log_path)

    def failure(self, what: str) -> ProcessError:
        code = self.popen.poll()
        state = f"exited with status {code}" if code is not None else "still running"
        return ProcessError(f"{self.name} {what} ({state}); log {self.log_path}:\n{self.tail()}")


class Supervisor:
    """Starts children and guarantees they are stopped."""

    def __init__(self, log_dir: Path | str, *, grace_s: float = DEFAULT_GRACE_S) -> None:
        self.log_dir = Path(log_dir)
        self.grace_s = grace_s
        self.children: list[Child] = []
        self._previous: dict[int, Any] = {}

    # -- starting -------------------------------------------------------------------------------
    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
    ) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        log_file = log_path.open("ab")
        try:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            log_file.close()
            raise ProcessError(f"{name}: cannot start {argv[0]!r}: {exc}") from exc
        child = Child(name, list(argv), log_path, popen, log_file)
        self.children.append(child)
        return child

    def wait_http(
        self,
        child: Child,
        url: str,
        *,
        timeout_s: float = 60.0,
        ok: Callable[[int], bool] = lambda status: status == 200,
    ) -> None:
        """GET `url` until `ok(status)`; fail with the log tail if the child dies or time runs out."""
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while True:
            if not child.alive():
                raise child.failure(f"died before {url} answered")
            try:
                with _DIRECT.open(url, timeout=2.0) as answer:
                    if ok(answer.status):
                        return
                    last = f"HTTP {answer.status}"
            except urllib.error.HTTPError as exc:
                if ok(exc.code):
                    return
                last = f"HTTP {exc.code}"
            except (OSError, ValueError) as exc:
                last = str(exc)
            if time.monotonic() >= deadline:
                raise child.failure(f"not ready at {url} within {timeout_s:g} s (last: {last})")
            time.sleep(POLL_S * 4)

    # -- stopping -------------------------------------------------------------------------------
    def stop_child(self, child: Child) -> None:
        pgid = child.pid  # start_new_session: the child leads its own group
        if child.alive() or group_alive(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            deadline = time.monotonic() + self.grace_s
            while time.monotonic() < deadline:
                child.popen.poll()
                if not child.alive() and not group_alive(pgid):
                    break
                time.sleep(POLL_S)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.popen.wait(timeout=self.grace_s)
        if child.log_file is not None:
            child.log_file.close()
            child.log_file = None

    def stop_all(self) -> None:
        """Stop every child, newest first (the callback server before the worker before S3)."""
        while self.children:
            self.stop_child(self.children.pop())

    # -- signals and context --------------------------------------------------------------------
    def handle_signals(self) -> None:
        """SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt in the main thread, so `with` blocks unwind.

        SIGINT is set too: a program started in the background by a shell inherits it ignored.
        """

        def interrupt(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._previous[sig] = signal.signal(sig, interrupt)

    def restore_signals(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if threading.current_thread() is not threading.main_thread():
            self.stop_all()  # signal handlers can only be changed from the main thread
            return
        # A second Ctrl-C while stopping must not leave children behind: ignore SIGINT meanwhile.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self.stop_all()
        finally:
            signal.signal(signal.SIGINT, previous)
            self.restore_signals()
