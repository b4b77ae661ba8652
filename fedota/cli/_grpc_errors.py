"""The one place where a gRPC status from the coordinator becomes a CLI error and exit code."""

from __future__ import annotations

import re

import grpc

from fedota.cli.errors import EXIT_FAILURE, EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_USAGE, CliError

# The request was wrong or does not fit the fleet's state: the user can fix it and retry.
_USAGE = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.OUT_OF_RANGE,
}
# The coordinator answered, and refused this identity.
_REFUSED = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
# Nothing (or nothing in time) answered.
_UNREACHABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
# gRPC reports a failed certificate check as UNAVAILABLE with OpenSSL's words deep in the details,
# e.g. "...Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL
# routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: self signed certificate in chain: OK".
_TLS_FAILURE = re.compile(
    r"handshake failed.*?(?:OPENSSL_internal:)?([A-Z_]+_FAILED[^.]*?)(?:: OK)?$", re.I
)


def exit_code(code: grpc.StatusCode) -> int:
    """The CLI exit code for a gRPC status code."""
    if code in _USAGE:
        return EXIT_USAGE
    if code in _REFUSED:
        return EXIT_REFUSED
    if code in _UNREACHABLE:
        return EXIT_UNAVAILABLE
    return EXIT_FAILURE


def cli_error(error: grpc.RpcError, address: str) -> CliError:
    """A one-line CliError for a failed call to the coordinator at `address`."""
    code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
    details = _one_line(error.details() or "")  # type: ignore[attr-defined]
    if code in _UNREACHABLE:
        tls = _TLS_FAILURE.search(details)
        if tls:
            return CliError(
                f"coordinator at {address} failed TLS verification ({tls[1]}): "
                "is this the coordinator of the fleet CA you trust?",
                EXIT_UNAVAILABLE,
            )
        why = "no answer in time" if code is grpc.StatusCode.DEADLINE_EXCEEDED else details
        message = f"coordinator at {address} is unreachable"
        return CliError(f"{message} ({why})" if why else message, EXIT_UNAVAILABLE)
    if code is grpc.StatusCode.UNIMPLEMENTED:
        details = (
            f"the coordinator at {address} does not offer this call (is it older than this CLI?)"
        )
    elif code not in _USAGE and code not in _REFUSED:
        details = f"coordinator failed ({code.name}): {details or 'no details'}"
    return CliError(details or code.name, exit_code(code))


def _one_line(text: str) -> str:
    return " ".join(text.split())


__all__ = ["cli_error", "exit_code"]
