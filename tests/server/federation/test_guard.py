"""fedota's guard in front of the SuperLink's one port (pure, and as ASGI middleware)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fedota.server.federation.guard import TOKEN_HEADER, ControlGuard, decide

TOKEN = b"s3cret"


@pytest.mark.parametrize(
    ("path", "peer", "token", "refused"),
    [
        ("/v1/control/register-node", "127.0.0.1", TOKEN, False),
        ("/v1/control/register-node", "10.0.0.7", TOKEN, False),
        ("/v1/control/register-node", "127.0.0.1", None, True),
        ("/v1/control/start-run", "127.0.0.1", b"s3cre", True),
        ("/v1/control/start-run", "127.0.0.1", b"", True),
        ("/v1/runtime/acquire-task", "127.0.0.1", None, False),
        ("/v1/runtime/acquire-task", "::1", None, False),
        ("/v1/runtime/acquire-task", "10.0.0.7", TOKEN, True),
        ("/v1/runtime/pull-messages", None, None, True),
        ("/v1/fleet/activate-node", "10.0.0.7", None, False),
        ("/health", "10.0.0.7", None, False),
    ],
)
def test_decide(path: str, peer: str | None, token: bytes | None, refused: bool) -> None:
    assert (decide(path, peer, token, TOKEN) is not None) is refused


def _call(path: str, headers: list[tuple[bytes, bytes]], peer: str) -> tuple[list[Any], bool]:
    reached = False

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal reached
        reached = True

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "path": path, "headers": headers, "client": (peer, 5555)}
    asyncio.run(ControlGuard(app, TOKEN)(scope, receive, send))
    return sent, reached


def test_middleware_refuses_with_403_and_never_reaches_flower() -> None:
    sent, reached = _call("/v1/control/list-nodes", [], "127.0.0.1")
    assert not reached
    assert sent[0]["status"] == 403
    assert b"control token" in sent[1]["body"]


def test_middleware_passes_a_caller_with_the_token() -> None:
    sent, reached = _call("/v1/control/list-nodes", [(TOKEN_HEADER.encode(), TOKEN)], "10.1.1.1")
    assert reached and not sent


def test_two_token_headers_are_refused() -> None:
    header = (TOKEN_HEADER.encode(), TOKEN)
    _sent, reached = _call("/v1/control/list-nodes", [header, header], "127.0.0.1")
    assert not reached


def test_an_empty_token_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        ControlGuard(lambda *a: None, b"")  # type: ignore[arg-type,return-value]
