"""Registering a service: the one place where failures become gRPC statuses.

Each method of a proto service is bound to the servicer's method of the same name, wrapped so
that a `ServiceError` becomes its status code and message, an undecodable request (or request
message of a client stream) becomes INVALID_ARGUMENT, and anything else becomes INTERNAL with a
reference to the traceback in the log. A server-streaming method's servicer returns an iterator;
a failure raised while it yields ends the stream with the same mapping.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError, Message

from fedota.server.errors import InvalidArgument, ServiceError

logger = logging.getLogger("fedota.server.rpc")

Handler = Callable[[Any, grpc.ServicerContext], Message]


class _Undecodable:
    """Stands in for a request whose bytes are not a valid message of the method's input type."""

    def __init__(self, type_name: str, error: str) -> None:
        self.type_name = type_name
        self.error = error


def _deserializer(message_class: type[Message]) -> Callable[[bytes], Message | _Undecodable]:
    def deserialize(data: bytes) -> Message | _Undecodable:
        try:
            return message_class.FromString(data)
        except (DecodeError, ValueError, RuntimeError) as exc:
            return _Undecodable(message_class.DESCRIPTOR.full_name, str(exc) or type(exc).__name__)

    return deserialize


def _checked(request: Any) -> Any:
    if isinstance(request, _Undecodable):
        raise InvalidArgument("request", f"is not a valid {request.type_name} message")
    return request


def _checked_stream(requests: Iterator[Any]) -> Iterator[Any]:
    for request in requests:
        yield _checked(request)


def _status_of(method_name: str, exc: Exception) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, ServiceError):
        logger.info("%s refused: %s %s", method_name, exc.code.name, exc)
        return exc.code, str(exc)
    ref = secrets.token_hex(4)
    logger.error("%s failed (ref %s)", method_name, ref, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error (ref {ref}; see the coordinator log)"


def guarded(method_name: str, handler: Handler) -> Handler:
    """`handler` with every failure turned into a status and one readable sentence."""

    def call(request: Any, context: grpc.ServicerContext) -> Message:
        try:
            return handler(_checked(request), context)
        except Exception as exc:  # every failure becomes a status
            code, message = _status_of(method_name, exc)
        context.abort(code, message)

    return call


def guarded_client_stream(method_name: str, handler: Handler) -> Handler:
    """`guarded` for a client-streaming method: each request message is checked as it arrives."""

    def call(requests: Iterator[Any], context: grpc.ServicerContext) -> Message:
        try:
            return handler(_checked_stream(requests), context)
        except Exception as exc:  # every failure becomes a status
            code, message = _status_of(method_name, exc)
        context.abort(code, message)

    return call


def guarded_server_stream(
    method_name: str, handler: Callable[[Any, grpc.ServicerContext], Iterator[Message]]
) -> Callable[[Any, grpc.ServicerContext], Iterator[Message]]:
    """`guarded` for a server-streaming method: a failure while yielding ends the stream."""

    def call(request: Any, context: grpc.ServicerContext) -> Iterator[Message]:
        try:
            yield from handler(_checked(request), context)
            return
        except Exception as exc:  # every failure becomes a status
            code, message = _status_of(method_name, exc)
        context.abort(code, message)

    return call


def _method_handler(method: MethodDescriptor, handler: Handler) -> grpc.RpcMethodHandler:
    request_class = message_factory.GetMessageClass(method.input_type)
    options: dict[str, Any] = {
        "request_deserializer": _deserializer(request_class),
        "response_serializer": lambda response: response.SerializeToString(),
    }
    if method.client_streaming and method.server_streaming:
        raise TypeError(f"{method.full_name} streams both ways; add_service does not serve that")
    if method.client_streaming:
        return grpc.stream_unary_rpc_method_handler(
            guarded_client_stream(method.full_name, handler), **options
        )
    if method.server_streaming:
        return grpc.unary_stream_rpc_method_handler(
            guarded_server_stream(method.full_name, handler), **options
        )
    return grpc.unary_unary_rpc_method_handler(guarded(method.full_name, handler), **options)


def add_service(server: grpc.Server, service: ServiceDescriptor, servicer: object) -> None:
    """Serve every method of `service` from the same-named methods of `servicer`.

    Raises:
        TypeError: the servicer lacks a method, or a method streams both ways.
    """
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for method in service.methods:
        handler = getattr(servicer, method.name, None)
        if handler is None:
            raise TypeError(f"{type(servicer).__name__} does not implement {method.full_name}")
        handlers[method.name] = _method_handler(method, handler)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
