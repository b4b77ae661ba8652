"""The example store's behaviour: round trip, validation, size and age limits, threads, reopen."""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fedota.client.data import (
    LIMITS,
    Desensitizer,
    Example,
    ExampleStore,
    InvalidExample,
    StoredExample,
)

pytestmark = pytest.mark.timeout(60)
START = 1_700_000_000.0
HOUR = dt.timedelta(hours=1)


class FakeClock:
    """Seconds since the epoch, moved by the test."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def advance(self, delta: dt.timedelta) -> None:
        self.now += delta.total_seconds()


OpenStore = Callable[..., ExampleStore]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def open_store(tmp_path: Path, clock: FakeClock) -> Iterator[OpenStore]:
    """Opens stores on one file (default limits: 1 MB, 1 hour); closes them all afterwards."""
    opened: list[ExampleStore] = []

    def open_(max_bytes: int = 1_000_000, max_age: dt.timedelta = HOUR) -> ExampleStore:
        store = ExampleStore(
            tmp_path / "state" / "examples.db",
            max_bytes=max_bytes,
            max_age=max_age,
            desensitizer=Desensitizer(["Alice"]),
            clock=clock,
        )
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


def texts(store: ExampleStore, **kwargs: object) -> list[str | None]:
    return [example.text for example in store.examples(**kwargs)]  # type: ignore[arg-type]


def test_round_trip_desensitises_text_and_label_and_keeps_features(
    open_store: OpenStore, clock: FakeClock
) -> None:
    store = open_store()
    first = store.add(Example("Alice", text="Alice wrote from alice@example.com", source="chat"))
    clock.advance(dt.timedelta(seconds=5))
    second = store.add(Example("digit-7", features=[0.1, -2.5, 1e-300, 3]))
    assert second > first
    assert list(store.examples()) == [
        StoredExample(
            first,
            dt.datetime.fromtimestamp(START, dt.UTC),
            "<NAME>",
            "<NAME> wrote from <EMAIL>",
            None,
            "chat",
        ),
        StoredExample(
            second,
            dt.datetime.fromtimestamp(START + 5, dt.UTC),
            "digit-7",
            None,
            (0.1, -2.5, 1e-300, 3.0),
            "app",
        ),
    ]


def test_examples_filters_by_kind_and_limit_oldest_first(open_store: OpenStore) -> None:
    store = open_store()
    for i in range(600):  # more than one page of reads
        if i % 3:
            store.add(Example("l", text=f"text {i}"))
        else:
            store.add(Example("l", features=[float(i)]))
    assert texts(store, kind="text", limit=3) == ["text 1", "text 2", "text 4"]
    features = [e.features for e in store.examples(kind="features")]
    assert features == [(float(i),) for i in range(0, 600, 3)]
    assert len(list(store.examples())) == 600
    assert len(list(store.examples(limit=300))) == 300
    assert list(store.examples(limit=0)) == []


def test_iterating_while_another_thread_adds(open_store: OpenStore) -> None:
    store = open_store()
    for i in range(300):
        store.add(Example("l", text=f"old {i}"))
    seen = 0
    for example in store.examples(limit=300):
        if seen % 50 == 0:
            worker = threading.Thread(target=store.add, args=(Example("l", text="new"),))
            worker.start()
            worker.join(timeout=10)
        assert example.text == f"old {seen}"
        seen += 1
    assert seen == 300


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"label": "x"}, "example", "exactly one of text or features, this one has neither"),
        ({"label": "x", "text": "t", "features": [1.0]}, "example", "this one has both"),
        ({"label": "", "text": "t"}, "label", "must not be empty or blank"),
        ({"label": 5, "text": "t"}, "label", "must be a str, got int"),
        ({"label": "x" * 257, "text": "t"}, "label", "257 characters, over the limit of 256"),
        ({"label": "x", "text": "  \n"}, "text", "must not be empty or blank"),
        ({"label": "x", "text": "t" * 16_385}, "text", "16385 characters, over the limit of 16384"),
        ({"label": "x", "text": "bad \ud800"}, "text", "lone surrogate at 4"),
        ({"label": "x", "features": []}, "features", "at least 1 number, got 0"),
        (
            {"label": "x", "features": [0.0] * 65_537},
            "features",
            "65537 numbers, over the limit of 65536",
        ),
        (
            {"label": "x", "features": iter(lambda: 1.0, None)},
            "features",
            "more than 65536 numbers",
        ),
        ({"label": "x", "features": [1.0, math.nan]}, "features", r"features\[1\] must be finite"),
        ({"label": "x", "features": [math.inf]}, "features", "must be finite, got inf"),
        ({"label": "x", "features": ["1.5"]}, "features", r"\[0\] must be a number, got str"),
        ({"label": "x", "features": "123"}, "features", "sequence of numbers, got str"),
        ({"label": "x", "features": 3.0}, "features", "sequence of numbers, got float"),
        ({"label": "x", "text": "t", "source": ""}, "source", "letters, digits"),
        ({"label": "x", "text": "t", "source": "a b"}, "source", "got 'a b'"),
        ({"label": "x", "text": "t", "source": "s" * 65}, "source", "at most 64 characters"),
    ],
)
def test_invalid_examples_are_refused_with_rule_and_value(
    kwargs: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(InvalidExample, match=message) as caught:
        Example(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_limits_are_the_documented_defaults() -> None:
    assert (LIMITS.max_label_chars, LIMITS.max_text_chars, LIMITS.max_features) == (
        256,
        16_384,
        65_536,
    )


def test_an_example_larger_than_the_store_is_refused_and_nothing_is_stored(
    open_store: OpenStore,
) -> None:
    store = open_store(max_bytes=100)
    store.add(Example("l", text="kept"))
    with pytest.raises(InvalidExample, match=r"is 108 bytes once desensitised, more than .* 100"):
        store.add(Example("l", features=[1.0] * 13))
    assert texts(store) == ["kept"]


def test_add_keeps_the_payload_within_max_bytes_dropping_the_oldest(open_store: OpenStore) -> None:
    store = open_store(max_bytes=1000)
    # label "l" (1) + source "app" (3) + 96 characters of text = 100 bytes each
    for i in range(25):
        store.add(Example("l", text=f"{i:02d}" + "x" * 94))
        stats = store.stats()
        assert stats.payload_bytes <= 1000
        assert stats.payload_bytes == 100 * stats.count
    assert [text[:2] for text in texts(store) if text] == [f"{i:02d}" for i in range(15, 25)]


def test_features_count_eight_bytes_each(open_store: OpenStore) -> None:
    store = open_store()
    store.add(Example("ab", features=[1.0] * 10, source="cam"))
    assert store.stats().payload_bytes == 2 + 3 + 80


def test_age_limit_hides_then_prunes_old_examples(open_store: OpenStore, clock: FakeClock) -> None:
    store = open_store(max_age=HOUR)
    store.add(Example("l", text="first"))
    clock.advance(dt.timedelta(minutes=40))
    store.add(Example("l", text="second"))
    clock.advance(dt.timedelta(minutes=30))  # first is 70 minutes old, second 30
    assert texts(store) == ["second"]
    assert store.stats().count == 2  # not pruned yet, but never handed out
    assert store.prune() == 1
    stats = store.stats()
    assert (stats.count, stats.oldest) == (1, dt.datetime.fromtimestamp(START + 2400, dt.UTC))
    assert store.prune() == 0


def test_add_prunes_by_age_as_it_goes(open_store: OpenStore, clock: FakeClock) -> None:
    store = open_store(max_age=HOUR)
    store.add(Example("l", text="old"))
    clock.advance(2 * HOUR)
    store.add(Example("l", text="new"))
    assert store.stats().count == 1


def test_stats_of_an_empty_store(open_store: OpenStore) -> None:
    stats = open_store().stats()
    assert (stats.count, stats.payload_bytes, stats.oldest, stats.newest) == (0, 0, None, None)


def test_reopening_keeps_examples_and_ids(open_store: OpenStore, clock: FakeClock) -> None:
    store = open_store()
    ids = [store.add(Example("l", text=f"t{i}")) for i in range(3)]
    store.close()
    clock.advance(dt.timedelta(minutes=1))
    again = open_store()
    assert [e.id for e in again.examples()] == ids
    assert again.add(Example("l", text="t3")) > ids[-1]
    assert texts(again) == ["t0", "t1", "t2", "t3"]


def test_two_store_objects_on_one_file_share_data_and_limits(open_store: OpenStore) -> None:
    one, two = open_store(max_bytes=1000), open_store(max_bytes=1000)
    for i in range(10):
        (one if i % 2 else two).add(Example("l", text=f"{i:02d}" + "x" * 94))
    two.add(Example("l", text="zz" + "x" * 94))
    assert one.stats().count == two.stats().count == 10


@pytest.mark.parametrize("max_bytes", [10_000_000, 5_000])
def test_concurrent_adds_from_threads(open_store: OpenStore, max_bytes: int) -> None:
    store = open_store(max_bytes=max_bytes)
    ids: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(worker: int) -> None:
        try:
            start.wait(timeout=10)
            for i in range(40):
                ids.append(store.add(Example("l", text=f"w{worker} #{i} alice@example.com")))
                assert store.stats().payload_bytes <= max_bytes
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert len(set(ids)) == 320
    stored = list(store.examples())
    assert [e.id for e in stored] == sorted(e.id for e in stored)
    assert all(e.text and e.text.endswith("<EMAIL>") for e in stored)
    if max_bytes == 10_000_000:
        assert len(stored) == 320
    else:
        assert store.stats().payload_bytes <= max_bytes < store.stats().payload_bytes + 40


def test_a_closed_store_refuses_use(open_store: OpenStore) -> None:
    store = open_store()
    pending = store.examples()
    store.close()
    store.close()
    with pytest.raises(RuntimeError, match="is closed"):
        store.add(Example("l", text="t"))
    with pytest.raises(RuntimeError, match="is closed"):
        store.stats()
    with pytest.raises(RuntimeError, match="is closed"):
        next(pending)


def test_context_manager_closes(open_store: OpenStore) -> None:
    with open_store() as store:
        store.add(Example("l", text="t"))
    with pytest.raises(RuntimeError, match="is closed"):
        store.prune()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "image"}, "kind must be 'text', 'features' or None, got 'image'"),
        ({"limit": -1}, "limit must not be negative, got -1"),
    ],
)
def test_examples_refuses_bad_arguments_at_once(
    open_store: OpenStore, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        open_store().examples(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("max_bytes", "max_age", "message"),
    [
        (0, HOUR, "max_bytes must be positive, got 0"),
        (100, dt.timedelta(0), "max_age must be positive"),
    ],
)
def test_limits_must_be_positive(
    tmp_path: Path, max_bytes: int, max_age: dt.timedelta, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ExampleStore(
            tmp_path / "x.db", max_bytes=max_bytes, max_age=max_age, desensitizer=Desensitizer()
        )
    assert not (tmp_path / "x.db").exists()


def test_add_takes_only_examples(open_store: OpenStore) -> None:
    with pytest.raises(TypeError, match="takes an Example, got dict"):
        open_store().add({"label": "l", "text": "t"})  # type: ignore[arg-type]
