"""The LocalInference gRPC service: protobuf in and out, every error through `status_of`.

Handlers only convert messages and wait; the checks live in `ModelSlot`, the batching in
`Batcher`, the generation in `GenerationDriver`. Each call holds a lease on the model that was
current when it arrived, so its whole answer comes from one model version. A Generate stream
carries its tokens in order, several to a chunk once the first is out (`CHUNK_INTERVAL`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

import grpc
import numpy as np

from fedota.client.data import Example
from fedota.client.inference.config import InferenceConfig
from fedota.client.inference.errors import (
    Cancelled,
    InvalidInput,
    TimedOut,
    Unsupported,
    status_of,
)
from fedota.client.inference.examples import SOURCE_APP, SOURCE_FEEDBACK, ExampleSink
from fedota.client.inference.generation import Token
from fedota.client.inference.memory import process_rss
from fedota.client.inference.model import GenerationParams
from fedota.client.inference.predictions import Prediction, PredictionCache
from fedota.client.inference.swap import ModelHolder
from fedota.protos.v1 import inference_pb2 as pb
from fedota.protos.v1 import inference_pb2_grpc as pb_grpc

_R = TypeVar("_R")
# How often a waiting Generate handler looks whether its caller is still there, seconds.
_POLL = 0.25
# A Generate stream sends its first token at once, then what the engine made since the last
# chunk, at most every CHUNK_INTERVAL seconds (sooner when CHUNK_TOKENS are ready or the
# sequence ends). Each message costs the server ~0.14 ms of gRPC and handler CPU, as much as a
# batched decode step spends on a token; 25 ms keeps the text flowing at 40 updates a second.
CHUNK_INTERVAL = 0.025
CHUNK_TOKENS = 64


def _mapped(method: Callable[..., _R]) -> Callable[..., _R]:
    """Answer any exception of a unary handler with its status (never a stack trace)."""

    @functools.wraps(method)
    def handler(self: LocalInferenceService, request: Any, context: grpc.ServicerContext) -> _R:
        try:
            return method(self, request, context)
        except Exception as exc:
            code, message = status_of(self._translate(exc))
            context.abort(code, message)

    return handler


class LocalInferenceService(pb_grpc.LocalInferenceServicer):
    """The six LocalInference calls over a `ModelHolder`, a prediction cache and an example sink."""

    def __init__(
        self,
        holder: ModelHolder,
        config: InferenceConfig,
        predictions: PredictionCache,
        examples: ExampleSink | None,
        translate: Callable[[BaseException], BaseException],
    ) -> None:
        self._holder = holder
        self._config = config
        self._predictions = predictions
        self._examples = examples
        self._translate = translate

    @_mapped
    def Predict(self, request: pb.PredictRequest, context: grpc.ServicerContext) -> Any:
        with self._holder.lease() as slot:
            probabilities = self._wait(slot.predict(request.features), context)
        info = slot.info
        label = int(np.argmax(probabilities))
        names = info.labels or tuple(str(i) for i in range(len(probabilities)))
        features = np.asarray(request.features, dtype=np.float32)
        return pb.PredictResponse(
            probabilities=probabilities.tolist(),
            label=label,
            label_name=names[label] if label < len(names) else str(label),
            prediction_id=self._predictions.add(features, names, info.version),
            model_version=info.version,
        )

    @_mapped
    def Embed(self, request: pb.EmbedRequest, context: grpc.ServicerContext) -> Any:
        with self._holder.lease() as slot:
            vectors = self._wait(slot.embed(list(request.texts)), context)
        return pb.EmbedResponse(
            embeddings=[pb.Embedding(values=row.tolist()) for row in vectors],
            model_version=slot.info.version,
        )

    def Generate(self, request: pb.GenerateRequest, context: grpc.ServicerContext) -> Iterator[Any]:
        lease = stream = None
        try:
            lease = self._holder.lease()
            # Runs when the call ends for any reason, also when gRPC never resumes this generator.
            context.add_callback(lease.release)
            params = GenerationParams(
                prompt=request.prompt,
                max_new_tokens=request.max_new_tokens,
                temperature=request.temperature,
                seed=request.seed if request.HasField("seed") else None,
                stop=request.stop or None,
            )
            stream = lease.slot.generate(params, self._timeout(context))
            context.add_callback(stream.cancel)
            version = lease.slot.info.version
            last_sent: float | None = None  # the first token goes out as soon as it exists
            # A token must come within the call's deadline, or request_timeout of the last one.
            while True:
                deadline = time.monotonic() + self._timeout(context)
                hold = None if last_sent is None else last_sent + CHUNK_INTERVAL
                events: list[Token] = []
                while not events and context.is_active():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimedOut(f"model {version} produced no token in time")
                    events = stream.next_group(
                        min(_POLL, remaining), max_events=CHUNK_TOKENS, hold_until=hold
                    )
                if not events:
                    return  # the caller went away; the callback cancelled the sequence
                failure = events[-1].error
                tokens = events[:-1] if failure is not None else events
                if tokens:
                    yield pb.GenerateChunk(
                        token=b"".join(event.token for event in tokens),
                        finished=tokens[-1].finished,
                        finish_reason=tokens[-1].reason or "",
                        model_version=version,
                    )
                    last_sent = time.monotonic()
                if failure is not None:
                    raise failure
                if tokens[-1].finished:
                    return
        except Exception as exc:
            code, message = status_of(self._translate(exc))
            context.abort(code, message)
        finally:
            if stream is not None:
                stream.cancel()
            if lease is not None:
                lease.release()

    @_mapped
    def ModelInfo(self, request: pb.ModelInfoRequest, context: grpc.ServicerContext) -> Any:
        with self._holder.lease() as slot:
            info, capabilities = slot.info, slot.capabilities
        return pb.ModelInfoResponse(
            version=info.version,
            variant=info.variant,
            architecture=info.architecture,
            weight_bytes=info.weight_bytes,
            rss_bytes=process_rss(),
            capabilities=sorted(capabilities),
            input_size=info.input_size or 0,
            labels=list(info.labels),
        )

    @_mapped
    def SubmitExample(self, request: pb.SubmitExampleRequest, context: grpc.ServicerContext) -> Any:
        sink = self._sink()
        kind = request.WhichOneof("input")
        if kind == "text":
            example = Example(request.label, text=request.text, source=SOURCE_APP)
        elif kind == "features":
            features = tuple(request.features.values)
            example = Example(request.label, features=features, source=SOURCE_APP)
        else:
            raise InvalidInput("an example needs its input: text or features")
        return pb.SubmitExampleResponse(example_id=sink.add(example))

    @_mapped
    def SubmitFeedback(
        self, request: pb.SubmitFeedbackRequest, context: grpc.ServicerContext
    ) -> Any:
        sink = self._sink()
        label = request.correct_label

        def known_class(prediction: Prediction) -> None:
            if label not in prediction.labels:
                shown = ", ".join(prediction.labels[:20])
                raise InvalidInput(
                    f"correct_label {label!r} is not a class of model "
                    f"{prediction.model_version} (classes: {shown})"
                )

        prediction = self._predictions.take(request.prediction_id, known_class)
        features = tuple(float(v) for v in prediction.features)
        example = Example(label, features=features, source=SOURCE_FEEDBACK)
        return pb.SubmitExampleResponse(example_id=sink.add(example))

    def _wait(self, future: Future[_R], context: grpc.ServicerContext) -> _R:
        context.add_callback(future.cancel)
        try:
            return future.result(self._timeout(context))
        except FutureTimeout:
            future.cancel()
            raise TimedOut("no result within the request's deadline") from None
        except CancelledError:
            raise Cancelled("the caller cancelled the request") from None

    def _timeout(self, context: grpc.ServicerContext) -> float:
        remaining = context.time_remaining()
        limit = self._config.request_timeout
        return limit if remaining is None else max(0.0, min(remaining, limit))

    def _sink(self) -> ExampleSink:
        if self._examples is None:
            raise Unsupported("this daemon keeps no examples (no example store is configured)")
        return self._examples


__all__ = ["LocalInferenceService"]
