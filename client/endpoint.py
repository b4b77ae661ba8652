"""`HOST:PORT` addresses, IPv6 in brackets (`[::1]:7443`)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

_ENDPOINT = re.compile(r"^(?:\[(?P<v6>[^\]\s]+)\]|(?P<host>[^:\[\]\s]+)):(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        """The `HOST:PORT` form, which is also a gRPC target."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """Parse `HOST:PORT` or `[IPV6]:PORT`.

        Raises:
            ValueError: not of that form, an invalid IPv6 address, or a port outside 1..65535.
        """
        match = _ENDPOINT.match(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not HOST:PORT (write IPv6 addresses as [::1]:PORT)")
        port = int(match["port"])
        if not 1 <= port <= 65535:
            raise ValueError(f"{text!r}: port {port} is outside 1..65535")
        if match["v6"] is not None:
            try:
                ipaddress.IPv6Address(match["v6"])
            except ValueError as exc:
                raise ValueError(f"{text!r}: {match['v6']!r} is not an IPv6 address") from exc
            return cls(match["v6"], port)
        return cls(match["host"], port)


__all__ = ["Endpoint"]
