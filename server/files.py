"""The data directory's files: created private, replaced atomically, never half-written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PRIVATE_FILE = 0o600
PUBLIC_FILE = 0o644
PRIVATE_DIR = 0o700


def ensure_private_dir(path: Path) -> bool:
    """Create `path` (0700) if missing. An existing directory keeps its mode (it may be one the
    operator shares on purpose); returns whether others can enter it, so the caller can warn.

    Raises:
        OSError: it cannot be created, or is not a directory.
    """
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")
    return bool(path.stat().st_mode & 0o077)


def write_atomic(path: Path, data: bytes, mode: int = PRIVATE_FILE) -> None:
    """Write `data` to `path` through a temp file in the same directory, fsync, then rename.

    The temp file has its final mode before the first byte is written, so a secret is never
    readable by others, and a crash leaves either the old file or the new one.

    Raises:
        OSError: the directory is not writable or the disk is full.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_private(path: Path) -> None:
    """Refuse a secret file that others can read.

    Raises:
        PermissionError: group or others have any access to `path`.
    """
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(f"{path} has mode {mode:o}; it holds a secret and must be 0600")
