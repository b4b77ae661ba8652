"""fedota's Flower App: the folder `app/` shipped in this package, built into a FAB.

Its pyproject names the ServerApp (`fedota.server.federation.server_app:app`) and the ClientApp
(`fedota.client.federation.client_app:app`); both load from fedota's own installation on the
coordinator and on every device, so the FAB holds nothing but that pyproject.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from flwr.cli.build import build_fab_from_disk

from fedota.server.federation.control import FlowerApp

APP_FOLDER = "app"


def app_folder() -> Path:
    """Where the app's pyproject.toml lives in this installation."""
    return Path(str(resources.files("fedota.server.federation").joinpath(APP_FOLDER)))


@functools.cache
def fedota_app() -> FlowerApp:
    """The built FAB (cached: the folder is part of the installation and does not change).

    Raises:
        FileNotFoundError: the installation lacks the app folder (a packaging error).
        ValueError: Flower refuses the app's pyproject.toml.
    """
    folder = app_folder()
    if not (folder / "pyproject.toml").is_file():
        raise FileNotFoundError(f"{folder}/pyproject.toml is missing from fedota's installation")
    return FlowerApp(build_fab_from_disk(folder))


__all__ = ["app_folder", "fedota_app"]
