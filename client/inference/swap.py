"""Hot swap: which model serves a new request, and when a replaced one is let go.

A `ModelSlot` is one loaded model with its own batchers and generation thread. `ModelHolder`
points at the current slot; every request takes a `Lease` on the slot that was current when it
arrived and keeps it until its last byte is sent. `swap` points new requests at a new slot at
once; the old slot keeps serving the leases it gave out and is closed (threads ended, model
closed, references dropped) when the last of them is released. So no request fails or mixes two
models because of a swap.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType

from fedota.client.inference.config import InferenceConfig
from fedota.client.inference.errors import NoModel, Stopping
from fedota.client.inference.model import ServedModel
from fedota.client.inference.serving import ModelSlot

log = logging.getLogger(__name__)


class Released:
    """Set once a swapped-out model has finished its last request and was closed."""

    def __init__(self) -> None:
        self._event = threading.Event()

    @property
    def done(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        """Wait at most `timeout` seconds; True when the model has been released."""
        return self._event.wait(timeout)

    def _set(self) -> None:
        self._event.set()


class Lease:
    """A request's hold on the slot that serves it; release exactly once (or use `with`)."""

    def __init__(self, holder: ModelHolder, slot: ModelSlot) -> None:
        self._holder = holder
        self.slot = slot
        self._lock = threading.Lock()
        self._released = False

    def release(self) -> None:
        """Give the hold back; later calls (from any thread) do nothing."""
        with self._lock:
            released, self._released = self._released, True
        if not released:
            self._holder._release(self.slot)

    def __enter__(self) -> ModelSlot:
        return self.slot

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


class ModelHolder:
    """The current model and the retired ones still finishing requests."""

    def __init__(
        self, config: InferenceConfig, translate: Callable[[BaseException], BaseException]
    ) -> None:
        self._config = config
        self._translate = translate
        self._lock = threading.Lock()
        self._current: ModelSlot | None = None
        # Slots not yet closed (current and retiring), with their open leases and release flags.
        self._leases: dict[ModelSlot, int] = {}
        self._released: dict[ModelSlot, Released] = {}
        # Closed slots whose threads may still be ending; joined by close().
        self._closed: list[ModelSlot] = []
        self._stopped = False

    def lease(self) -> Lease:
        """A hold on the current model.

        Raises:
            NoModel: no model has been loaded yet.
            Stopping: the holder is closed.
        """
        with self._lock:
            if self._stopped:
                raise Stopping("the inference server is stopping")
            slot = self._current
            if slot is None:
                raise NoModel("no model is loaded yet; retry once the daemon has installed one")
            self._leases[slot] += 1
        return Lease(self, slot)

    @property
    def current(self) -> ModelSlot | None:
        with self._lock:
            return self._current

    def swap(self, model: ServedModel) -> Released:
        """Serve new requests with `model`; the result is set when the replaced one is released.

        The new model is started before it becomes current, so a model that fails to start
        (e.g. `new_engine` raises) leaves the old one serving.

        Raises:
            Stopping: the holder is closed.
            ValueError: the model's info or capabilities are malformed.
            Exception: whatever the model raised while starting.
        """
        slot = ModelSlot(model, self._config, self._translate)
        with self._lock:
            stopped = self._stopped
            if not stopped:
                old, self._current = self._current, slot
                self._leases[slot] = 0
                self._released[slot] = Released()
                released = self._released[old] if old is not None else Released()
                idle = old is not None and self._leases[old] == 0
                self._closed = [s for s in self._closed if not s.join(0)]
        if stopped:
            slot.close()
            raise Stopping("the inference server is stopping")
        log.info("serving model %s (%s)", slot.info.version, slot.info.variant)
        if old is None:
            released._set()
        elif idle:
            self._retire(old)
        return released

    def close(self, timeout: float) -> bool:
        """Close every slot, in use or not; True when all their threads ended within `timeout`."""
        with self._lock:
            self._stopped = True
            self._current = None
            open_slots = list(self._leases)
        for slot in open_slots:
            self._retire(slot)
        with self._lock:
            slots, self._closed = self._closed, []
        return all([slot.join(timeout) for slot in slots])

    def _release(self, slot: ModelSlot) -> None:
        with self._lock:
            if slot not in self._leases:
                return  # closed by close() while the request was still running
            self._leases[slot] -= 1
            idle = self._leases[slot] == 0 and slot is not self._current
        if idle:
            self._retire(slot)

    def _retire(self, slot: ModelSlot) -> None:
        with self._lock:
            released = self._released.pop(slot, None)
            if released is None:
                return  # another thread retired it already
            del self._leases[slot]
            self._closed.append(slot)
        slot.close()
        released._set()
        log.info("released model %s", slot.info.version)


__all__ = ["Lease", "ModelHolder", "Released"]
