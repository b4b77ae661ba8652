"""`fedota device infer ...`: call the daemon's local inference API and print the answers.

Imported only when an `infer` command runs. Talks to the socket through the generated stub alone
(never `fedota.client`, so no model code loads); each gRPC status becomes one CLI error line and
exit code in `cli_error`.
"""

from __future__ import annotations

import os

# gRPC's C core logs connection failures on its own unless told otherwise before it loads.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import argparse
import codecs
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from fedota.cli.errors import EXIT_FAILURE, EXIT_UNAVAILABLE, EXIT_USAGE, CliError
from fedota.cli.output import human_bytes, print_fields, print_json, print_line, print_table
from fedota.protos.v1 import inference_pb2 as pb
from fedota.protos.v1 import inference_pb2_grpc as pb_grpc

# The same name as fedota.client.inference.SOCKET_NAME (a test keeps them equal); spelled out so
# that the CLI does not import the serving code.
SOCKET_NAME = "inference.sock"
SOCKET_ENV = "FEDOTA_INFERENCE_SOCKET"
_MAX_MESSAGE = 64 * 1024 * 1024
# Statuses the caller can fix by asking differently, and those worth retrying later.
_USAGE = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
}
_RETRY = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}


def resolve_target(args: argparse.Namespace) -> str:
    """The gRPC target: --address, else --socket, else $FEDOTA_INFERENCE_SOCKET, else the
    socket in --state.

    Raises:
        CliError: none of them is given, or the socket does not exist (the daemon is not
            serving there).
    """
    if args.address:
        return args.address
    text = args.socket or os.environ.get(SOCKET_ENV)
    if text:
        path = Path(text)
    elif args.state:
        path = args.state / SOCKET_NAME
    else:
        raise CliError(
            f"where is the daemon? give --socket PATH, --state DIR or --address HOST:PORT "
            f"(or set {SOCKET_ENV})"
        )
    if not path.exists():
        raise CliError(
            f"no inference server at {path} (the socket does not exist: is the daemon running?)",
            EXIT_UNAVAILABLE,
        )
    return f"unix:{os.path.abspath(path)}"


def cli_error(error: grpc.RpcError, target: str) -> CliError:
    """The one-line CLI error and exit code for a failed call to the server at `target`."""
    code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
    details = " ".join((error.details() or "").split())  # type: ignore[attr-defined]
    if code is grpc.StatusCode.UNAVAILABLE and details.startswith("failed to connect"):
        return CliError(
            f"cannot reach the inference server at {target} ({details})", EXIT_UNAVAILABLE
        )
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return CliError(
            f"no answer from the inference server at {target} in time", EXIT_UNAVAILABLE
        )
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return CliError(f"the inference server is busy: {details}", EXIT_UNAVAILABLE)
    if code in _USAGE or code in _RETRY:
        return CliError(details or code.name, EXIT_USAGE if code in _USAGE else EXIT_UNAVAILABLE)
    return CliError(
        f"the inference server failed ({code.name}): {details or 'no details'}", EXIT_FAILURE
    )


class InferClient:
    """A channel to the local inference API; every call has the CLI's deadline."""

    def __init__(self, target: str, timeout: float) -> None:
        self.target = target
        self._timeout = timeout
        self._channel = grpc.insecure_channel(
            target, options=[("grpc.max_receive_message_length", _MAX_MESSAGE)]
        )
        self._stub = pb_grpc.LocalInferenceStub(self._channel)

    def call(self, method: str, request: Any) -> Any:
        """One unary call.

        Raises:
            CliError: the call failed.
        """
        try:
            return getattr(self._stub, method)(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise cli_error(exc, self.target) from None

    def generate(self, request: pb.GenerateRequest) -> Iterator[pb.GenerateChunk]:
        """The chunks of one Generate stream, as they arrive.

        Raises:
            CliError: the call failed (possibly after some chunks).
        """
        try:
            yield from self._stub.Generate(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise cli_error(exc, self.target) from None

    def __enter__(self) -> InferClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._channel.close()


def run(args: argparse.Namespace) -> int:
    """Run one `fedota device infer` command (`args.infer_command`)."""
    commands: dict[str, Callable[[argparse.Namespace, InferClient], None]] = {
        "predict": _predict,
        "embed": _embed,
        "generate": _generate,
        "info": _info,
        "submit": _submit,
        "feedback": _feedback,
    }
    with InferClient(resolve_target(args), args.timeout) as client:
        commands[args.infer_command](args, client)
    return 0


def _predict(args: argparse.Namespace, client: InferClient) -> None:
    answer = client.call("Predict", pb.PredictRequest(features=args.features))
    if args.json:
        print_json(
            {
                "label": answer.label,
                "label_name": answer.label_name,
                "probabilities": [round(p, 7) for p in answer.probabilities],
                "prediction_id": answer.prediction_id,
                "model_version": answer.model_version,
            }
        )
        return
    ranked = sorted(enumerate(answer.probabilities), key=lambda item: -item[1])[:3]
    names = _class_names(client, len(answer.probabilities)) if len(ranked) > 1 else {}
    print_fields(
        {
            "label": f"{answer.label_name} (class {answer.label})",
            "probability": f"{answer.probabilities[answer.label]:.4f}",
            "runners-up": ", ".join(f"{names.get(i, i)} {p:.4f}" for i, p in ranked[1:]) or "-",
            "prediction id": answer.prediction_id,
            "model": answer.model_version,
        }
    )


def _class_names(client: InferClient, count: int) -> dict[int, str]:
    labels = list(client.call("ModelInfo", pb.ModelInfoRequest()).labels)
    return dict(enumerate(labels)) if len(labels) == count else {}


def _embed(args: argparse.Namespace, client: InferClient) -> None:
    answer = client.call("Embed", pb.EmbedRequest(texts=args.texts))
    vectors = [list(e.values) for e in answer.embeddings]
    if args.json:
        print_json({"model_version": answer.model_version, "embeddings": vectors})
        return
    rows = []
    for text, vector in zip(args.texts, vectors, strict=True):
        norm = sum(v * v for v in vector) ** 0.5
        head = " ".join(f"{v:+.4f}" for v in vector[:4]) + (" ..." if len(vector) > 4 else "")
        rows.append([_clip(text), str(len(vector)), f"{norm:.4f}", head])
    print_table(["text", "dim", "norm", "values"], rows, title=f"model {answer.model_version}")


def _generate(args: argparse.Namespace, client: InferClient) -> None:
    request = pb.GenerateRequest(
        prompt=args.prompt.encode("utf-8"),
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        stop=(args.stop or "").encode("utf-8"),
    )
    if args.seed is not None:
        request.seed = args.seed
    # A token is a byte and may be part of a character: decode across chunk boundaries.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text, reason, version, tokens = [], "", "", 0
    for chunk in client.generate(request):
        piece = decoder.decode(chunk.token)
        tokens += len(chunk.token)  # one byte per token; a chunk may carry several
        reason, version = chunk.finish_reason or reason, chunk.model_version
        if args.json:
            text.append(piece)
        else:
            sys.stdout.write(piece)
            sys.stdout.flush()
    tail = decoder.decode(b"", final=True)
    if args.json:
        print_json(
            {
                "text": "".join(text) + tail,
                "finish_reason": reason,
                "tokens": tokens,
                "model_version": version,
            }
        )
    else:
        sys.stdout.write(tail + "\n")
        sys.stdout.flush()


def _info(args: argparse.Namespace, client: InferClient) -> None:
    info = client.call("ModelInfo", pb.ModelInfoRequest())
    view: dict[str, Any] = {
        "version": info.version,
        "variant": info.variant,
        "architecture": info.architecture,
        "weight_bytes": info.weight_bytes,
        "rss_bytes": info.rss_bytes,
        "capabilities": list(info.capabilities),
        "input_size": info.input_size or None,
        "labels": list(info.labels),
    }
    if args.json:
        print_json(view)
        return
    print_fields(
        {
            "version": info.version,
            "variant": info.variant,
            "architecture": info.architecture,
            "weights": human_bytes(info.weight_bytes),
            "daemon memory": human_bytes(info.rss_bytes),
            "capabilities": ", ".join(info.capabilities) or "-",
            "input size": str(info.input_size) if info.input_size else "-",
            "labels": _clip(", ".join(info.labels), 60) if info.labels else "-",
        }
    )


def _submit(args: argparse.Namespace, client: InferClient) -> None:
    if args.text is not None:
        request = pb.SubmitExampleRequest(label=args.label, text=args.text)
    else:
        features = pb.FeatureVector(values=args.features)
        request = pb.SubmitExampleRequest(label=args.label, features=features)
    _stored(args, client.call("SubmitExample", request).example_id)


def _feedback(args: argparse.Namespace, client: InferClient) -> None:
    request = pb.SubmitFeedbackRequest(
        prediction_id=args.prediction_id, correct_label=args.correct_label
    )
    _stored(args, client.call("SubmitFeedback", request).example_id)


def _stored(args: argparse.Namespace, example_id: int) -> None:
    if args.json:
        print_json({"example_id": example_id})
    else:
        print_line(f"stored example {example_id}")


def _clip(text: str, width: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


__all__ = ["SOCKET_ENV", "SOCKET_NAME", "InferClient", "cli_error", "resolve_target", "run"]
