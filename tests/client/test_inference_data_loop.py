"""ModelInfo, and the data loop: examples and feedback reach the real example store, scrubbed."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from inference_harness import Served, example_store, running
from inference_models import CLASSES, INPUT_SIZE, ReferenceModel

from fedota.client.data import ExampleStore
from fedota.client.inference import Capability, UnknownPrediction
from fedota.client.inference.predictions import PredictionCache
from fedota.protos.v1 import inference_pb2 as pb

pytestmark = pytest.mark.timeout(60)

DIGITS = tuple(f"digit-{i}" for i in range(CLASSES))
ROW = np.linspace(0, 16, INPUT_SIZE, dtype=np.float32)


@pytest.fixture
def store() -> Iterator[ExampleStore]:
    with example_store() as store:
        yield store


@pytest.fixture
def model() -> ReferenceModel:
    return ReferenceModel("v7", 1, {Capability.PREDICT, Capability.EMBED}, labels=DIGITS)


@pytest.fixture
def served(model: ReferenceModel, store: ExampleStore) -> Iterator[Served]:
    with running(model, examples=store) as served:
        yield served


def _code(call: object, request: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as error:
        call(request, timeout=10)  # type: ignore[operator]
    return error.value.code(), error.value.details()


def test_model_info_names_the_model_and_the_process_memory(
    served: Served, model: ReferenceModel
) -> None:
    info = served.stub.ModelInfo(pb.ModelInfoRequest())

    assert (info.version, info.variant, info.architecture) == (
        "v7",
        "fp32",
        model.info.architecture,
    )
    assert info.weight_bytes == model.info.weight_bytes > 0
    assert info.rss_bytes > 10 * 1024 * 1024  # this process holds torch
    assert list(info.capabilities) == ["embed", "predict"]
    assert (info.input_size, tuple(info.labels)) == (INPUT_SIZE, DIGITS)


def test_a_prediction_names_its_class(served: Served, model: ReferenceModel) -> None:
    answer = served.stub.Predict(pb.PredictRequest(features=ROW))

    label = int(np.argmax(model.predict_one(ROW)))
    assert (answer.label, answer.label_name) == (label, DIGITS[label])
    assert sum(answer.probabilities) == pytest.approx(1.0, abs=1e-5)
    assert len(answer.prediction_id) == 32


def test_a_submitted_text_is_stored_desensitised(served: Served, store: ExampleStore) -> None:
    text = "ask Alice at alice@example.com or +44 20 7946 0958"
    reply = served.stub.SubmitExample(pb.SubmitExampleRequest(label="contact", text=text))

    (stored,) = store.examples()
    assert stored.id == reply.example_id
    assert (stored.label, stored.source) == ("contact", "app")
    assert "alice" not in stored.text.lower() and "7946" not in stored.text
    assert "<EMAIL>" in stored.text and "<NAME>" in stored.text


def test_submitted_features_are_stored_as_given(served: Served, store: ExampleStore) -> None:
    request = pb.SubmitExampleRequest(label="7", features=pb.FeatureVector(values=[0.5, 2.0]))
    reply = served.stub.SubmitExample(request)

    (stored,) = store.examples()
    assert (stored.id, stored.label, stored.features) == (reply.example_id, "7", (0.5, 2.0))


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (pb.SubmitExampleRequest(label="x"), "an example needs its input: text or features"),
        (pb.SubmitExampleRequest(label=" ", text="hi"), "label must not be empty or blank"),
        (pb.SubmitExampleRequest(label="x", text=""), "text must not be empty or blank"),
        (pb.SubmitExampleRequest(label="x" * 300, text="hi"), "label is 300 characters"),
        (
            pb.SubmitExampleRequest(label="x", features=pb.FeatureVector(values=[float("nan")])),
            "features[0] must be finite",
        ),
    ],
    ids=["no input", "blank label", "empty text", "long label", "nan feature"],
)
def test_invalid_examples_answer_invalid_argument(
    served: Served, store: ExampleStore, request_: pb.SubmitExampleRequest, message: str
) -> None:
    code, details = _code(served.stub.SubmitExample, request_)

    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert message in details
    assert list(store.examples()) == []


def test_feedback_stores_the_predictions_input_once(served: Served, store: ExampleStore) -> None:
    prediction = served.stub.Predict(pb.PredictRequest(features=ROW))
    feedback = pb.SubmitFeedbackRequest(
        prediction_id=prediction.prediction_id, correct_label="digit-3"
    )

    reply = served.stub.SubmitFeedback(feedback)

    (stored,) = store.examples()
    assert (stored.id, stored.label, stored.source) == (reply.example_id, "digit-3", "feedback")
    assert np.array_equal(np.asarray(stored.features, dtype=np.float32), ROW)
    code, details = _code(served.stub.SubmitFeedback, feedback)
    assert code is grpc.StatusCode.NOT_FOUND
    assert "feedback is accepted once per prediction" in details


def test_feedback_with_a_label_the_model_lacks_is_refused_and_can_be_corrected(
    served: Served, store: ExampleStore
) -> None:
    prediction = served.stub.Predict(pb.PredictRequest(features=ROW))
    wrong = pb.SubmitFeedbackRequest(prediction_id=prediction.prediction_id, correct_label="cat")

    code, details = _code(served.stub.SubmitFeedback, wrong)

    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "correct_label 'cat' is not a class of model v7 (classes: digit-0," in details
    right = pb.SubmitFeedbackRequest(
        prediction_id=prediction.prediction_id, correct_label="digit-1"
    )
    assert served.stub.SubmitFeedback(right).example_id > 0


def test_feedback_on_an_unknown_prediction_answers_not_found(served: Served) -> None:
    request = pb.SubmitFeedbackRequest(prediction_id="f" * 32, correct_label="digit-1")

    assert _code(served.stub.SubmitFeedback, request)[0] is grpc.StatusCode.NOT_FOUND


def test_without_an_example_store_submissions_answer_unimplemented(model: ReferenceModel) -> None:
    with running(model) as served:
        request = pb.SubmitExampleRequest(label="x", text="hello")
        code, details = _code(served.stub.SubmitExample, request)

    assert code is grpc.StatusCode.UNIMPLEMENTED
    assert details == "this daemon keeps no examples (no example store is configured)"


def test_the_prediction_cache_forgets_by_age_count_and_bytes() -> None:
    now = [0.0]
    cache = PredictionCache(capacity=3, ttl=60, max_bytes=4 * 40, clock=lambda: now[0])
    small = np.zeros(10, dtype=np.float32)  # 40 bytes

    ids = [cache.add(small, ("a",), "v1") for _ in range(4)]
    with pytest.raises(UnknownPrediction):
        cache.take(ids[0])  # the oldest went when a fourth came
    assert cache.take(ids[1]).model_version == "v1"

    big = cache.add(np.zeros(30, dtype=np.float32), ("a",), "v1")  # 120 bytes: evicts by size
    assert len(cache) == 2
    with pytest.raises(UnknownPrediction):
        cache.take(ids[2])

    now[0] = 61.0
    with pytest.raises(UnknownPrediction, match="within 60s"):
        cache.take(big)
    assert len(cache) == 0
