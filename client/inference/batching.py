"""Dynamic batching: one thread gathers concurrent requests into one model call and fans out.

Callers `submit` an input and get a `Future`. The batcher thread takes the oldest request, waits
at most `max_wait` for others to join, runs `run` once on the batch, and sets every future with
its own output. It waits only for the company it expects: as many items as the previous batch
held (up to `max_batch`). Callers that each wait for their answer before asking again come back
in waves of that size, so a wave is batched whole as soon as it is complete, and a lone caller
never waits at all. The queue holds at most `max_queue` requests:
one more is refused at once (`Overloaded`), never queued without bound. A request whose caller
gave up (its future cancelled) before its batch starts is dropped from the batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

from fedota.client.inference.errors import ModelFailed, Overloaded, Stopping

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(frozen=True)
class _Item(Generic[In, Out]):
    value: In
    size: int
    future: Future[Out]


class Batcher(Generic[In, Out]):
    """Runs `run(inputs) -> outputs` (same length, same order) on batches of queued inputs."""

    def __init__(
        self,
        name: str,
        run: Callable[[Sequence[In]], Sequence[Out]],
        *,
        max_batch: int,
        max_wait: float,
        max_queue: int,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait < 0:
            raise ValueError(
                f"Batcher needs max_batch >= 1, max_queue >= 1 and max_wait >= 0, got "
                f"{max_batch}, {max_queue} and {max_wait}"
            )
        self.name = name
        self._run = run
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._max_queue = max_queue
        self._cond = threading.Condition()
        self._pending: deque[_Item[In, Out]] = deque()
        self._pending_size = 0
        self._expected = 1
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"fedota-batch-{name}", daemon=True)
        self._thread.start()

    def submit(self, value: In, size: int = 1) -> Future[Out]:
        """Queue one request of `size` items (a request larger than max_batch runs alone).

        Raises:
            Overloaded: max_queue requests are already waiting.
            Stopping: the batcher is closed.
        """
        future: Future[Out] = Future()
        with self._cond:
            if self._closed:
                raise Stopping(f"the {self.name} batcher is closed")
            if len(self._pending) >= self._max_queue:
                raise Overloaded(
                    f"{self.name} queue is full ({self._max_queue} requests waiting); retry later"
                )
            self._pending.append(_Item(value, size, future))
            self._pending_size += size
            self._cond.notify()
        return future

    @property
    def queued(self) -> int:
        """Requests waiting for a batch."""
        with self._cond:
            return len(self._pending)

    def close(self) -> None:
        """Stop taking requests; waiting ones fail with `Stopping`; the thread then ends."""
        with self._cond:
            self._closed = True
            dropped = list(self._pending)
            self._pending.clear()
            self._pending_size = 0
            self._cond.notify_all()
        for item in dropped:
            if item.future.set_running_or_notify_cancel():
                item.future.set_exception(Stopping(f"the {self.name} batcher was closed"))

    def join(self, timeout: float) -> bool:
        """Wait for the thread to end after `close()`; True when it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            live = [item for item in batch if item.future.set_running_or_notify_cancel()]
            if live:
                self._run_batch(live)

    def _next_batch(self) -> list[_Item[In, Out]] | None:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            deadline = time.monotonic() + self._max_wait
            while self._pending_size < self._expected and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if self._closed:
                return None
            batch = [self._pending.popleft()]
            size = batch[0].size
            while self._pending and size + self._pending[0].size <= self._max_batch:
                item = self._pending.popleft()
                batch.append(item)
                size += item.size
            self._pending_size -= size
            self._expected = min(max(size, 1), self._max_batch)
            return batch

    def _run_batch(self, batch: list[_Item[In, Out]]) -> None:
        try:
            outputs = self._run([item.value for item in batch])
            if len(outputs) != len(batch):
                raise ValueError(f"{len(outputs)} outputs for a batch of {len(batch)} inputs")
        except Exception:
            log.exception("%s batch of %d requests failed", self.name, len(batch))
            for item in batch:
                item.future.set_exception(ModelFailed(f"the model failed on {self.name}"))
            return
        for item, output in zip(batch, outputs, strict=True):
            item.future.set_result(output)


__all__ = ["Batcher"]
