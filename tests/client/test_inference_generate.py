"""Generate: streams carry what the engine makes, sequences share steps, a gone caller cancels."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from inference_harness import Served, running, wait_for
from inference_models import ReferenceModel

from fedota.client.inference import GenerationParams, InferenceConfig
from fedota.protos.v1 import inference_pb2 as pb

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def model() -> ReferenceModel:
    return ReferenceModel("v1", seed=3, engine_batch=8)


@pytest.fixture
def served(model: ReferenceModel) -> Iterator[Served]:
    with running(model, config=InferenceConfig(max_prompt_bytes=64, max_new_tokens=500)) as s:
        yield s


def _request(params: GenerationParams) -> pb.GenerateRequest:
    request = pb.GenerateRequest(
        prompt=params.prompt,
        max_new_tokens=params.max_new_tokens,
        temperature=params.temperature,
        stop=params.stop or b"",
    )
    if params.seed is not None:
        request.seed = params.seed
    return request


def _collect(chunks: Iterator[pb.GenerateChunk]) -> tuple[bytes, str, set[str], int]:
    """Text, finish reason, versions seen, and how many chunks were marked finished."""
    text, reason, versions, finished = b"", "", set(), 0
    for chunk in chunks:
        text += chunk.token
        versions.add(chunk.model_version)
        finished += chunk.finished
        reason = chunk.finish_reason or reason
    return text, reason, versions, finished


GREEDY = GenerationParams(b"Once upon", max_new_tokens=40)


@pytest.mark.parametrize(
    "params",
    [
        GenerationParams(b"x", max_new_tokens=1),
        GREEDY,
        GenerationParams(b"Once upon", max_new_tokens=30, temperature=0.9, seed=11),
    ],
    ids=["one token", "greedy", "seeded sampling"],
)
def test_a_stream_carries_exactly_what_the_engine_makes_alone(
    served: Served, model: ReferenceModel, params: GenerationParams
) -> None:
    text, reason, versions, finished = _collect(served.stub.Generate(_request(params)))

    assert (text, reason) == model.generate_alone(params)
    assert versions == {"v1"}
    assert finished == 1


def test_a_stop_sequence_ends_the_stream_where_it_appears(
    served: Served, model: ReferenceModel
) -> None:
    full, _ = model.generate_alone(GREEDY)
    stop = full[10:13]
    params = GenerationParams(GREEDY.prompt, GREEDY.max_new_tokens, stop=stop)

    text, reason, _, _ = _collect(served.stub.Generate(_request(params)))

    assert reason == "stop"
    assert text.endswith(stop) and len(text) <= 13
    assert (text, reason) == model.generate_alone(params)


def test_concurrent_streams_of_different_lengths_share_engine_steps(
    served: Served, model: ReferenceModel
) -> None:
    requests = [
        GenerationParams(bytes([65 + i]) * (i + 1), max_new_tokens=5 + 7 * i) for i in range(6)
    ]
    model.step_gate.close()
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(lambda: _collect(served.stub.Generate(_request(requests[0]))))
        assert model.step_gate.wait_arrivals(1)  # the engine thread is inside its first step
        rest = [
            pool.submit(lambda p=p: _collect(served.stub.Generate(_request(p))))
            for p in requests[1:]
        ]
        wait_for(lambda: served.server.queued()["generate"] == 5)
        model.step_gate.open()
        results = [f.result(30) for f in [first, *rest]]

    for params, (text, reason, versions, _) in zip(requests, results, strict=True):
        assert (text, reason) == model.generate_alone(params)
        assert versions == {"v1"}
    (engine,) = model.engines
    assert max(engine.batch_sizes) == 6  # all six decoded in one step, whatever their lengths
    assert len(engine.thread_ids) == 1  # one thread drives the engine ...
    assert threading.get_ident() not in engine.thread_ids  # ... and it is not a caller's


def test_a_caller_that_goes_away_cancels_its_sequence(
    served: Served, model: ReferenceModel
) -> None:
    model.step_gate.close()
    call = served.stub.Generate(_request(GenerationParams(b"long", max_new_tokens=500)))
    model.step_gate.allow(3)
    received = b""
    while len(received) < 3:  # three tokens, in one to three chunks
        chunk = next(call)
        assert not chunk.finished
        received += chunk.token

    call.cancel()
    model.step_gate.open()

    (engine,) = model.engines
    wait_for(lambda: engine.cancelled == [1])
    wait_for(lambda: engine.active == 0 and engine.waiting == 0)
    # The engine is free again: a new request streams to its end.
    text, reason, _, _ = _collect(served.stub.Generate(_request(GREEDY)))
    assert (text, reason) == model.generate_alone(GREEDY)


def test_a_full_admission_queue_and_a_full_engine_answer_resource_exhausted() -> None:
    model = ReferenceModel("v1", seed=3, engine_batch=1)
    config = InferenceConfig(max_generate_pending=1)
    with running(model, config=config) as served, ThreadPoolExecutor(2) as pool:
        model.step_gate.close()
        first = served.stub.Generate(_request(GREEDY))
        model.step_gate.allow(1)
        assert next(first).model_version == "v1"  # admitted: the engine (room for 1) is full
        assert model.step_gate.wait_arrivals(2)  # the engine thread waits inside its next step

        # A second request waits for the engine thread; a third finds that queue full.
        second = pool.submit(lambda: next(served.stub.Generate(_request(GREEDY))))
        wait_for(lambda: served.server.queued()["generate"] == 1)
        with pytest.raises(grpc.RpcError) as queued:
            next(served.stub.Generate(_request(GREEDY)))
        assert queued.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "1 generation requests are already waiting" in queued.value.details()

        # Between two steps the engine thread hands the second to the engine, which is full.
        model.step_gate.allow(1)
        with pytest.raises(grpc.RpcError) as full:
            second.result(30)
        assert full.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "the engine holds 1 sequences" in full.value.details()

        model.step_gate.open()
        assert _collect(first)[1] == "length"


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (pb.GenerateRequest(prompt=b"", max_new_tokens=5), "the prompt must not be empty"),
        (pb.GenerateRequest(prompt=b"x" * 65, max_new_tokens=5), "65 bytes, over the limit of 64"),
        (pb.GenerateRequest(prompt=b"x", max_new_tokens=0), "max_new_tokens must be 1 to 500"),
        (pb.GenerateRequest(prompt=b"x", max_new_tokens=501), "max_new_tokens must be 1 to 500"),
        (
            pb.GenerateRequest(prompt=b"x", max_new_tokens=5, temperature=-0.5),
            "temperature must be a finite number >= 0, got -0.5",
        ),
        (
            pb.GenerateRequest(prompt=b"x", max_new_tokens=5, temperature=float("nan")),
            "temperature must be a finite number >= 0, got nan",
        ),
    ],
    ids=["empty", "long prompt", "no tokens", "too many tokens", "negative t", "nan t"],
)
def test_invalid_requests_answer_invalid_argument_with_the_rule(
    served: Served, request_: pb.GenerateRequest, message: str
) -> None:
    with pytest.raises(grpc.RpcError) as error:
        next(served.stub.Generate(request_))

    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.value.details()


def test_an_engine_that_fails_ends_its_streams_with_internal_and_no_trace(
    served: Served, model: ReferenceModel
) -> None:
    model.step_gate.close()
    call = served.stub.Generate(_request(GREEDY))
    model.step_gate.allow(1)
    next(call)
    (engine,) = model.engines
    engine.broken = True
    model.step_gate.open()

    with pytest.raises(grpc.RpcError) as failed:
        list(call)
    assert failed.value.code() is grpc.StatusCode.INTERNAL
    assert failed.value.details() == "the v1 generation engine failed (see the device log)"
    with pytest.raises(grpc.RpcError) as later:
        next(served.stub.Generate(_request(GREEDY)))
    assert later.value.code() is grpc.StatusCode.INTERNAL
