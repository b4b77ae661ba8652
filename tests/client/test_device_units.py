"""Small pure pieces: addresses, hardware profile, error mapping, exit codes, import hygiene."""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest

from fedota.cli import device as device_cli
from fedota.cli.errors import EXIT_FAILURE, EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_USAGE
from fedota.client import (
    HARDWARE_CLASSES,
    AlreadyEnrolled,
    CertificateExpired,
    ClientError,
    CoordinatorFailed,
    CoordinatorUnavailable,
    CredentialRefused,
    DeviceRefused,
    Endpoint,
    EnrollmentRefused,
    ProtocolError,
    RequestInvalid,
    StateError,
    TokenError,
    UntrustedCoordinator,
)
from fedota.client.hardware import GIB, cpu_model_from_cpuinfo, detect, hardware_class_for_memory
from fedota.client.transport import map_error


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:7443", "127.0.0.1", 7443),
        ("coordinator.example:443", "coordinator.example", 443),
        ("[::1]:7443", "::1", 7443),
        (" localhost:1 ", "localhost", 1),
    ],
)
def test_endpoint_parses_and_prints_back(text: str, host: str, port: int) -> None:
    endpoint = Endpoint.parse(text)

    assert (endpoint.host, endpoint.port) == (host, port)
    assert Endpoint.parse(str(endpoint)) == endpoint


@pytest.mark.parametrize(
    "text", ["", "host", "host:", ":80", "host:0", "host:65536", "::1:80", "[zz]:1"]
)
def test_endpoint_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        Endpoint.parse(text)


@pytest.mark.parametrize(
    ("memory", "expected"),
    [
        (16 * GIB, "fp32"),
        (8 * GIB, "fp32"),
        (8 * GIB - 1, "int8"),
        (2 * GIB, "int8"),
        (GIB, "int4"),
        (0, "int4"),
    ],
)
def test_hardware_class_follows_memory(memory: int, expected: str) -> None:
    assert hardware_class_for_memory(memory) == expected


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        ("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: x\n", "AMD EPYC 7B13"),
        (
            "processor\t: 0\nBogoMIPS\t: 108\n\nHardware\t: BCM2835\nModel\t: Raspberry Pi 4\n",
            "Raspberry Pi 4",
        ),
        ("processor\t: 0\n", ""),
    ],
)
def test_cpu_model_from_cpuinfo(cpuinfo: str, expected: str) -> None:
    assert cpu_model_from_cpuinfo(cpuinfo) == expected


def test_detect_describes_this_machine_without_importing_torch() -> None:
    code = (
        "import sys; from fedota.client.hardware import detect; p = detect('mcu-int8');"
        "print(p.hardware_class, p.cpu_count > 0, p.memory_bytes > 0, bool(p.python_version),"
        " 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.split() == ["mcu-int8", "True", "True", "True", "False"]
    with pytest.raises(ValueError, match="not one of"):
        detect("fp64")


def test_cli_and_client_agree_on_hardware_classes() -> None:
    assert device_cli.HARDWARE_CLASSES == HARDWARE_CLASSES


class _RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("code", "device_port", "kind", "exit_code"),
    [
        (grpc.StatusCode.UNAVAILABLE, True, CoordinatorUnavailable, EXIT_UNAVAILABLE),
        (grpc.StatusCode.DEADLINE_EXCEEDED, True, CoordinatorUnavailable, EXIT_UNAVAILABLE),
        (grpc.StatusCode.UNAUTHENTICATED, False, EnrollmentRefused, EXIT_REFUSED),
        (grpc.StatusCode.UNAUTHENTICATED, True, CredentialRefused, EXIT_REFUSED),
        (grpc.StatusCode.PERMISSION_DENIED, True, DeviceRefused, EXIT_REFUSED),
        (grpc.StatusCode.ALREADY_EXISTS, False, AlreadyEnrolled, EXIT_REFUSED),
        (grpc.StatusCode.INVALID_ARGUMENT, False, RequestInvalid, EXIT_USAGE),
        (grpc.StatusCode.FAILED_PRECONDITION, True, RequestInvalid, EXIT_USAGE),
        (grpc.StatusCode.INTERNAL, True, CoordinatorFailed, EXIT_UNAVAILABLE),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, True, CoordinatorFailed, EXIT_UNAVAILABLE),
    ],
)
def test_status_codes_map_to_one_type_and_one_exit_code(
    code: grpc.StatusCode, device_port: bool, kind: type[ClientError], exit_code: int
) -> None:
    error = map_error(
        _RpcError(code, "the coordinator\nsays so"), "Heartbeat", device_port=device_port
    )

    assert type(error) is kind
    assert device_cli.exit_code_for(error) == exit_code
    assert "\n" not in str(error)
    text = str(error) + getattr(error, "detail", "")
    assert "the coordinator says so" in text


@pytest.mark.parametrize(
    ("error", "exit_code"),
    [
        (StateError("x"), EXIT_USAGE),
        (TokenError("x"), EXIT_USAGE),
        (UntrustedCoordinator("x"), EXIT_UNAVAILABLE),
        (CertificateExpired("x"), EXIT_REFUSED),
        (ProtocolError("x"), EXIT_FAILURE),
    ],
)
def test_local_errors_have_exit_codes(error: ClientError, exit_code: int) -> None:
    assert device_cli.exit_code_for(error) == exit_code


def test_the_client_loads_no_coordinator_code() -> None:
    code = (
        "import sys, fedota.client, fedota.client.daemon;"
        "bad = [m for m in sys.modules if m.split('.')[:2] in (['fedota','server'],"
        " ['fedota','storage'], ['fedota','cli']) or m in ('sqlalchemy', 'torch')];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.strip() == "[]"
