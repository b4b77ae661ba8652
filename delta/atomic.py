"""Files that appear whole or not at all: temp file in the target's directory, fsync, rename.

python-tuf persists only what it verified, by temp file and atomic rename ("never worse after a
failure"). The caller writes into the temp file and may verify it before returning; any
exception (a failed verification included) removes the temp file and leaves the target as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

# New model and patch files are world-readable like any `cp` output; they hold no secrets.
FILE_MODE = 0o644


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Yield a binary file (read-write) that becomes `path` when the block ends without error.

    The file is created next to `path` (same file system, so the rename is atomic) under a
    hidden name; `handle.name` is its path.

    Raises:
        OSError: the directory is not writable, the disk is full, the rename fails.
    """
    target = Path(path)
    directory = target.parent
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        # Reopened by path so that `handle.name` is the temp file's path (for re-reading it).
        with open(temp, "w+b") as handle:
            yield handle
            handle.flush()
            os.fchmod(handle.fileno(), FILE_MODE)
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk (POSIX; a no-op elsewhere).
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["atomic_write"]
