"""A real `InferenceServer` on a temporary Unix socket and a stub to call it (imported by name).

Socket paths stay short (sun_path holds ~107 bytes), so they live in a fresh /tmp directory
rather than under pytest's long tmp_path.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from inference_models import ERRORS

from fedota.client.data import Desensitizer, ExampleStore
from fedota.client.inference import ExampleSink, InferenceConfig, InferenceServer, ServedModel
from fedota.protos.v1 import inference_pb2_grpc as pb_grpc


@dataclass(frozen=True)
class Served:
    server: InferenceServer
    stub: pb_grpc.LocalInferenceStub
    socket_path: Path


@contextmanager
def short_tmp_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="fi-", dir="/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def example_store() -> Iterator[ExampleStore]:
    """The daemon's real example store, in a temporary directory."""
    with short_tmp_dir() as directory:
        store = ExampleStore(
            directory / "examples.sqlite3",
            max_bytes=1 << 20,
            max_age=dt.timedelta(days=1),
            desensitizer=Desensitizer(names=["Alice"]),
        )
        try:
            yield store
        finally:
            store.close()


@contextmanager
def running(
    model: ServedModel | None,
    *,
    config: InferenceConfig | None = None,
    examples: ExampleSink | None = None,
    tcp: bool = False,
) -> Iterator[Served]:
    """Serve `model` on a temporary socket; stop the server and close the channel on exit."""
    with short_tmp_dir() as directory:
        path = directory / "s.sock"
        server = InferenceServer(
            model,
            socket_path=path,
            tcp_port=0 if tcp else None,
            config=config,
            examples=examples,
            errors=ERRORS,
        )
        server.start()
        try:
            with grpc.insecure_channel(f"unix:{path}") as channel:
                yield Served(server, pb_grpc.LocalInferenceStub(channel), path)
        finally:
            assert server.stop(grace=2.0), "the server's threads did not end"


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until `condition()` holds; fail the test after `timeout` seconds."""
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        pause.wait(0.01)


def inference_threads() -> set[threading.Thread]:
    """Threads the inference server starts (batchers, engine drivers, gRPC handlers)."""
    prefixes = ("fedota-batch-", "fedota-gen-", "fedota-infer")
    return {t for t in threading.enumerate() if t.name.startswith(prefixes)}
