"""Receiving a model file over the ImportModel client stream into a private temp file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fedota.protos.v1 import releases_pb2
from fedota.server.errors import InvalidArgument


@contextmanager
def received_file(
    chunks: Iterator[releases_pb2.ImportModelChunk], work_dir: Path, max_bytes: int
) -> Iterator[tuple[releases_pb2.ImportModelHeader, Path]]:
    """The stream's header and its data in a temp file that is removed on exit.

    The first message carries the header (and may carry data); the file must be exactly as long
    as the header says, and no longer than `max_bytes`.

    Raises:
        InvalidArgument: no header first, a header again later, a size of 0 or over the cap,
            or a stream whose data is shorter or longer than its declared size.
    """
    first = next(chunks, None)
    if first is None or not first.HasField("header"):
        raise InvalidArgument("header", "the first message of the stream must carry the header")
    header = first.header
    if not 0 < header.size_bytes <= max_bytes:
        raise InvalidArgument(
            "header.size_bytes", f"must be 1 to {max_bytes} bytes, got {header.size_bytes}"
        )
    fd, name = tempfile.mkstemp(dir=work_dir, prefix="import-", suffix=".safetensors")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            received = 0
            message: releases_pb2.ImportModelChunk | None = first
            while message is not None:
                if message is not first and message.HasField("header"):
                    raise InvalidArgument("header", "only the first message may carry it")
                received += len(message.data)
                if received > header.size_bytes:
                    raise InvalidArgument(
                        "data", f"more than the declared {header.size_bytes} bytes arrived"
                    )
                handle.write(message.data)
                message = next(chunks, None)
        if received != header.size_bytes:
            raise InvalidArgument(
                "data", f"the stream ended after {received} of {header.size_bytes} bytes"
            )
        yield header, path
    finally:
        path.unlink(missing_ok=True)


__all__ = ["received_file"]
