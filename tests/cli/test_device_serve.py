"""`fedota device serve` as a real process: it serves a checkpoint on the state directory's
socket for `fedota device infer`, stores submitted examples desensitised, and stops cleanly on
SIGTERM; a bad model file is refused with exit 2 before anything listens."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from fedota.ml import digits
from fedota.ml.checkpoint import save_checkpoint

pytestmark = pytest.mark.timeout(90)
FEDOTA = [sys.executable, "-m", "fedota.cli.main"]


@pytest.fixture
def state() -> Iterator[Path]:
    # Unix socket paths are short: keep the state directory directly under /tmp.
    with tempfile.TemporaryDirectory(prefix="fds-", dir="/tmp") as folder:
        yield Path(folder)


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = digits.build({"inputs": 64, "hidden": [16], "classes": 10})
    path = tmp_path / "digits.safetensors"
    save_checkpoint(
        path, model.state_dict(), architecture=digits.ARCHITECTURE,
        config=digits.config_of(model), variant="fp32",
    )  # fmt: skip
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FEDOTA, *args], capture_output=True, text=True, timeout=60)


def test_serve_answers_infer_stores_examples_and_stops_on_sigterm(
    state: Path, checkpoint: Path
) -> None:
    server = subprocess.Popen(
        [*FEDOTA, "device", "serve", "--model", str(checkpoint), "--state", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("serving digits-mlp fp32 "), line + server.stderr.read()
        row = [str(v) for v in np.linspace(0, 16, 64)]
        predicted = _cli("device", "infer", "predict", "--state", str(state), "--json", *row)
        assert predicted.returncode == 0, predicted.stderr
        answer = json.loads(predicted.stdout)
        assert answer["label_name"] == str(answer["label"]) and 0 <= answer["label"] < 10, answer
        info = _cli("device", "infer", "info", "--state", str(state), "--json")
        assert json.loads(info.stdout)["architecture"] == "digits-mlp"
        text = "call ann at +44 20 7946 0958 about 5"
        submitted = _cli(
            "device", "infer", "submit", "--state", str(state), "--label", "5", "--text", text
        )
        assert submitted.returncode == 0, submitted.stderr
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert b"7946" not in (state / "examples.db").read_bytes()
    assert not (state / "inference.sock").exists() or not _listening(state / "inference.sock")


def _listening(path: Path) -> bool:
    import socket

    with socket.socket(socket.AF_UNIX) as probe:
        probe.settimeout(1)
        try:
            probe.connect(str(path))
        except OSError:
            return False
        return True


def test_a_bad_model_file_is_refused_before_serving(state: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(os.urandom(64))
    started = time.monotonic()
    result = _cli("device", "serve", "--model", str(bad), "--state", str(state))
    assert result.returncode == 2
    assert result.stderr.startswith("fedota: error: --model:") and "Traceback" not in result.stderr
    assert not (state / "inference.sock").exists()
    assert time.monotonic() - started < 60


def test_serve_stores_examples_where_the_training_client_reads_them() -> None:
    from fedota.cli._serve import STORE_FILE as SERVED
    from fedota.client.data import STORE_FILE

    assert SERVED == STORE_FILE
