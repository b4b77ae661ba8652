"""Files that survive `kill -9` and power loss whole or not at all, for the model slots.

Every file is written under a hidden temp name in its final directory (same file system, so the
rename is atomic), fsynced, renamed over the old one, and then the directory is fsynced so the
rename itself is on disk. A crash leaves the old file or the new one, plus at most a temp file
whose name `is_temp` recognises, which `remove_temps` sweeps on the next start.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

TEMP_SUFFIX = ".tmp"
COPY_CHUNK = 1 << 20
FILE_MODE = 0o600

Progress = Callable[[int, int], None]


def is_temp(path: Path) -> bool:
    """True for a temp file this module (or `fedota.delta`'s atomic writer) leaves behind."""
    return path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file that becomes `path` (durably) when the block ends without an error.

    On any exception, the temp file is removed and `path` is left as it was.

    Raises:
        OSError: the directory is not writable, the disk is full, the rename fails.
    """
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    fsync_dir(path.parent)


def write_json(path: Path, value: dict[str, Any]) -> None:
    """Write `value` as JSON to `path` atomically and durably.

    Raises:
        OSError: the file cannot be written.
    """
    with atomic_file(path) as handle:
        handle.write(json.dumps(value, indent=2, sort_keys=True).encode() + b"\n")


def copy_file(source: Path, target: Path, progress: Progress | None = None) -> int:
    """Copy `source` to `target` atomically and durably, in chunks; the bytes copied.

    `progress(done, total)` is called after every chunk.

    Raises:
        OSError: the source cannot be read or the target cannot be written.
    """
    with open(source, "rb") as reader, atomic_file(target) as writer:
        total, done = os.fstat(reader.fileno()).st_size, 0
        while chunk := reader.read(COPY_CHUNK):
            writer.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    return done


def remove(path: Path) -> bool:
    """Remove a file if it exists and fsync its directory; True when there was one.

    Raises:
        OSError: the file exists but cannot be removed.
    """
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True


def remove_temps(directory: Path) -> list[Path]:
    """Remove the temp files an interrupted write left in `directory`; the ones removed.

    Raises:
        OSError: the directory cannot be listed or a temp file cannot be removed.
    """
    if not directory.is_dir():
        return []
    removed = [entry for entry in directory.iterdir() if is_temp(entry) and entry.is_file()]
    for entry in removed:
        entry.unlink(missing_ok=True)
    if removed:
        fsync_dir(directory)
    return removed


def fsync_dir(directory: Path) -> None:
    """Make the directory's entries (a rename, a removal) durable.

    Raises:
        OSError: the directory cannot be opened or synced.
    """
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a file's data (written by someone else) to disk.

    Raises:
        OSError: the file cannot be opened or synced.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = [
    "TEMP_SUFFIX",
    "atomic_file",
    "copy_file",
    "fsync_dir",
    "fsync_file",
    "is_temp",
    "remove",
    "remove_temps",
    "write_json",
]
