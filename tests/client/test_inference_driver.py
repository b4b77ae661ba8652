"""Once idle, the generation driver waits briefly for the callers of finished sequences to come
back, so their next prompts are prefilled (and decoded) together rather than a step apart."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from inference_harness import wait_for
from inference_models import ReferenceModel

from fedota.client.inference import GenerationParams
from fedota.client.inference.generation import GenerationDriver, TokenStream

pytestmark = pytest.mark.timeout(60)
REQUEST = GenerationParams(b"Once upon", max_new_tokens=4)
# Long enough that the three first sequences finish in the same few steps.
LONG = GenerationParams(b"Once upon", max_new_tokens=64)


@pytest.fixture
def model() -> ReferenceModel:
    return ReferenceModel("v1", seed=3, engine_batch=8)


@contextmanager
def _driver(model: ReferenceModel, admit_wait: float) -> Iterator[GenerationDriver]:
    driver = GenerationDriver(
        "v1", model.new_engine(), max_pending=8, translate=lambda e: e, admit_wait=admit_wait
    )
    try:
        yield driver
    finally:
        driver.close()
        assert driver.join(10)


def _drain(stream: TokenStream) -> bytes:
    text = b""
    while True:
        event = stream.next(10)
        assert event is not None and event.error is None
        text += event.token
        if event.finished:
            return text


def _submit_in_background(
    driver: GenerationDriver, streams: list[TokenStream], params: GenerationParams = REQUEST
) -> threading.Thread:
    # submit() waits for the driver thread's answer, which a waiting driver gives late.
    thread = threading.Thread(target=lambda: streams.append(driver.submit(params, 30)))
    thread.start()
    return thread


def test_returning_callers_are_admitted_together(model: ReferenceModel) -> None:
    expected, _ = model.generate_alone(REQUEST)
    expected_long, _ = model.generate_alone(LONG)
    with _driver(model, admit_wait=30.0) as driver:  # long: only their arrival ends the wait
        # Three sequences that run together: the engine's first step is held until the second
        # and third are queued behind the first, so all three are in flight at once.
        model.step_gate.close()
        first: list[TokenStream] = []
        starters = [_submit_in_background(driver, first, LONG)]
        wait_for(lambda: model.step_gate.arrived == 1)
        starters += [_submit_in_background(driver, first, LONG) for _ in range(2)]
        wait_for(lambda: driver.queued == 2)
        model.step_gate.open()
        for thread in starters:
            thread.join(30)
        assert [_drain(s) for s in first] == [expected_long] * 3  # the engine is idle again
        (engine,) = model.engines
        assert max(engine.batch_sizes) == 3  # the three ran together, so three callers are due
        steps_before = len(engine.batch_sizes)

        again: list[TokenStream] = []
        threads = [_submit_in_background(driver, again) for _ in range(2)]
        wait_for(lambda: driver.queued == 2)
        assert len(engine.batch_sizes) == steps_before  # two of three back: no step yet
        threads.append(_submit_in_background(driver, again))
        for thread in threads:
            thread.join(30)

        assert [_drain(s) for s in again] == [expected] * 3
        assert set(engine.batch_sizes[steps_before:]) == {3}  # one batch of three throughout


def test_without_a_wait_the_first_caller_back_goes_at_once(model: ReferenceModel) -> None:
    expected, _ = model.generate_alone(REQUEST)
    with _driver(model, admit_wait=0.0) as driver:
        first = [driver.submit(REQUEST, 10) for _ in range(3)]
        assert [_drain(s) for s in first] == [expected] * 3
        alone = driver.submit(REQUEST, 10)  # answered although two callers have not come back
        assert _drain(alone) == expected
