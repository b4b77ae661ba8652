"""Small C libraries built on first use with the system compiler, loaded through ctypes.

The int4 matmul and the LM's decode-step kernels are C (see kernels.py and lm/fast.py for the
measurements that led there). Each library is compiled for this CPU (`-march=native`) into a
per-user cache (`FEDOTA_KERNEL_CACHE`, else ~/.cache/fedota/kernels), keyed by its source, the
compiler, the flags and the CPU, and moved into place by an atomic rename so concurrent
processes agree. No torch headers are involved, so a build takes well under a second.

Without a compiler, or with `FEDOTA_NATIVE=0`, `load_library` returns None and callers take
their pure-torch path (same results up to float rounding, slower); `native_status` says why.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

FLAGS = ("-O3", "-march=native", "-shared", "-fPIC", "-std=c11", "-lm")
DISABLE_ENV = "FEDOTA_NATIVE"
_log = logging.getLogger(__name__)
_lock = threading.Lock()
_libraries: dict[str, ctypes.CDLL | None] = {}
_status: dict[str, str] = {}


def load_library(
    name: str, source: str, declare: Callable[[ctypes.CDLL], None]
) -> ctypes.CDLL | None:
    """The library built from `source` (once per process), or None when it cannot be built.

    `declare` sets the functions' argtypes/restype and may raise RuntimeError to refuse it.
    """
    if name in _libraries:
        return _libraries[name]
    with _lock:
        if name not in _libraries:
            library = None
            try:
                if os.environ.get(DISABLE_ENV, "1") == "0":
                    raise RuntimeError(f"{DISABLE_ENV}=0")
                library = ctypes.CDLL(str(_build(name, source)))
                declare(library)
                _status[name] = "native"
            except (OSError, AttributeError, subprocess.SubprocessError, RuntimeError) as exc:
                _status[name] = f"torch fall-back: {exc}"
                _log.warning("native %s kernels unavailable, using torch: %s", name, exc)
                library = None
            _libraries[name] = library
    return _libraries[name]


def native_status() -> dict[str, str]:
    """Each library asked for so far: "native", or why its torch fall-back runs."""
    return dict(_status)


def _build(name: str, source: str) -> Path:
    compiler = os.environ.get("CC") or next(
        (c for c in ("cc", "gcc", "clang") if shutil.which(c)), None
    )
    if compiler is None:
        raise RuntimeError("no C compiler (set CC or install gcc)")
    key = hashlib.sha256(
        "\0".join([source, compiler, *FLAGS, platform.machine(), _cpu_flags()]).encode()
    ).hexdigest()[:20]
    cache = Path(
        os.environ.get("FEDOTA_KERNEL_CACHE") or Path.home() / ".cache" / "fedota" / "kernels"
    )
    target = cache / f"{name}-{key}.so"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as work:
        path = Path(work) / f"{name}.c"
        path.write_text(source)
        built = Path(work) / f"{name}.so"
        # -lm after the source, where the linker looks for what it uses.
        command = [compiler, *FLAGS[:-1], "-o", str(built), str(path), FLAGS[-1]]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{compiler} failed: {result.stderr.strip()[:400]}")
        os.replace(built, target)
    return target


def _cpu_flags() -> str:
    # A cache shared between different CPUs must not hand one a library built for another.
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return next((line for line in handle if line.startswith("flags")), "")
    except OSError:
        return platform.processor()


__all__ = ["DISABLE_ENV", "load_library", "native_status"]
