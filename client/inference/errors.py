"""What a local inference call can meet, one type per failure, and the one map to gRPC status codes.

Each `InferenceError` subclass names the status code it answers with (`code`); `status_of` is the
only place an exception becomes a status, so the wire never carries a stack trace: an exception
that is not ours answers INTERNAL with a fixed message and is logged on the device instead.

The engine and the example store come from other packages with their own typed errors
(`EngineFull`, `InvalidRequest`, `InvalidExample`); `ErrorTable` translates those into ours.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping

import grpc

log = logging.getLogger(__name__)


class InferenceError(Exception):
    """Base of every failure the local inference API reports; `code` is its gRPC status."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidInput(InferenceError):
    """The request breaks a rule (shape, range, size); the message states the rule and the value."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class Overloaded(InferenceError):
    """A bounded queue is full; the caller should retry later."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unsupported(InferenceError):
    """The model being served (or this daemon) cannot do what was asked."""

    code = grpc.StatusCode.UNIMPLEMENTED


class NoModel(InferenceError):
    """No model is loaded yet."""

    code = grpc.StatusCode.UNAVAILABLE


class Stopping(InferenceError):
    """The server is stopping, or the model that held the request was released."""

    code = grpc.StatusCode.UNAVAILABLE


class UnknownPrediction(InferenceError):
    """A feedback names a prediction id that is unknown, expired or already used."""

    code = grpc.StatusCode.NOT_FOUND


class ModelFailed(InferenceError):
    """The model raised while computing; the details are in the device log, not on the wire."""

    code = grpc.StatusCode.INTERNAL


class TimedOut(InferenceError):
    """No result came within the request's deadline (or the server's, when it set none)."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(InferenceError):
    """The caller cancelled the request."""

    code = grpc.StatusCode.CANCELLED


class StoreFailed(InferenceError):
    """The example store could not store an example (disk full, locked, corrupt); retry later."""

    code = grpc.StatusCode.UNAVAILABLE


class SocketInUse(InferenceError):
    """Another live server listens on the socket path this server was asked to bind."""


# Typed errors of the parts we serve, by module and class name, and what each means here. Looked
# up in sys.modules when an error comes: a module that was never imported raised nothing, and
# serving a classifier need not import the language-model package.
KNOWN_FOREIGN_ERRORS: tuple[tuple[str, str, type[InferenceError]], ...] = (
    ("fedota.ml.lm", "EngineFull", Overloaded),
    ("fedota.ml.lm", "KVCacheExhausted", Overloaded),
    ("fedota.ml.lm", "InvalidRequest", InvalidInput),
    ("fedota.client.data", "InvalidExample", InvalidInput),
    ("fedota.client.data", "StoreError", StoreFailed),
)


class ErrorTable:
    """Translates the typed errors of an engine or example store into `InferenceError`s."""

    def __init__(
        self, extra: Mapping[type[BaseException], type[InferenceError]] | None = None
    ) -> None:
        """`extra` adds translations, checked before the known ones."""
        self._extra = dict(extra or {})

    def translate(self, exc: BaseException) -> BaseException:
        """`exc` as one of ours when its type is known (the message is kept), else `exc`."""
        if isinstance(exc, InferenceError):
            return exc
        for kind, ours in self._extra.items():
            if isinstance(exc, kind):
                return _as(ours, exc)
        for module, name, ours in KNOWN_FOREIGN_ERRORS:
            kind = getattr(sys.modules.get(module), name, None)
            if isinstance(kind, type) and isinstance(exc, kind):
                return _as(ours, exc)
        return exc


def _as(kind: type[InferenceError], exc: BaseException) -> InferenceError:
    translated = kind(str(exc))
    translated.__cause__ = exc
    return translated


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and one-line message an exception answers with."""
    if isinstance(exc, InferenceError):
        return exc.code, " ".join(str(exc).split()) or exc.code.name
    log.error("inference call failed unexpectedly", exc_info=exc)
    return grpc.StatusCode.INTERNAL, "internal error in the inference server (see the device log)"


__all__ = [
    "KNOWN_FOREIGN_ERRORS",
    "Cancelled",
    "ErrorTable",
    "InferenceError",
    "InvalidInput",
    "ModelFailed",
    "NoModel",
    "Overloaded",
    "SocketInUse",
    "Stopping",
    "StoreFailed",
    "TimedOut",
    "UnknownPrediction",
    "Unsupported",
    "status_of",
]
