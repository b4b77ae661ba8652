"""The daemon's resident memory, for ModelInfo (no psutil on the device)."""

from __future__ import annotations

import os
import resource
import sys


def process_rss() -> int:
    """Resident set size of this process in bytes (its peak where the current one is unknown)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # ru_maxrss is in kilobytes on Linux and in bytes on macOS.
        return peak if sys.platform == "darwin" else peak * 1024


__all__ = ["process_rss"]
