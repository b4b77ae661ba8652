"""Recent predictions, kept in memory so that feedback can name one instead of resending its input.

Bounded three ways: at most `capacity` entries and `max_bytes` of inputs (the oldest go first),
each kept for at most `ttl` seconds. Nothing here is written to disk; an input reaches the
example store only when an app sends feedback on it.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fedota.client.inference.errors import UnknownPrediction


@dataclass(frozen=True)
class Prediction:
    """What feedback needs of a prediction: its input and the classes it chose among."""

    features: np.ndarray
    labels: tuple[str, ...]
    model_version: str
    made_at: float


class PredictionCache:
    """Thread-safe LRU of predictions by random id."""

    def __init__(
        self,
        capacity: int,
        ttl: float,
        max_bytes: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1 or ttl <= 0 or max_bytes < 1:
            raise ValueError(
                "PredictionCache needs capacity >= 1, ttl > 0 and max_bytes >= 1, got "
                f"{capacity}, {ttl} and {max_bytes}"
            )
        self._capacity = capacity
        self._ttl = ttl
        self._max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, Prediction] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def add(self, features: np.ndarray, labels: tuple[str, ...], model_version: str) -> str:
        """Remember a prediction (a copy of its input); returns its id."""
        prediction = Prediction(
            np.array(features, dtype=np.float32), labels, model_version, self._clock()
        )
        prediction_id = secrets.token_hex(16)
        with self._lock:
            self._entries[prediction_id] = prediction
            self._bytes += prediction.features.nbytes
            while len(self._entries) > self._capacity or self._bytes > self._max_bytes:
                self._evict_oldest()
        return prediction_id

    def take(
        self, prediction_id: str, accept: Callable[[Prediction], None] = lambda _: None
    ) -> Prediction:
        """Remove and return a prediction once `accept` (which may raise) approved it.

        Feedback is accepted once per prediction; when `accept` raises, the entry stays.

        Raises:
            UnknownPrediction: the id is unknown, expired, evicted or already taken.
            Exception: whatever `accept` raised.
        """
        now = self._clock()
        with self._lock:
            while self._entries and now - next(iter(self._entries.values())).made_at > self._ttl:
                self._evict_oldest()
            prediction = self._entries.get(prediction_id)
            if prediction is None:
                raise UnknownPrediction(
                    f"prediction {prediction_id!r} is unknown: feedback is accepted once per "
                    f"prediction, within {self._ttl:g}s and while it is among the last "
                    f"{self._capacity} predictions"
                )
            accept(prediction)
            del self._entries[prediction_id]
            self._bytes -= prediction.features.nbytes
        return prediction

    def _evict_oldest(self) -> None:
        _, evicted = self._entries.popitem(last=False)
        self._bytes -= evicted.features.nbytes


__all__ = ["Prediction", "PredictionCache"]
