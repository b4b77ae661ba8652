"""Registering a service: the one place where failures become gRPC statuses.

Each unary method of a proto service is bound to the servicer's method of the same name, wrapped
so that a `ServiceError` becomes its status code and message, an undecodable request becomes
INVALID_ARGUMENT, and anything else becomes INTERNAL with a reference to the traceback in the log.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
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


def guarded(method_name: str, handler: Handler) -> Handler:
    """`handler` with every failure turned into a status and one readable sentence."""

    def call(request: Any, context: grpc.ServicerContext) -> Message:
        try:
            if isinstance(request, _Undecodable):
                raise InvalidArgument("request", f"is not a valid {request.type_name} message")
            return handler(request, context)
        except ServiceError as exc:
            code, message = exc.code, str(exc)
            logger.info("%s refused: %s %s", method_name, code.name, message)
        except Exception:
            ref = secrets.token_hex(4)
            logger.exception("%s failed (ref %s)", method_name, ref)
            code, message = (
                grpc.StatusCode.INTERNAL,
                f"internal error (ref {ref}; see the coordinator log)",
            )
        context.abort(code, message)

    return call


def _method_handler(method: MethodDescriptor, handler: Handler) -> grpc.RpcMethodHandler:
    request_class = message_factory.GetMessageClass(method.input_type)
    return grpc.unary_unary_rpc_method_handler(
        guarded(method.full_name, handler),
        request_deserializer=_deserializer(request_class),
        response_serializer=lambda response: response.SerializeToString(),
    )


def add_service(server: grpc.Server, service: ServiceDescriptor, servicer: object) -> None:
    """Serve every method of `service` from the same-named methods of `servicer`.

    Raises:
        TypeError: the servicer lacks a method, or the service has a streaming method.
    """
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for method in service.methods:
        if method.client_streaming or method.server_streaming:
            raise TypeError(f"{method.full_name} is streaming; add_service serves unary methods")
        handler = getattr(servicer, method.name, None)
        if handler is None:
            raise TypeError(f"{type(servicer).__name__} does not implement {method.full_name}")
        handlers[method.name] = _method_handler(method, handler)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
