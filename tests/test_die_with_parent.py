"""`fedota.die_with_parent`: a supervised program ends when its supervisor is killed outright."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

# A supervisor that starts `sleep` through the guard in a session of its own, prints the pid,
# and waits to be killed.
SUPERVISOR = textwrap.dedent(
    """
    import os, subprocess, sys, time
    child = subprocess.Popen(
        [sys.executable, "-m", "fedota.die_with_parent", str(os.getpid()), "--", "sleep", "60"],
        start_new_session=True,
    )
    print(child.pid, flush=True)
    time.sleep(60)
    """
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_program_ends_when_its_supervisor_is_killed_with_sigkill() -> None:
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR], stdout=subprocess.PIPE, text=True
    )
    pid = 0
    try:
        assert supervisor.stdout is not None
        pid = int(supervisor.stdout.readline())
        deadline = time.monotonic() + 10
        while (
            "sleep" not in Path(f"/proc/{pid}/cmdline").read_text() and time.monotonic() < deadline
        ):
            time.sleep(0.05)  # until the guard has become the program
        assert _alive(pid)

        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait(10)

        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid)
    finally:
        supervisor.kill()
        supervisor.wait(10)
        if pid and _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_malformed_command_line_is_refused_with_usage() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fedota.die_with_parent", "sleep", "1"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("usage: python -m fedota.die_with_parent")
