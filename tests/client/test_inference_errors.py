"""Every failure answers its one status code with a one-line message, never a stack trace."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from inference_harness import Served, running
from inference_models import INPUT_SIZE, ReferenceModel

from fedota.client.data import InvalidExample, StoreError
from fedota.client.inference import (
    Capability,
    ErrorTable,
    InferenceConfig,
    InvalidInput,
    ModelFailed,
    NoModel,
    Overloaded,
    Stopping,
    StoreFailed,
    TimedOut,
    UnknownPrediction,
    Unsupported,
    status_of,
)
from fedota.protos.v1 import inference_pb2 as pb

pytestmark = pytest.mark.timeout(60)

ROW = [0.25] * INPUT_SIZE


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidInput("bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (Overloaded("full"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (Unsupported("no"), grpc.StatusCode.UNIMPLEMENTED),
        (NoModel("none"), grpc.StatusCode.UNAVAILABLE),
        (Stopping("bye"), grpc.StatusCode.UNAVAILABLE),
        (StoreFailed("disk"), grpc.StatusCode.UNAVAILABLE),
        (UnknownPrediction("who"), grpc.StatusCode.NOT_FOUND),
        (TimedOut("slow"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (ModelFailed("boom"), grpc.StatusCode.INTERNAL),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else "",
)
def test_each_error_type_answers_its_status_code(error: Exception, code: grpc.StatusCode) -> None:
    assert status_of(error) == (code, str(error))


def test_a_foreign_exception_answers_internal_without_its_details() -> None:
    code, message = status_of(KeyError("/secret/path"))

    assert code is grpc.StatusCode.INTERNAL
    assert "secret" not in message and "see the device log" in message


def test_a_multi_line_message_is_sent_on_one_line() -> None:
    assert status_of(InvalidInput("first\n  second"))[1] == "first second"


@pytest.mark.parametrize(
    ("error", "translated"),
    [
        (InvalidExample("label", "label must not be empty"), InvalidInput),
        (StoreError("the example store is locked"), StoreFailed),
        (ZeroDivisionError("x"), ZeroDivisionError),
    ],
    ids=["invalid example", "store error", "unknown"],
)
def test_the_error_table_translates_the_stores_typed_errors(
    error: Exception, translated: type[Exception]
) -> None:
    result = ErrorTable().translate(error)

    assert type(result) is translated
    assert str(result) == str(error)


def test_the_error_table_knows_the_engines_errors_once_they_exist() -> None:
    lm = pytest.importorskip("fedota.ml.lm", reason="fedota.ml.lm is not built yet")
    table = ErrorTable()
    assert isinstance(table.translate(lm.EngineFull("full")), Overloaded)
    assert isinstance(table.translate(lm.InvalidRequest("bad")), InvalidInput)


class Failing(ReferenceModel):
    def predict(self, batch: np.ndarray) -> np.ndarray:
        raise ZeroDivisionError("weights at /secret/model.safetensors")


@pytest.fixture
def predictor() -> Iterator[Served]:
    model = ReferenceModel("v1", 1, {Capability.PREDICT})
    config = InferenceConfig(max_embed_texts=3, max_text_bytes=8)
    with running(model, config=config) as served:
        yield served


def _fails(call: object, request: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        result = call(request, timeout=10)  # type: ignore[operator]
        if not isinstance(result, pb.PredictResponse | pb.EmbedResponse):
            next(result)
    return error.value


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ([], "model v1 takes 64 features, got 0"),
        ([1.0] * 65, "model v1 takes 64 features, got 65"),
        ([*ROW[:-1], float("nan")], "features must be finite; feature 63 is nan"),
        ([float("inf"), *ROW[1:]], "features must be finite; feature 0 is inf"),
    ],
    ids=["empty", "too many", "nan", "inf"],
)
def test_bad_features_answer_invalid_argument(
    predictor: Served, features: list[float], message: str
) -> None:
    error = _fails(predictor.stub.Predict, pb.PredictRequest(features=features))

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == message


@pytest.mark.parametrize(
    ("call", "request_"),
    [
        ("Embed", pb.EmbedRequest(texts=["a"])),
        ("Generate", pb.GenerateRequest(prompt=b"a", max_new_tokens=1)),
    ],
)
def test_what_the_model_cannot_do_answers_unimplemented(
    predictor: Served, call: str, request_: object
) -> None:
    error = _fails(getattr(predictor.stub, call), request_)

    assert error.code() is grpc.StatusCode.UNIMPLEMENTED
    verb = call.lower()
    assert error.details() == f"model v1 cannot {verb} (it offers: predict)"


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ([], "Embed takes 1 to 3 texts, got 0"),
        (["a", "b", "c", "d"], "Embed takes 1 to 3 texts, got 4"),
        (["short", "éééé€"], "text 1 is 11 bytes of UTF-8, over the limit of 8"),
    ],
    ids=["none", "too many", "too long"],
)
def test_bad_embed_requests_answer_invalid_argument(texts: list[str], message: str) -> None:
    config = InferenceConfig(max_embed_texts=3, max_text_bytes=8)
    with running(ReferenceModel("v1", seed=1), config=config) as served:
        error = _fails(served.stub.Embed, pb.EmbedRequest(texts=texts))

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == message


def test_a_model_that_raises_answers_internal_and_keeps_its_secrets() -> None:
    with running(Failing("v1", seed=1)) as served:
        error = _fails(served.stub.Predict, pb.PredictRequest(features=ROW))
        # The failure is the model's alone: the next request is served again.
        assert served.stub.Embed(pb.EmbedRequest(texts=["fine"])).model_version == "v1"

    assert error.code() is grpc.StatusCode.INTERNAL
    assert error.details() == "the model failed on v1 predict"
    assert "secret" not in (error.debug_error_string() or "")
