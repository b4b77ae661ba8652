"""Hot swap: new requests go to the new model, requests in flight finish whole on the old one."""

from __future__ import annotations

import gc
import itertools
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from inference_harness import Served, inference_threads, running, wait_for
from inference_models import INPUT_SIZE, ReferenceModel

from fedota.client.inference import Capability, GenerationParams, InferenceConfig
from fedota.protos.v1 import inference_pb2 as pb

pytestmark = pytest.mark.timeout(90)

ROWS = np.random.default_rng(5).normal(size=(8, INPUT_SIZE)).astype(np.float32)
PROMPTS = [GenerationParams(b"swap " * (i + 1), max_new_tokens=8 + 6 * i) for i in range(3)]
TEXTS = [["one"], ["two", "three"]]


def _generate(stub: object, params: GenerationParams) -> tuple[bytes, str, set[str]]:
    request = pb.GenerateRequest(prompt=params.prompt, max_new_tokens=params.max_new_tokens)
    chunks = list(stub.Generate(request))  # type: ignore[attr-defined]
    text = b"".join(c.token for c in chunks)
    return text, chunks[-1].finish_reason, {c.model_version for c in chunks}


def test_requests_in_flight_finish_on_the_old_model_and_new_ones_go_to_the_new() -> None:
    old, new = ReferenceModel("v1", seed=1), ReferenceModel("v2", seed=2)
    with running(old, config=InferenceConfig(max_wait=0)) as served, ThreadPoolExecutor(2) as pool:
        old.predict_gate.close()
        old.step_gate.close()
        predicting = pool.submit(served.stub.Predict, pb.PredictRequest(features=ROWS[0]))
        assert old.predict_gate.wait_arrivals(1)
        stream = served.stub.Generate(
            pb.GenerateRequest(prompt=PROMPTS[2].prompt, max_new_tokens=PROMPTS[2].max_new_tokens)
        )
        old.step_gate.allow(1)
        first_chunk = next(stream)

        released = served.server.swap(new)

        # The new model answers at once, while the old one still holds two requests.
        answer = served.stub.Predict(pb.PredictRequest(features=ROWS[1]))
        assert answer.model_version == "v2"
        np.testing.assert_allclose(answer.probabilities, new.predict_one(ROWS[1]), atol=1e-6)
        assert _generate(served.stub, PROMPTS[0]) == (*new.generate_alone(PROMPTS[0]), {"v2"})
        assert not released.done and old.closed == 0

        old.predict_gate.open()
        old.step_gate.open()
        held = predicting.result(30)
        rest = list(stream)
        assert released.wait(10)

    assert held.model_version == "v1"
    np.testing.assert_allclose(held.probabilities, old.predict_one(ROWS[0]), atol=1e-6)
    chunks = [first_chunk, *rest]
    assert {c.model_version for c in chunks} == {"v1"}
    assert b"".join(c.token for c in chunks) == old.generate_alone(PROMPTS[2])[0]
    assert (old.closed, new.closed) == (1, 1)  # new was closed when the server stopped


def test_a_replaced_model_is_let_go_once_its_last_request_ends() -> None:
    with running(None) as served:
        model = ReferenceModel("v1", seed=1)
        alive = weakref.ref(model)
        served.server.swap(model)
        del model
        served.stub.Predict(pb.PredictRequest(features=ROWS[0]))
        list(served.stub.Generate(pb.GenerateRequest(prompt=b"a", max_new_tokens=3)))

        assert served.server.swap(ReferenceModel("v2", seed=2)).wait(10)
        gc.collect()

        assert alive() is None
        assert served.stub.Predict(pb.PredictRequest(features=ROWS[0])).model_version == "v2"


def test_repeated_swaps_under_concurrent_load_fail_no_request() -> None:
    models = [ReferenceModel(f"v{i}", seed=10 + i) for i in range(6)]
    expected_predict = {m.info.version: [m.predict_one(r) for r in ROWS] for m in models}
    expected_generate = {m.info.version: [m.generate_alone(p) for p in PROMPTS] for m in models}
    flat_texts = list(itertools.chain(*TEXTS))
    expected_embed = {m.info.version: [m.embed_one(t) for t in flat_texts] for m in models}
    failures: list[BaseException] = []
    done = threading.Event()
    counter = itertools.count()
    completed = [0]

    def hammer(call: Callable[[int], None]) -> None:
        for n in itertools.count():
            if done.is_set():
                return
            try:
                call(n)
            except BaseException as exc:
                failures.append(exc)
                return
            completed[0] = next(counter)

    def predict(n: int) -> None:
        answer = served.stub.Predict(pb.PredictRequest(features=ROWS[n % len(ROWS)]))
        answered.add(answer.model_version)
        want = expected_predict[answer.model_version][n % len(ROWS)]
        np.testing.assert_allclose(answer.probabilities, want, atol=1e-6)

    def generate(n: int) -> None:
        text, reason, versions = _generate(served.stub, PROMPTS[n % len(PROMPTS)])
        assert len(versions) == 1, f"one stream mixed versions {versions}"
        assert (text, reason) == expected_generate[versions.pop()][n % len(PROMPTS)]

    def embed(n: int) -> None:
        texts = TEXTS[n % 2]
        answer = served.stub.Embed(pb.EmbedRequest(texts=texts))
        offset = 0 if n % 2 == 0 else 1
        for i, vector in enumerate(answer.embeddings):
            want = expected_embed[answer.model_version][offset + i]
            assert np.array_equal(np.asarray(vector.values, dtype=np.float32), want)

    answered: set[str] = set()
    config = InferenceConfig(max_wait=0.001, max_queue=256)
    with running(models[0], config=config) as served:
        workers = [predict] * 6 + [generate] * 3 + [embed] * 2
        threads = [threading.Thread(target=hammer, args=(w,)) for w in workers]
        for thread in threads:
            thread.start()
        try:
            releases = []
            for model in models[1:]:
                wait_for(lambda mark=completed[0]: completed[0] >= mark + 50 or bool(failures))
                releases.append(served.server.swap(model))
            wait_for(lambda mark=completed[0]: completed[0] >= mark + 50 or bool(failures))
        finally:
            done.set()
            for thread in threads:
                thread.join(30)
        assert all(release.wait(10) for release in releases)

    assert not failures, failures[:3]
    assert answered == {m.info.version for m in models}
    assert [m.closed for m in models] == [1] * 6
    assert not inference_threads()


def test_a_model_that_fails_to_start_leaves_the_old_one_serving() -> None:
    class Unstartable(ReferenceModel):
        def new_engine(self):  # type: ignore[no-untyped-def]
            raise MemoryError("no room for the KV cache")

    with running(ReferenceModel("v1", seed=1)) as served:
        with pytest.raises(MemoryError):
            served.server.swap(Unstartable("v2", seed=2))

        assert served.server.model_version == "v1"
        assert served.stub.Predict(pb.PredictRequest(features=ROWS[0])).model_version == "v1"
    assert not inference_threads()


def test_before_the_first_model_calls_answer_unavailable(served_empty: Served) -> None:
    with pytest.raises(grpc.RpcError) as error:
        served_empty.stub.Predict(pb.PredictRequest(features=ROWS[0]))
    assert error.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "no model is loaded yet" in error.value.details()

    released = served_empty.server.swap(ReferenceModel("v1", 1, {Capability.PREDICT}))

    assert released.done  # nothing was replaced
    assert served_empty.stub.Predict(pb.PredictRequest(features=ROWS[0])).model_version == "v1"


@pytest.fixture
def served_empty() -> Iterator[Served]:
    with running(None) as served:
        yield served
