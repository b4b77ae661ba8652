"""Concurrent puts, of the same content or not, by threads or processes, all land intact."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
from pathlib import Path

from fedota.storage.blobs import BlobLimits
from fedota.storage.local_blobs import LocalBlobStore

SHARED = bytes(range(256)) * 4096 * 4  # 4 MiB
SHARED_KEY = hashlib.sha256(SHARED).hexdigest()


def _check(root: Path, expected: dict[str, bytes]) -> None:
    store = LocalBlobStore(root)
    assert sorted(store.keys()) == sorted(expected)
    for key, data in expected.items():
        assert store.read_bytes(key) == data
    assert list(store.temp_dir.iterdir()) == []


def test_threads_putting_the_same_and_different_content(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path, limits=BlobLimits(chunk_size=64 * 1024))
    workers = 8
    start = threading.Barrier(workers)
    keys: list[str] = []
    errors: list[BaseException] = []

    def put(index: int) -> None:
        try:
            start.wait(timeout=30)
            # Small chunks so the writers interleave inside one put.
            chunks = (SHARED[i : i + 65536] for i in range(0, len(SHARED), 65536))
            keys.append(store.put_stream(chunks).key)
            keys.append(store.put_bytes(f"thread {index}".encode()).key)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []

    expected = {SHARED_KEY: SHARED}
    expected |= {
        hashlib.sha256(d).hexdigest(): d for d in (f"thread {i}".encode() for i in range(8))
    }
    assert sorted(set(keys)) == sorted(expected)
    _check(tmp_path, expected)


CHILD = r"""
import sys, time
from pathlib import Path
from fedota.storage.local_blobs import LocalBlobStore

root, index, start_at = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
shared = bytes(range(256)) * 4096 * 4
store = LocalBlobStore(root)
time.sleep(max(0.0, start_at - time.time()))
chunks = (shared[i : i + 65536] for i in range(0, len(shared), 65536))
store.put_stream(chunks)
store.put_bytes(b"process %d" % index)
"""


def test_processes_putting_the_same_content_at_once(tmp_path: Path) -> None:
    start_at = time.time() + 4  # after every child has imported, so the puts overlap
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), str(i), str(start_at)],
            stderr=subprocess.PIPE,
        )
        for i in range(4)
    ]
    try:
        for process in processes:
            _, stderr = process.communicate(timeout=90)
            assert process.returncode == 0, stderr.decode()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)

    expected = {SHARED_KEY: SHARED}
    expected |= {hashlib.sha256(d).hexdigest(): d for d in (b"process %d" % i for i in range(4))}
    _check(tmp_path, expected)
