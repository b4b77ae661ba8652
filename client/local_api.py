"""The daemon's local inference API: the model of the active slot, served on the device's socket.

`LocalApi` starts an `InferenceServer` (`fedota.client.inference`) on `<state>/inference.sock`
(or the socket the operator names) with the active slot's model, or none yet (calls then answer
UNAVAILABLE), and `serve(slot)` hot-swaps to another slot's model after the updater installed
it: requests in flight finish on the old model, new ones go to the new one. The served model
names itself by its release, `family@vN`, so `fedota device infer info` shows what the rollout
installed; the variant is its own field.

A model that cannot be loaded leaves the one being served in place (logged): the updater's health
check loaded it moments before, so this is a local fault, never a reason to stop serving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from fedota.client.errors import StateError, UsageError
from fedota.client.update.slots import Slot

if TYPE_CHECKING:
    import numpy as np

    from fedota.client.inference import (
        Capability,
        ExampleSink,
        GenerationEngine,
        InferenceServer,
        ModelInfo,
        ServedModel,
    )

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalApiOptions:
    """Where and how the daemon serves its model.

    Attributes:
        socket_path: the Unix socket (None: `<state>/inference.sock`).
        tcp_port: also serve on this loopback port (0 picks one; None: no TCP).
        open_examples: opens the store of examples apps submit, called when the API starts
            (the state directory exists by then) and closed when it stops; None refuses them.
    """

    socket_path: Path | None = None
    tcp_port: int | None = None
    open_examples: Callable[[], ExampleSink] | None = None


def release_name(slot: Slot) -> str:
    """`family@vN`, the registry's name of the release a slot holds."""
    return f"{slot.target.family}@v{slot.target.version}"


class LocalApi:
    """The inference server of one daemon; `start`, `serve` (from any thread), `stop`."""

    def __init__(self, state_dir: Path, options: LocalApiOptions) -> None:
        self._state_dir = Path(state_dir)
        self._options = options
        self._server: InferenceServer | None = None
        self._examples: ExampleSink | None = None
        self._served = ""  # content hash of the model new requests go to
        self._lock = threading.Lock()

    @property
    def served_content(self) -> str:
        """The content hash of the model being served ("" for none)."""
        return self._served

    def start(self, slot: Slot | None) -> None:
        """Listen, serving `slot`'s model (or none until `serve`).

        Raises:
            UsageError: the socket path is too long for the system.
            StateError: another process serves on the socket, or the example store cannot be
                opened.
        """
        from fedota.client.inference import InferenceServer, SocketInUse, default_socket_path

        socket_path = self._options.socket_path or default_socket_path(self._state_dir)
        if self._options.open_examples is not None:
            self._examples = self._options.open_examples()
        try:
            server = InferenceServer(
                socket_path=socket_path,
                tcp_port=self._options.tcp_port,
                examples=self._examples,
            )
        except ValueError as exc:
            self._close_examples()
            raise UsageError(
                f"local inference API: {exc} (give --inference-socket PATH or --no-inference)"
            ) from None
        try:
            server.start()
        except SocketInUse as exc:
            self._close_examples()
            raise StateError(
                f"local inference API: {exc}; stop the other server, or run with "
                "--inference-socket PATH or --no-inference"
            ) from None
        self._server = server
        if slot is not None:
            self.serve(slot)

    def serve(self, slot: Slot | None) -> bool:
        """Serve `slot`'s model unless it is already served; True when the model changed."""
        with self._lock:
            server = self._server
            if server is None or slot is None or slot.content_sha256 == self._served:
                return False
            model = _load(slot)
            if model is None:
                return False
            try:
                server.swap(model)
            except Exception as exc:  # the model's own start-up failed: keep the old one
                log.error("cannot serve %s: %s", release_name(slot), exc)
                return False
            self._served = slot.content_sha256
        log.info(
            "serving %s (%s, %s…) on the local inference API",
            release_name(slot),
            slot.target.variant,
            slot.content_sha256[:12],
        )
        return True

    def stop(self) -> None:
        """Stop listening; calls in flight get the server's grace period."""
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.stop()
        self._close_examples()

    def _close_examples(self) -> None:
        examples, self._examples = self._examples, None
        close = getattr(examples, "close", None)
        if close is not None:
            close()


def _load(slot: Slot) -> ServedModel | None:
    from fedota.client.inference.loading import ModelLoadError, load_served_model

    try:
        model = load_served_model(slot.model_path)
    except ModelLoadError as exc:
        log.error("cannot load %s from slot %s: %s", release_name(slot), slot.name, exc)
        return None
    return _Released(model, replace(model.info, version=release_name(slot)))


class _Released:
    """A loaded model that names itself by its release instead of its content hash."""

    def __init__(self, model: ServedModel, info: ModelInfo) -> None:
        self._model = model
        self._info = info

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self._model.capabilities

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self._model.predict(batch)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._model.embed(texts)

    def new_engine(self) -> GenerationEngine:
        return self._model.new_engine()

    def close(self) -> None:
        self._model.close()


__all__ = ["LocalApi", "LocalApiOptions", "release_name"]
