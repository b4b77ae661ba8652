"""The server drives fedota.ml.lm's real GenerationEngine (a small untrained ByteLM)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import torch
from inference_harness import Served, running

from fedota.client.inference import Capability, ModelInfo
from fedota.protos.v1 import inference_pb2 as pb

lm = pytest.importorskip("fedota.ml.lm", reason="fedota.ml.lm is not built yet")

pytestmark = pytest.mark.timeout(60)

MAX_SEQ_LEN = 96


class ServedLM:
    """A `ServedModel` that only generates, over a seeded ByteLM."""

    capabilities = frozenset({Capability.GENERATE})

    def __init__(self, version: str, seed: int) -> None:
        torch.manual_seed(seed)
        config = lm.LMConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_seq_len=MAX_SEQ_LEN)
        self.net = lm.ByteLM(config).eval()
        weights = sum(p.numel() * p.element_size() for p in self.net.parameters())
        self.info = ModelInfo(version, "fp32", lm.ARCHITECTURE, weights)

    def new_engine(self) -> object:
        return lm.GenerationEngine(self.net, max_batch=4)

    def close(self) -> None:
        pass

    def alone(self, prompt: bytes, max_new_tokens: int) -> tuple[bytes, str]:
        engine = lm.GenerationEngine(self.net, max_batch=1)
        engine.submit(lm.GenerationRequest(prompt, max_new_tokens))
        out, reason = b"", ""
        while engine.active or engine.waiting:
            for event in engine.step():
                out += event.token
                reason = event.reason or reason
        return out, reason


@pytest.fixture
def model() -> ServedLM:
    return ServedLM("lm-1", seed=4)


@pytest.fixture
def served(model: ServedLM) -> Iterator[Served]:
    with running(model) as served:
        yield served


def _stream(served: Served, prompt: bytes, max_new_tokens: int) -> tuple[bytes, str]:
    chunks = list(
        served.stub.Generate(pb.GenerateRequest(prompt=prompt, max_new_tokens=max_new_tokens))
    )
    assert {c.model_version for c in chunks} == {"lm-1"}
    assert [c.finished for c in chunks].count(True) == 1 and chunks[-1].finished
    return b"".join(c.token for c in chunks), chunks[-1].finish_reason


def test_concurrent_streams_match_the_engine_run_alone(served: Served, model: ServedLM) -> None:
    requests = [(b"12+30=", 8), (b"a", 30), (b"the quick brown fox", 17), (b"zz", 1)]
    with ThreadPoolExecutor(len(requests)) as pool:
        results = list(pool.map(lambda r: _stream(served, *r), requests))

    assert results == [model.alone(*r) for r in requests]


def test_the_engines_own_refusal_answers_invalid_argument(served: Served) -> None:
    with pytest.raises(grpc.RpcError) as error:
        _stream(served, b"x" * 90, 10)

    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert f"exceeds max_seq_len {MAX_SEQ_LEN}" in error.value.details()
