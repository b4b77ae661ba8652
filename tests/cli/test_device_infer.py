"""`fedota device infer ...` against a real inference server on a temporary socket."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import grpc
import numpy as np
import pytest
from cli_harness import Run

from fedota.cli import _infer_client, device
from fedota.client import inference
from fedota.client.data import Desensitizer, ExampleStore
from fedota.client.inference import Capability, InferenceConfig, InferenceServer
from fedota.protos.v1 import inference_pb2 as pb
from fedota.protos.v1 import inference_pb2_grpc as pb_grpc

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
DIGITS = tuple(f"digit-{i}" for i in range(10))


def _reference_models() -> ModuleType:
    """The real torch test models of tests/client (one module, however pytest was started)."""
    name = "inference_models"
    if name not in sys.modules:
        path = REPO / "tests" / "client" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


models = _reference_models()
ROW = [float(v) for v in np.linspace(0, 16, models.INPUT_SIZE)]


@dataclass(frozen=True)
class Daemon:
    state: Path
    server: InferenceServer
    model: object
    store: ExampleStore

    @property
    def socket(self) -> Path:
        return self.state / inference.SOCKET_NAME


@pytest.fixture
def short_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="fi-", dir="/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def _daemon(state: Path, model: object, config: InferenceConfig | None = None) -> Iterator[Daemon]:
    store = ExampleStore(
        state / "examples.sqlite3",
        max_bytes=1 << 20,
        max_age=dt.timedelta(days=1),
        desensitizer=Desensitizer(),
    )
    server = InferenceServer(
        model,
        socket_path=inference.default_socket_path(state),
        config=config,
        examples=store,
        errors=models.ERRORS,
    )
    server.start()
    try:
        yield Daemon(state, server, model, store)
    finally:
        server.stop(grace=1)
        store.close()


@pytest.fixture
def daemon(short_dir: Path) -> Iterator[Daemon]:
    with _daemon(short_dir, models.ReferenceModel("v1", 1, labels=DIGITS)) as running:
        yield running


def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    pause, deadline = threading.Event(), time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"condition not met within {timeout}s"
        pause.wait(0.01)


def _json(result: object) -> object:
    assert result.code == 0, result.err  # type: ignore[attr-defined]
    return json.loads(result.out)  # type: ignore[attr-defined]


def test_predict_prints_the_class_and_feedback_stores_its_input(run: Run, daemon: Daemon) -> None:
    want = int(np.argmax(daemon.model.predict_one(ROW)))  # type: ignore[attr-defined]

    table = run("device", "infer", "predict", "--state", str(daemon.state), *map(str, ROW))
    answer = _json(
        run("device", "infer", "predict", "--state", str(daemon.state), "--json", *map(str, ROW))
    )

    assert table.code == 0 and f"{DIGITS[want]} (class {want})" in table.out
    assert (answer["label"], answer["label_name"], answer["model_version"]) == (
        want,
        DIGITS[want],
        "v1",
    )
    stored = run(
        "device",
        "infer",
        "feedback",
        "--state",
        str(daemon.state),
        answer["prediction_id"],
        "digit-2",
    )
    assert (stored.code, stored.out.strip()) == (0, "stored example 1")
    (example,) = daemon.store.examples()
    assert (example.label, example.source) == ("digit-2", "feedback")
    assert np.allclose(example.features, ROW)


def test_embed_prints_vectors(run: Run, daemon: Daemon) -> None:
    texts = ["hello", "wörld of devices"]
    answer = _json(
        run("device", "infer", "embed", "--socket", str(daemon.socket), "--json", *texts)
    )
    table = run("device", "infer", "embed", "--socket", str(daemon.socket), *texts)

    for text, vector in zip(texts, answer["embeddings"], strict=True):
        assert np.array_equal(np.float32(vector), daemon.model.embed_one(text))  # type: ignore[attr-defined]
    assert table.code == 0 and "TEXT" in table.out and "wörld of devices" in table.out


def test_generate_streams_the_models_text(run: Run, daemon: Daemon) -> None:
    params = inference.GenerationParams(b"Once upon", max_new_tokens=25)
    text, reason = daemon.model.generate_alone(params)  # type: ignore[attr-defined]

    plain = run(
        "device",
        "infer",
        "generate",
        "--state",
        str(daemon.state),
        "Once upon",
        "--max-new-tokens",
        "25",
    )
    answer = _json(
        run(
            "device",
            "infer",
            "generate",
            "--state",
            str(daemon.state),
            "Once upon",
            "--max-new-tokens",
            "25",
            "--json",
        )
    )

    assert plain.code == 0 and plain.out == text.decode() + "\n"
    assert answer == {
        "text": text.decode(),
        "finish_reason": reason,
        "tokens": 25,
        "model_version": "v1",
    }


def test_info_and_submit(run: Run, daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_infer_client.SOCKET_ENV, str(daemon.socket))

    info = _json(run("device", "infer", "info", "--json"))
    table = run("device", "infer", "info")
    stored = _json(
        run(
            "device",
            "infer",
            "submit",
            "--label",
            "greeting",
            "--text",
            "hi bob@example.com",
            "--json",
        )
    )

    assert info["version"] == "v1" and info["capabilities"] == ["embed", "generate", "predict"]
    assert info["input_size"] == models.INPUT_SIZE and info["labels"] == list(DIGITS)
    assert info["weight_bytes"] > 0 and info["rss_bytes"] > 0
    assert table.code == 0 and "reference-mlp-bag-gru" in table.out and "KiB" in table.out
    (example,) = daemon.store.examples()
    assert stored == {"example_id": example.id} and example.text == "hi <EMAIL>"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["info"], 2, "where is the daemon? give --socket PATH, --state DIR"),
        (["info", "--state", "/nope"], 3, "no inference server at /nope/inference.sock"),
        (["predict", "STATE", "1", "2", "3"], 2, "model v1 takes 64 features, got 3"),
        (["feedback", "STATE", "abc", "digit-1"], 2, "prediction 'abc' is unknown"),
        (["submit", "STATE", "--label", " ", "--text", "x"], 2, "label must not be empty"),
        (["generate", "STATE", "hi", "--max-new-tokens", "0"], 2, "must be at least 1, got 0"),
        (["info", "STATE", "--timeout", "0"], 2, "must be positive, got 0"),
        (["info", "STATE", "--socket", "/b"], 2, "not allowed with argument"),
    ],
    ids=[
        "nowhere",
        "no socket",
        "bad features",
        "unknown prediction",
        "blank label",
        "no tokens",
        "no time",
        "two places",
    ],
)
def test_errors_are_one_line_with_their_exit_code(
    run: Run, daemon: Daemon, args: list[str], code: int, message: str
) -> None:
    argv = [
        a for arg in args for a in (["--state", str(daemon.state)] if arg == "STATE" else [arg])
    ]

    result = run("device", "infer", *argv)

    assert result.code == code
    assert message in result.err
    assert "Traceback" not in result.err


def test_a_model_without_the_capability_and_no_model_at_all(run: Run, short_dir: Path) -> None:
    predictor = models.ReferenceModel("v1", 1, {Capability.PREDICT})
    with _daemon(short_dir, None) as daemon:
        empty = run("device", "infer", "info", "--state", str(short_dir))
        daemon.server.swap(predictor)
        lacking = run("device", "infer", "generate", "--state", str(short_dir), "hi")

    assert (empty.code, empty.err.strip()) == (
        3,
        "fedota: error: no model is loaded yet; retry once the daemon has installed one",
    )
    assert lacking.code == 2 and "model v1 cannot generate (it offers: predict)" in lacking.err


def test_a_busy_server_and_a_dead_socket_exit_unavailable(run: Run, short_dir: Path) -> None:
    model = models.ReferenceModel("v1", 1)
    config = InferenceConfig(max_batch=1, max_wait=0, max_queue=1)
    with _daemon(short_dir, model, config) as daemon:
        model.predict_gate.close()
        with (
            grpc.insecure_channel(f"unix:{daemon.socket}") as channel,
            ThreadPoolExecutor(2) as pool,
        ):
            stub = pb_grpc.LocalInferenceStub(channel)
            calls = [pool.submit(stub.Predict, pb.PredictRequest(features=ROW))]
            assert model.predict_gate.wait_arrivals(1)
            calls.append(pool.submit(stub.Predict, pb.PredictRequest(features=ROW)))
            _wait_until(lambda: daemon.server.queued()["predict"] == 1)  # the queue is full
            busy = run("device", "infer", "predict", "--state", str(short_dir), *map(str, ROW))
            model.predict_gate.open()
            assert all(c.result(30).model_version == "v1" for c in calls)
    dead = short_dir / "dead.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(dead))
    listener.close()
    refused = run("device", "infer", "info", "--socket", str(dead), "--timeout", "5")

    assert busy.code == 3 and "the inference server is busy: v1 predict queue is full" in busy.err
    assert refused.code == 3 and "cannot reach the inference server at unix:" in refused.err


def test_the_cli_and_the_server_agree_on_names() -> None:
    assert _infer_client.SOCKET_NAME == inference.SOCKET_NAME
    assert _infer_client.SOCKET_ENV == device.INFER_SOCKET_ENV


def test_infer_loads_neither_the_serving_code_nor_torch(daemon: Daemon) -> None:
    probe = textwrap.dedent(
        """
        import json, sys
        from fedota.cli.main import main
        code = main(sys.argv[1:])
        print(json.dumps([code, sorted(sys.modules)]))
        """
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            probe,
            "device",
            "infer",
            "info",
            "--state",
            str(daemon.state),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    code, modules = json.loads(result.stdout.strip().splitlines()[-1])

    assert code == 0
    assert not [m for m in modules if m == "torch" or m.startswith("fedota.client")]
