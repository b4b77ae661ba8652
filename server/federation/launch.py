"""`python -m fedota.server.federation.launch ARGS…`: Flower's `flower-superlink` with ARGS, its
HTTP app wrapped in fedota's `ControlGuard`.

The control token is read from the file named by `FEDOTA_CONTROL_TOKEN_FILE` (never from argv,
which other users can read in /proc). Exit status 3 with one line on stderr when the token or
Flower is unusable.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

TOKEN_FILE_ENV = "FEDOTA_CONTROL_TOKEN_FILE"
EXIT_UNUSABLE = 3


def _fail(message: str) -> None:
    print(f"fedota superlink: {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_UNUSABLE)


def main(argv: list[str]) -> None:
    token_file = os.environ.get(TOKEN_FILE_ENV)
    if not token_file:
        _fail(f"{TOKEN_FILE_ENV} is not set")
    try:
        token = Path(token_file).read_bytes().strip()
    except OSError as exc:
        _fail(f"cannot read the control token {token_file}: {exc.strerror or exc}")
    if not token:
        _fail(f"the control token file {token_file} is empty")
    try:
        from flwr.superlink import main as superlink_app
        from flwr.superlink.cli.flower_superlink import flower_superlink
    except ImportError as exc:
        _fail(f"Flower's SuperLink is not installed in {sys.prefix}: {exc}")

    from fedota.server.federation.guard import ControlGuard

    create_app = getattr(superlink_app, "create_app", None)
    if create_app is None:
        _fail("this Flower version has no flwr.superlink.main.create_app to guard")

    def guarded_app(*args: Any, **kwargs: Any) -> ControlGuard:
        return ControlGuard(create_app(*args, **kwargs), token)

    # flower_superlink() imports create_app from the module when it runs, so it gets this one.
    superlink_app.create_app = guarded_app  # type: ignore[attr-defined]
    sys.argv = ["flower-superlink", *argv]
    flower_superlink()


if __name__ == "__main__":
    main(sys.argv[1:])
