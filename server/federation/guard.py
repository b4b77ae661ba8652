"""What the SuperLink's one public port serves to whom.

Flower 1.42 serves its Fleet, Control and Runtime APIs on one HTTPS port, and its open-source build
authenticates neither the Control API (register a key, start a run) nor the Runtime API's task
acquisition: any device that can reach the port for the Fleet API could register its own key or
take the ServerApp's task. fedota puts this ASGI guard in front of Flower's app:

- `/v1/control/...` needs the coordinator's control token (header `x-fedota-control-token`);
- `/v1/runtime/...` is served to loopback peers only (the SuperLink's own SuperExec and ServerApp);
- everything else (the Fleet API, where SuperNode authentication applies, and health) passes.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_HEADER = "x-fedota-control-token"
CONTROL_PREFIX = "/v1/control/"
RUNTIME_PREFIX = "/v1/runtime/"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def decide(path: str, peer_host: str | None, token: bytes | None, expected: bytes) -> str | None:
    """Why a request must be refused, or None to pass it on (pure).

    `token` is the request's control token header (None when absent); `expected` the
    coordinator's token.
    """
    if path.startswith(CONTROL_PREFIX):
        if token is None or not hmac.compare_digest(token, expected):
            return "the Control API needs the coordinator's control token"
    elif path.startswith(RUNTIME_PREFIX) and (peer_host is None or not _is_loopback(peer_host)):
        return "the Runtime API is served on loopback only"
    return None


class ControlGuard:
    """ASGI middleware applying `decide` to every HTTP request; 403 with a JSON reason."""

    def __init__(self, app: ASGIApp, token: bytes) -> None:
        if not token:
            raise ValueError("the control token must not be empty")
        self._app = app
        self._token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") == "http":
            client = scope.get("client")
            peer = client[0] if client else None
            headers = [v for k, v in scope.get("headers", []) if k.lower() == TOKEN_HEADER.encode()]
            token = headers[0] if len(headers) == 1 else None
            reason = decide(scope.get("path", ""), peer, token, self._token)
            if reason is not None:
                await _forbid(send, reason)
                return
        await self._app(scope, receive, send)


async def _forbid(send: Send, reason: str) -> None:
    body = json.dumps({"code": 0, "detail": reason}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


__all__ = ["TOKEN_HEADER", "ControlGuard", "decide"]
