"""The continuous-batching driver: one thread owns a generation engine and feeds many streams.

Handlers never touch the engine. `GenerationDriver.submit` hands a request to the driver thread
and waits for the engine's answer (a sequence id, or its typed refusal, e.g. full). The thread
admits new requests between steps, calls `step()` while any sequence is active or waiting, and
routes every token event to the `TokenStream` of its sequence. When the last sequences finish,
it waits a moment (`admit_wait`) for their callers' next requests, to prefill those together.
Cancelling a stream (its caller went away) cancels the sequence in the engine and ends the
stream at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from fedota.client.inference.errors import InferenceError, ModelFailed, Overloaded, Stopping
from fedota.client.inference.model import GenerationEngine, GenerationParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Token:
    """One event of a stream: a token, the last one (finished, with its reason), or a failure."""

    token: bytes
    finished: bool
    reason: str | None = None
    error: InferenceError | None = None


class TokenStream:
    """The tokens of one sequence, in order; ends with a finished `Token`."""

    def __init__(self, driver: GenerationDriver) -> None:
        self._driver = driver
        self._cond = threading.Condition(threading.Lock())
        self._events: deque[Token] = deque()
        # The driver wakes a waiting reader once this many events are queued (or the last).
        self._wake_at = 1
        self.seq_id: int | None = None
        self.done = threading.Event()

    def next(self, timeout: float) -> Token | None:
        """The next event, or None when none came within `timeout` seconds."""
        events = self.next_group(timeout, max_events=1)
        return events[0] if events else None

    def next_group(
        self, timeout: float, *, max_events: int, hold_until: float | None = None
    ) -> list[Token]:
        """The next events in order, at most `max_events`; empty when none came within
        `timeout` seconds.

        Once one is there, more are awaited until `hold_until` (a `time.monotonic()` instant,
        a short while ahead; None: not at all), unless `max_events` or the last event arrive
        first: a reader that sends what it gets sends fewer, larger messages, and the first
        event is never held when `hold_until` is None.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            self._wake_at = 1
            while not self._events:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(remaining)
            if hold_until is not None:
                self._wake_at = max_events
                while len(self._events) < max_events and not self._events[-1].finished:
                    remaining = hold_until - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                self._wake_at = 1
            return [self._events.popleft() for _ in range(min(max_events, len(self._events)))]

    def cancel(self) -> None:
        """Stop the sequence (a no-op once it has finished)."""
        if not self.done.is_set():
            self._driver.cancel(self)

    def _put(self, event: Token) -> None:
        # Called by the driver thread only; nothing follows a finished event.
        if self.done.is_set():
            return
        if event.finished:
            self.done.set()
        with self._cond:
            self._events.append(event)
            if event.finished or len(self._events) >= self._wake_at:
                self._cond.notify()


@dataclass
class _Submit:
    params: GenerationParams
    stream: TokenStream
    answer: Future[int]


@dataclass
class _Cancel:
    stream: TokenStream


class GenerationDriver:
    """Drives one engine from one thread; bounded admission queue."""

    def __init__(
        self,
        name: str,
        engine: GenerationEngine,
        *,
        max_pending: int,
        translate: Callable[[BaseException], BaseException],
        admit_wait: float = 0.002,
    ) -> None:
        """Start the driver thread.

        `admit_wait`: once every sequence has finished, how long the thread waits for as many
        new requests before it steps again (seconds), so that callers who come back at once
        are prefilled together rather than one step apart; 0 never waits.
        """
        self.name = name
        self._engine: GenerationEngine | None = engine
        self._max_pending = max_pending
        self._translate = translate
        self._cond = threading.Condition()
        self._commands: deque[_Submit | _Cancel] = deque()
        self._pending_submits = 0
        self._closed = False
        self._failed: str | None = None
        self._streams: dict[int, TokenStream] = {}
        self._admit_wait = admit_wait
        self._replacing = 0  # finished sequences whose callers have not asked again yet
        self._thread = threading.Thread(target=self._loop, name=f"fedota-gen-{name}", daemon=True)
        self._thread.start()

    def submit(self, params: GenerationParams, timeout: float) -> TokenStream:
        """Start a sequence; its tokens arrive on the returned stream.

        Raises:
            Overloaded: max_pending requests already wait for admission, or the engine is full.
            InvalidInput: the engine refused the request (translated from its own error).
            ModelFailed: the engine failed, or did not answer within `timeout` seconds.
            Stopping: the driver is closed.
        """
        stream = TokenStream(self)
        command = _Submit(params, stream, Future())
        with self._cond:
            if self._failed:
                raise ModelFailed(self._failed)
            if self._closed:
                raise Stopping(f"the {self.name} engine is stopping")
            if self._pending_submits >= self._max_pending:
                raise Overloaded(
                    f"{self._max_pending} generation requests are already waiting; retry later"
                )
            self._commands.append(command)
            self._pending_submits += 1
            self._cond.notify()
        try:
            command.answer.result(timeout)
        except FutureTimeout:
            if command.answer.cancel():  # never reached the engine
                raise ModelFailed(
                    f"the {self.name} engine did not take a request within {timeout:.1f}s"
                ) from None
            command.answer.result(timeout)  # the engine is answering right now
        return stream

    @property
    def queued(self) -> int:
        """Requests waiting for the driver thread to hand them to the engine."""
        with self._cond:
            return self._pending_submits

    def cancel(self, stream: TokenStream) -> None:
        """Ask the driver thread to stop `stream`'s sequence."""
        with self._cond:
            if self._closed:
                return
            self._commands.append(_Cancel(stream))
            self._cond.notify()

    def close(self) -> None:
        """Stop the thread; sequences still running end with `Stopping`."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def join(self, timeout: float) -> bool:
        """Wait for the thread to end after `close()`; True when it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        engine = self._engine
        assert engine is not None
        try:
            while self._run_once(engine):
                pass
        except Exception as exc:
            log.exception("%s generation engine failed", self.name)
            failed = f"the {self.name} generation engine failed (see the device log)"
            with self._cond:
                self._failed = failed
            self._fail_all(ModelFailed(failed), exc)
        else:
            self._fail_all(Stopping(f"the {self.name} engine stopped"), None)
        finally:
            # The engine holds the model's weights: let them go with the thread.
            self._engine = None
            del engine

    def _run_once(self, engine: GenerationEngine) -> bool:
        with self._cond:
            while not self._commands and not self._streams and not self._closed:
                self._cond.wait()
            if self._replacing and not self._streams and engine.waiting == 0:
                self._await_company()
            if self._closed:
                return False
            commands = list(self._commands)
            self._commands.clear()
            submits = sum(isinstance(c, _Submit) for c in commands)
            self._pending_submits -= submits
            self._replacing = max(0, self._replacing - submits)  # those came back already
        for command in commands:
            if isinstance(command, _Submit):
                self._admit(engine, command)
            else:
                self._cancel(engine, command.stream)
        if self._streams:
            for event in engine.step():
                stream = self._streams.get(event.seq_id)
                if stream is None:
                    continue  # cancelled, already ended
                stream._put(Token(event.token, event.finished, event.reason))
                if event.finished:
                    del self._streams[event.seq_id]
                    self._replacing += 1
        return True

    def _await_company(self) -> None:
        # The engine is idle and a caller is back: the callers of the sequences that finished
        # ask again within a millisecond or two of each other, so wait (briefly, and only for
        # as many as finished) to prefill their prompts in one batch, as the Batcher waits for
        # the company it expects. Never while sequences run: it would stall them. Called with
        # the lock held.
        deadline = time.monotonic() + self._admit_wait
        while self._pending_submits < self._replacing and not self._closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._cond.wait(remaining)
        self._replacing = 0  # whoever is not back by now is not expected any more

    def _admit(self, engine: GenerationEngine, command: _Submit) -> None:
        if not command.answer.set_running_or_notify_cancel():
            return
        try:
            seq_id = engine.submit(command.params)
        except Exception as exc:
            command.answer.set_exception(self._translate(exc))
            return
        self._streams[seq_id] = command.stream
        command.stream.seq_id = seq_id
        command.answer.set_result(seq_id)

    def _cancel(self, engine: GenerationEngine, stream: TokenStream) -> None:
        if stream.seq_id is None or self._streams.get(stream.seq_id) is not stream:
            return
        del self._streams[stream.seq_id]
        engine.cancel(stream.seq_id)
        stream._put(Token(b"", finished=True, reason="cancelled"))

    def _fail_all(self, error: InferenceError, cause: BaseException | None) -> None:
        with self._cond:
            commands = list(self._commands)
            self._commands.clear()
            self._closed = True
        for command in commands:
            if isinstance(command, _Submit) and command.answer.set_running_or_notify_cancel():
                command.answer.set_exception(error)
        for stream in self._streams.values():
            stream._put(Token(b"", finished=True, error=error))
        self._streams.clear()
        if cause is not None:
            error.__cause__ = cause


__all__ = ["GenerationDriver", "Token", "TokenStream"]
