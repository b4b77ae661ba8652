"""Generate streams in chunks: the first token at once, then several per message, in order."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest
from inference_harness import Served, running
from inference_models import ReferenceModel

from fedota.client.inference import GenerationParams, InferenceConfig, service
from fedota.client.inference.generation import GenerationDriver, Token, TokenStream
from fedota.protos.v1 import inference_pb2 as pb

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def model() -> ReferenceModel:
    return ReferenceModel("v1", seed=3, engine_batch=8)


@pytest.fixture
def served(model: ReferenceModel) -> Iterator[Served]:
    with running(model, config=InferenceConfig(max_new_tokens=500)) as s:
        yield s


def _stream() -> TokenStream:
    return TokenStream(cast(GenerationDriver, None))  # the driver is needed by cancel() only


def test_the_first_token_goes_out_alone_and_the_rest_in_chunks(
    served: Served, model: ReferenceModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only a full chunk or the end sends, so the chunk sizes do not depend on timing.
    monkeypatch.setattr(service, "CHUNK_INTERVAL", 60.0)
    monkeypatch.setattr(service, "CHUNK_TOKENS", 8)
    params = GenerationParams(b"Once upon", max_new_tokens=30)
    expected, reason = model.generate_alone(params)
    model.step_gate.close()
    call = served.stub.Generate(pb.GenerateRequest(prompt=params.prompt, max_new_tokens=30))
    model.step_gate.allow(1)

    first = next(call)  # sent while the engine is held after its first step
    assert len(first.token) == 1 and not first.finished
    model.step_gate.open()
    rest: list[Any] = list(call)

    assert first.token + b"".join(c.token for c in rest) == expected
    assert [c.finished for c in rest] == [False] * (len(rest) - 1) + [True]
    assert rest[-1].finish_reason == reason
    assert all(len(c.token) == 8 for c in rest[:-1]) and len(rest[-1].token) <= 8
    assert {c.model_version for c in [first, *rest]} == {"v1"}


def test_a_chunk_takes_what_is_queued_up_to_its_bound() -> None:
    stream = _stream()
    for byte in b"abcde":
        stream._put(Token(bytes([byte]), finished=False))
    assert stream.next_group(1.0, max_events=3) == [Token(bytes([b]), False) for b in b"abc"]
    # A hold that has passed waits for nothing: what is there goes.
    assert [t.token for t in stream.next_group(1.0, max_events=3, hold_until=0.0)] == [b"d", b"e"]
    assert stream.next_group(0.01, max_events=3) == []  # nothing came in time


def test_a_held_chunk_goes_as_soon_as_the_last_token_comes() -> None:
    stream = _stream()
    stream._put(Token(b"a", finished=False))

    def finish() -> None:  # before or during the reader's hold: either way it ends it
        stream._put(Token(b"b", finished=True, reason="length"))

    finisher = threading.Thread(target=finish)
    finisher.start()
    try:
        # Held for company for up to an hour, but the last token ends the wait.
        events = stream.next_group(1.0, max_events=64, hold_until=time.monotonic() + 3600)
    finally:
        finisher.join()
    assert [(t.token, t.finished) for t in events] == [(b"a", False), (b"b", True)]
    assert stream.done.is_set()
