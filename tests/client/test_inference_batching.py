"""Dynamic batching: batched answers are the model's own answers, batches form and stay bounded."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from inference_harness import running, wait_for
from inference_models import INPUT_SIZE, Gate, ReferenceModel

from fedota.client.inference import InferenceConfig, ModelFailed, Overloaded, Stopping
from fedota.client.inference.batching import Batcher
from fedota.protos.v1 import inference_pb2 as pb

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def model() -> ReferenceModel:
    return ReferenceModel("v1", seed=1)


@pytest.mark.parametrize("max_batch", [16, 1], ids=["batched", "one-at-a-time"])
def test_predict_answers_are_the_models_own_whatever_the_batch(
    model: ReferenceModel, max_batch: int
) -> None:
    rows = np.random.default_rng(7).normal(size=(16, INPUT_SIZE)).astype(np.float32)
    config = InferenceConfig(max_batch=max_batch, max_wait=0.05)
    with running(model, config=config) as served, ThreadPoolExecutor(16) as pool:
        model.predict_gate.close()
        first = pool.submit(served.stub.Predict, pb.PredictRequest(features=rows[0]))
        assert model.predict_gate.wait_arrivals(1)
        rest = [pool.submit(served.stub.Predict, pb.PredictRequest(features=r)) for r in rows[1:]]
        wait_for(lambda: served.server.queued()["predict"] == 15)
        model.predict_gate.open()
        answers = [f.result(30) for f in [first, *rest]]

    sizes = [len(batch) for batch, _ in model.predict_calls]
    assert sizes == ([1, 15] if max_batch == 16 else [1] * 16)
    for row, answer in zip(rows, answers, strict=True):
        # Exactly the row of the batch output the model computed for this input ...
        (_batch, out), index = next(
            (
                (call, i)
                for call in model.predict_calls
                for i, r in enumerate(call[0])
                if (r == row).all()
            )
        )
        assert np.array_equal(np.asarray(answer.probabilities, dtype=np.float32), out[index])
        # ... which is the one-at-a-time answer up to the float kernels' batch-size rounding.
        alone = model.predict_one(row)
        np.testing.assert_allclose(answer.probabilities, alone, rtol=0, atol=1e-6)
        assert answer.label == int(np.argmax(alone))
        assert answer.model_version == "v1"


def test_embed_batches_texts_of_several_requests_and_splits_them_back(
    model: ReferenceModel,
) -> None:
    requests = [
        ["a"],
        ["bb", "ccc"],
        ["dddd"] * 3,
        ["héllo wörld", "x", "y y"],
        [str(i) for i in range(10)],
    ]
    config = InferenceConfig(max_batch=8, max_wait=0.05)
    with running(model, config=config) as served, ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(served.stub.Embed, pb.EmbedRequest(texts=t)) for t in requests]
        answers = [f.result(30) for f in futures]

    for texts, answer in zip(requests, answers, strict=True):
        assert len(answer.embeddings) == len(texts)
        for text, vector in zip(texts, answer.embeddings, strict=True):
            assert np.array_equal(
                np.asarray(vector.values, dtype=np.float32), model.embed_one(text)
            )
    # A request of more texts than max_batch runs alone; no other batch exceeds max_batch.
    assert 10 in model.embed_batches
    assert all(size <= 8 for size in model.embed_batches if size != 10)
    assert sum(model.embed_batches) == sum(len(t) for t in requests)


def _batcher(
    run: Callable[[Sequence[int]], Sequence[int]], max_batch: int = 4, max_queue: int = 16
) -> Batcher[int, int]:
    return Batcher("test", run, max_batch=max_batch, max_wait=0.05, max_queue=max_queue)


def test_batches_fill_up_to_max_batch_in_arrival_order() -> None:
    gate, seen = Gate(), []

    def run(values: Sequence[int]) -> list[int]:
        gate.enter()
        seen.append(list(values))
        return [v * 10 for v in values]

    batcher = _batcher(run, max_batch=4)
    try:
        gate.close()
        futures = [batcher.submit(0)]
        assert gate.wait_arrivals(1)
        futures += [batcher.submit(v) for v in range(1, 8)]
        gate.open()
        assert [f.result(10) for f in futures] == [v * 10 for v in range(8)]
    finally:
        batcher.close()
        assert batcher.join(5)
    assert seen == [[0], [1, 2, 3, 4], [5, 6, 7]]


def test_a_request_cancelled_while_waiting_is_left_out_of_its_batch() -> None:
    gate, seen = Gate(), []

    def run(values: Sequence[int]) -> list[int]:
        gate.enter()
        seen.append(list(values))
        return list(values)

    batcher = _batcher(run)
    try:
        gate.close()
        first = batcher.submit(0)
        assert gate.wait_arrivals(1)
        gone, kept = batcher.submit(1), batcher.submit(2)
        assert gone.cancel()
        gate.open()
        assert (first.result(10), kept.result(10)) == (0, 2)
    finally:
        batcher.close()
        assert batcher.join(5)
    assert seen == [[0], [2]]


def test_the_batcher_waits_for_the_company_it_expects_and_a_lone_caller_for_none() -> None:
    gate, seen = Gate(), []

    def run(values: Sequence[int]) -> list[int]:
        gate.enter()
        seen.append(list(values))
        return list(values)

    # max_wait far beyond the test's deadlines: any wait that happens lasts until company comes.
    batcher = Batcher("test", run, max_batch=8, max_wait=300.0, max_queue=16)
    try:
        assert batcher.submit(0).result(10) == 0  # nobody expected: not held
        gate.close()
        alone = batcher.submit(1)
        assert gate.wait_arrivals(2)
        wave = [batcher.submit(v) for v in (2, 3, 4)]
        gate.open()
        assert [f.result(10) for f in [alone, *wave]] == [1, 2, 3, 4]
        # The last batch held three, so the next waits for three.
        futures = [batcher.submit(v) for v in (5, 6, 7)]
        assert [f.result(10) for f in futures] == [5, 6, 7]
    finally:
        batcher.close()
        assert batcher.join(5)
    assert seen == [[0], [1], [2, 3, 4], [5, 6, 7]]


@pytest.mark.parametrize(
    "run",
    [lambda values: 1 / 0, lambda values: list(values)[:-1]],
    ids=["model raises", "wrong number of outputs"],
)
def test_a_failed_batch_fails_each_of_its_requests_as_model_failed(
    run: Callable[[Sequence[int]], Sequence[int]],
) -> None:
    batcher = _batcher(run, max_batch=1)
    try:
        futures = [batcher.submit(v) for v in range(3)]
        for future in futures:
            with pytest.raises(ModelFailed, match="model failed"):
                future.result(10)
    finally:
        batcher.close()
        assert batcher.join(5)


def test_a_full_queue_refuses_at_once_and_close_fails_the_waiting() -> None:
    gate = Gate()

    def run(values: Sequence[int]) -> list[int]:
        gate.enter()
        return list(values)

    batcher = _batcher(run, max_batch=1, max_queue=2)
    gate.close()
    running_one = batcher.submit(0)
    assert gate.wait_arrivals(1)
    waiting = [batcher.submit(1), batcher.submit(2)]
    with pytest.raises(Overloaded, match=r"queue is full \(2 requests waiting\)"):
        batcher.submit(3)

    batcher.close()
    gate.open()
    assert running_one.result(10) == 0
    for future in waiting:
        with pytest.raises(Stopping):
            future.result(10)
    with pytest.raises(Stopping):
        batcher.submit(4)
    assert batcher.join(5)


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_batch", 0), ("max_wait", -1.0), ("max_queue", 0), ("max_workers", 0), ("stop_grace", 0)],
)
def test_the_config_refuses_limits_that_cannot_work(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"InferenceConfig.{field} must be"):
        InferenceConfig(**{field: value})
