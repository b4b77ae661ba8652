"""GenerationEngine: batching does not change a sequence, cancel, bounds, and request checks."""

from __future__ import annotations

import copy
from collections import defaultdict

import pytest
import torch

from fedota.ml.lm import (
    ByteLM,
    EngineFull,
    GenerationEngine,
    GenerationRequest,
    InvalidRequest,
    LMConfig,
    TokenEvent,
)
from fedota.ml.quant import quantize_model

PROMPTS = [b"12+30=", b"the device ", b"4 5 6", b"abcab", b"a sensor measures the temperature "]


def _drain(engine: GenerationEngine, limit: int = 500) -> dict[int, list[TokenEvent]]:
    events: dict[int, list[TokenEvent]] = defaultdict(list)
    for _ in range(limit):
        if not (engine.active or engine.waiting):
            return events
        for event in engine.step():
            events[event.seq_id].append(event)
    raise AssertionError("generation did not finish")


def _text(events: list[TokenEvent]) -> bytes:
    return b"".join(e.token for e in events)


def _alone(model: torch.nn.Module, request: GenerationRequest) -> bytes:
    engine = GenerationEngine(model, max_batch=1)
    seq = engine.submit(request)
    return _text(_drain(engine)[seq])


@pytest.mark.parametrize("variant", ["fp32", "int8", "int4"])
def test_greedy_output_is_the_same_alone_or_batched(trained_lm: ByteLM, variant: str) -> None:
    model = trained_lm if variant == "fp32" else quantize_model(trained_lm, variant)  # type: ignore[arg-type]
    requests = [GenerationRequest(p, max_new_tokens=10 + 3 * i) for i, p in enumerate(PROMPTS)]
    engine = GenerationEngine(model, max_batch=3)  # two must wait, then join mid-flight
    ids = [engine.submit(r) for r in requests]
    events = _drain(engine)
    for seq, request in zip(ids, requests, strict=True):
        assert _text(events[seq]) == _alone(model, request), request.prompt


def test_torch_decode_path_batches_the_same_way(trained_lm: ByteLM) -> None:
    model = copy.deepcopy(trained_lm)
    model.use_native = False  # gathers keys through padded block tables with a mask
    requests = [GenerationRequest(p, max_new_tokens=12) for p in PROMPTS[:3]]
    engine = GenerationEngine(model, max_batch=3, block_size=4)
    ids = [engine.submit(r) for r in requests]
    events = _drain(engine)
    for seq, request in zip(ids, requests, strict=True):
        assert _text(events[seq]) == _alone(trained_lm, request)


def test_events_stream_one_byte_each_and_end_once(trained_lm: ByteLM) -> None:
    engine = GenerationEngine(trained_lm, max_batch=4)
    seq = engine.submit(GenerationRequest(b"1 2 3", max_new_tokens=7))
    events = _drain(engine)[seq]
    assert [e.finished for e in events] == [False] * 6 + [True]
    assert events[-1].reason == "length" and all(len(e.token) == 1 for e in events)
    assert engine.pool.free_blocks == engine.pool.num_blocks


def test_stop_sequence_ends_generation_after_it(trained_lm: ByteLM) -> None:
    free = _alone(trained_lm, GenerationRequest(b"the device ", max_new_tokens=30))
    stop = free[5:7]
    engine = GenerationEngine(trained_lm)
    seq = engine.submit(GenerationRequest(b"the device ", max_new_tokens=30, stop=stop))
    events = _drain(engine)[seq]
    assert _text(events).endswith(stop) and events[-1].reason == "stop"
    assert _text(events) == free[: free.index(stop) + len(stop)]


def test_seeded_sampling_is_reproducible_and_batch_independent(trained_lm: ByteLM) -> None:
    request = GenerationRequest(b"the ", max_new_tokens=20, temperature=1.0, seed=42)
    first = _alone(trained_lm, request)
    engine = GenerationEngine(trained_lm)
    seq = engine.submit(request)
    engine.submit(GenerationRequest(b"noise ", max_new_tokens=25, temperature=1.0, seed=1))
    assert _text(_drain(engine)[seq]) == first
    other = _alone(trained_lm, GenerationRequest(b"the ", 20, temperature=1.0, seed=43))
    assert other != first


def test_cancel_frees_the_sequence_and_reports_it(trained_lm: ByteLM) -> None:
    engine = GenerationEngine(trained_lm, max_batch=1)
    running = engine.submit(GenerationRequest(b"abc", max_new_tokens=50))
    queued = engine.submit(GenerationRequest(b"xyz", max_new_tokens=5))
    engine.step()
    assert (engine.active, engine.waiting) == (1, 1)
    engine.cancel(queued)
    engine.cancel(running)
    assert (engine.active, engine.waiting) == (0, 0)
    assert engine.pool.free_blocks == engine.pool.num_blocks
    events = engine.step()
    assert {(e.seq_id, e.finished, e.reason) for e in events} == {
        (queued, True, "cancelled"),
        (running, True, "cancelled"),
    }
    engine.cancel(running)  # finished or unknown ids are ignored
    engine.cancel(12345)
    assert engine.step() == []


def test_queue_is_bounded(trained_lm: ByteLM) -> None:
    engine = GenerationEngine(trained_lm, max_batch=2, max_waiting=1)
    for _ in range(3):
        engine.submit(GenerationRequest(b"a", max_new_tokens=4))
    with pytest.raises(EngineFull, match=r"0 active \+ 3 waiting reach the bound 3"):
        engine.submit(GenerationRequest(b"a", max_new_tokens=4))
    engine.step()
    assert (engine.active, engine.waiting) == (2, 1)
    with pytest.raises(EngineFull):
        engine.submit(GenerationRequest(b"a", max_new_tokens=4))
    _drain(engine)
    engine.submit(GenerationRequest(b"a", max_new_tokens=4))  # room again


def test_a_request_the_pool_can_never_hold_is_refused(trained_lm: ByteLM) -> None:
    engine = GenerationEngine(trained_lm, kv_blocks=2, block_size=4)
    with pytest.raises(EngineFull, match="needs 3 KV-cache blocks, the pool holds 2"):
        engine.submit(GenerationRequest(b"abcdef", max_new_tokens=4))


def test_admission_waits_for_cache_blocks(trained_lm: ByteLM) -> None:
    engine = GenerationEngine(trained_lm, max_batch=4, kv_blocks=3, block_size=4)
    first = engine.submit(GenerationRequest(b"abcdef", max_new_tokens=5))  # 3 blocks
    second = engine.submit(GenerationRequest(b"ab", max_new_tokens=2))  # 1 block
    engine.step()
    assert (engine.active, engine.waiting) == (1, 1)  # reserved blocks keep it waiting
    events = _drain(engine)
    assert events[first][-1].reason == "length" and events[second][-1].reason == "length"


def test_sliding_window_model_generates_past_its_window() -> None:
    torch.manual_seed(4)
    model = ByteLM(LMConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, window=8))
    engine = GenerationEngine(model, max_batch=2, kv_blocks=6, block_size=4)
    a = engine.submit(GenerationRequest(b"x" * 30, max_new_tokens=40))
    b = engine.submit(GenerationRequest(b"y" * 3, max_new_tokens=60))
    events = _drain(engine)
    assert len(_text(events[a])) == 40 and len(_text(events[b])) == 60
    assert _text(events[a]) == _alone(model, GenerationRequest(b"x" * 30, max_new_tokens=40))


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (GenerationRequest(b"", 5), "non-empty bytes"),
        (GenerationRequest("text", 5), "non-empty bytes"),  # type: ignore[arg-type]
        (GenerationRequest(b"a", 0), "max_new_tokens must be at least 1"),
        (GenerationRequest(b"a", 2.5), "max_new_tokens"),  # type: ignore[arg-type]
        (GenerationRequest(b"a", 5, temperature=-1.0), "temperature"),
        (GenerationRequest(b"a", 5, temperature=float("nan")), "temperature"),
        (GenerationRequest(b"a", 5, stop=b""), "stop must be"),
        (GenerationRequest(b"a" * 100, 29), "exceeds max_seq_len 128"),
    ],
)
def test_invalid_requests_are_refused(
    trained_lm: ByteLM, request_: GenerationRequest, message: str
) -> None:
    engine = GenerationEngine(trained_lm)
    with pytest.raises(InvalidRequest, match=message):
        engine.submit(request_)
    assert engine.waiting == 0


def test_engine_needs_a_byte_lm() -> None:
    with pytest.raises(ValueError, match="LMConfig"):
        GenerationEngine(torch.nn.Linear(2, 2))
