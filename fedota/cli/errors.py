"""How the CLI reports failure: one line on stderr and a stable exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
# Bad input or a refused request: the user can fix it and try again.
EXIT_USAGE = 2
# The coordinator could not be reached or authenticated.
EXIT_UNAVAILABLE = 3
# The coordinator refused this identity (device rejected or revoked, certificate expired).
EXIT_REFUSED = 4


class CliError(Exception):
    """A failure the user can act on; printed as `fedota: error: <message>`."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code
