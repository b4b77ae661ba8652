"""A put killed with SIGKILL leaves no blob under its key, and the store keeps working."""

from __future__ import annotations

import hashlib
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedota.storage.local_blobs import LocalBlobStore

MIB = 1024 * 1024
BLOCKS = 64  # a 64 MiB blob
# Writes BLOCKS MiB of 0x5a; with "pause" it stops after 17 of them and waits to be killed.
CHILD = r"""
import sys, time
from pathlib import Path
from fedota.storage.local_blobs import LocalBlobStore

root, mode, blocks = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
store = LocalBlobStore(root)

def chunks():
    block = b"\x5a" * (1024 * 1024)
    for i in range(blocks):
        yield block
        if mode == "pause" and i == 16:
            print("mid-put", flush=True)
            time.sleep(120)

print("started", flush=True)
store.put_stream(chunks())
print("finished", flush=True)
"""
FULL_KEY = hashlib.sha256(b"\x5a" * (BLOCKS * MIB)).hexdigest()


def _start(root: Path, mode: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), mode, str(BLOCKS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for_line(process: subprocess.Popen[bytes], expected: bytes, timeout: float) -> None:
    """Read the child's stdout unbuffered until it printed `expected` as a line."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while expected not in seen.splitlines():
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(remaining, 0))
        assert ready, f"child did not print {expected!r} within {timeout}s (got {seen!r})"
        data = os.read(fd, 4096)
        if not data:  # EOF: the child is gone, so reading its stderr cannot block
            errors = process.stderr.read() if process.stderr else b""
            raise AssertionError(f"child exited before printing {expected!r}: {errors!r}")
        seen += data


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def _temp_files(root: Path) -> list[Path]:
    return sorted((root / "tmp").iterdir())


def _assert_store_still_works(root: Path) -> None:
    store = LocalBlobStore(root)
    info = store.put_bytes(b"after the crash")
    assert store.read_bytes(info.key) == b"after the crash"


def test_kill_in_the_middle_of_a_large_put(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    process = _start(root, "pause")
    try:
        _wait_for_line(process, b"mid-put", timeout=60)
        partial = _temp_files(root)
        assert len(partial) == 1 and partial[0].stat().st_size >= 16 * MIB
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL
    finally:
        _kill(process)

    store = LocalBlobStore(root)  # the temp file is young: it might be a live put, so it stays
    assert list(store.keys()) == []
    assert not store.exists(FULL_KEY)
    assert _temp_files(root) == partial
    _assert_store_still_works(root)

    cleaned = LocalBlobStore(root, stale_temp_after=0)
    assert cleaned.removed_temp_files == 1
    assert _temp_files(root) == []


@pytest.mark.parametrize("seed", range(3))
def test_kill_at_a_random_moment_leaves_all_or_nothing(tmp_path: Path, seed: int) -> None:
    root = tmp_path / "blobs"
    process = _start(root, "run")
    try:
        _wait_for_line(process, b"started", timeout=60)
        time.sleep(random.Random(seed).uniform(0.0, 0.4))
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        _kill(process)

    store = LocalBlobStore(root, stale_temp_after=0)
    keys = list(store.keys())
    assert keys in ([], [FULL_KEY])
    if keys:
        store.verify(FULL_KEY)  # visible means complete
    assert _temp_files(root) == []
    _assert_store_still_works(root)


def test_old_temp_files_are_removed_on_open_and_young_ones_kept(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    old = store.temp_dir / "put-old.part"
    young = store.temp_dir / "put-young.part"
    old.write_bytes(b"left by a crash")
    young.write_bytes(b"a put still running elsewhere")
    an_hour_ago = time.time() - 3601
    os.utime(old, (an_hour_ago, an_hour_ago))

    reopened = LocalBlobStore(tmp_path, stale_temp_after=3600)

    assert reopened.removed_temp_files == 1
    assert _temp_files(tmp_path) == [young]
