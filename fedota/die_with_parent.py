"""`python -m fedota.die_with_parent PARENT_PID -- PROGRAM ARGS…`: run PROGRAM, and have the
kernel send it SIGTERM when the process that started it dies.

Supervised Flower processes run in sessions of their own, so a supervisor killed with SIGKILL
(a power cut, the OOM killer) would leave them running: a second SuperNode with the same key, or
a SuperLink holding the port the restarted coordinator needs. Linux's PR_SET_PDEATHSIG survives
`exec`, so this sets it and then becomes PROGRAM. On other systems it only execs.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
EXIT_USAGE = 2


def _set_parent_death_signal() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--" or not argv[0].isdigit():
        print(
            "usage: python -m fedota.die_with_parent PARENT_PID -- PROGRAM ARGS…", file=sys.stderr
        )
        sys.exit(EXIT_USAGE)
    parent, program = int(argv[0]), argv[2:]
    if sys.platform.startswith("linux"):
        _set_parent_death_signal()
    if os.getppid() != parent:
        sys.exit(0)  # the parent died before the signal was armed: nothing to run for
    os.execvp(program[0], program)


if __name__ == "__main__":
    main(sys.argv[1:])
