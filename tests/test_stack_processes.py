"""The supervisor: process groups, log files, readiness waits and stopping, with tiny python children."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from stack.processes import Child, ProcessError, Supervisor, free_port
from tests.stack_support import gone, python_child, wait_file, wait_gone

ROOT = Path(__file__).resolve().parent.parent

STUBBORN = """
    import os, signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    grandchild = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    open(sys.argv[1], "w").write(f"{os.getpid()} {grandchild.pid}")
    print("ignoring SIGTERM", flush=True)
    time.sleep(600)
"""


def test_child_ignoring_sigterm_is_killed_with_its_group(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    with Supervisor(tmp_path / "logs", grace_s=0.5) as sup:
        child = sup.start("stubborn", [*python_child(STUBBORN), str(pids_file)])
        pid, grandchild = (int(x) for x in wait_file(pids_file).split())
        assert pid == child.pid
        assert os.getpgid(grandchild) == child.pid  # the child leads its own group
        assert os.getpgid(child.pid) != os.getpgrp()
        started = time.monotonic()
    assert time.monotonic() - started >= 0.5  # SIGTERM was ignored: it took the grace period and SIGKILL
    assert wait_gone(pid)
    assert wait_gone(grandchild)
    assert child.popen.returncode == -signal.SIGKILL
    assert "ignoring SIGTERM" in (tmp_path / "logs" / "stubborn.log").read_text()
    assert sup.children == []


def test_polite_child_stops_on_sigterm_without_waiting(tmp_path: Path) -> None:
    with Supervisor(tmp_path, grace_s=30) as sup:
        child = sup.start("polite", python_child("import time; print('up', flush=True); time.sleep(600)"))
        time.sleep(0.2)
        started = time.monotonic()
        sup.stop_all()
        assert time.monotonic() - started < 10  # well inside the 30 s grace: no SIGKILL was needed
    assert child.popen.returncode == -signal.SIGTERM
    assert gone(child.pid)


def test_child_dying_early_fails_readiness_with_its_log_tail(tmp_path: Path) -> None:
    code = "import sys; print('x' * 9000); print('listening failed: boom', file=sys.stderr); sys.exit(3)"
    with Supervisor(tmp_path) as sup:
        child = sup.start("early", python_child(code))
        with pytest.raises(ProcessError) as caught:
            sup.wait_http(child, f"http://127.0.0.1:{free_port()}/", timeout_s=30)
    message = str(caught.value)
    assert "early died before" in message
    assert "exited with status 3" in message
    assert "listening failed: boom" in message
    assert len(message) < 4500  # a tail, not the whole log
    assert str(tmp_path / "early.log") in message


def test_readiness_waits_for_http_200_and_times_out_with_the_tail(tmp_path: Path) -> None:
    port = free_port()
    with Supervisor(tmp_path) as sup:
        slow = python_child(
            f"""
            import http.server, time
            print("warming up", flush=True)
            time.sleep(0.5)
            http.server.ThreadingHTTPServer(("127.0.0.1", {port}), http.server.SimpleHTTPRequestHandler)\
                .serve_forever()
            """
        )
        server = sup.start("http", slow, cwd=tmp_path)
        sup.wait_http(server, f"http://127.0.0.1:{port}/", timeout_s=30)
        silent = sup.start(
            "silent", python_child("import time; print('never listens', flush=True); time.sleep(600)")
        )
        with pytest.raises(ProcessError) as caught:
            sup.wait_http(silent, f"http://127.0.0.1:{free_port()}/", timeout_s=0.5)
        assert "not ready" in str(caught.value)
        assert "never listens" in str(caught.value)
        assert "still running" in str(caught.value)
    assert gone(server.pid)
    assert gone(silent.pid)


def _start_three_then_fail(tmp_path: Path, children: list[Child]) -> None:
    with Supervisor(tmp_path, grace_s=0.5) as sup:
        for n in range(3):
            children.append(sup.start(f"c{n}", python_child("import time; time.sleep(600)")))
        raise RuntimeError("failure in the caller")


def test_an_exception_in_the_block_stops_every_child(tmp_path: Path) -> None:
    children: list[Child] = []
    with pytest.raises(RuntimeError, match="failure in the caller"):
        _start_three_then_fail(tmp_path, children)
    assert len(children) == 3
    assert all(wait_gone(c.pid) for c in children)


def test_output_goes_to_log_files_not_pipes(tmp_path: Path) -> None:
    # 1 MiB of output would block forever on an unread pipe.
    code = "import sys; sys.stdout.write('y' * (1 << 20)); sys.stdout.flush(); print('done', flush=True)"
    with Supervisor(tmp_path) as sup:
        child = sup.start("chatty", python_child(code))
        assert child.popen.wait(timeout=30) == 0
        assert child.popen.stdout is None
    assert (tmp_path / "chatty.log").read_text().endswith("done\n")


def test_missing_program_is_a_process_error(tmp_path: Path) -> None:
    with Supervisor(tmp_path) as sup, pytest.raises(ProcessError, match="cannot start"):
        sup.start("missing", [str(tmp_path / "no-such-program")])


SUPERVISING = """
    import sys, time
    from pathlib import Path
    from stack.processes import Supervisor
    out = Path(sys.argv[1])
    with Supervisor(out / "logs", grace_s=0.5) as sup:
        sup.handle_signals()
        child = sup.start("sleeper", [sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
        (out / "pid").write_text(str(child.pid))
        try:
            time.sleep(600)
        except KeyboardInterrupt:
            (out / "interrupted").write_text("yes")
            raise
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_to_the_supervisor_stops_its_children(tmp_path: Path, sig: signal.Signals) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SUPERVISING), str(tmp_path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        child_pid = int(wait_file(tmp_path / "pid", timeout_s=30))
        assert not gone(child_pid)
        parent.send_signal(sig)
        parent.wait(timeout=30)
        assert (tmp_path / "interrupted").read_text() == "yes"
        assert wait_gone(child_pid)
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
            parent.wait()
