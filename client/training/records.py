"""Between Flower's Message API and the device's round: arrays in, payload and metrics out.

The coordinator's ServerApp reads these keys (fedota.server.aggregation.records): the payload
is one uint8 array under `fedota.delta.uplink.RECORD_KEY` in the "arrays" record, the metrics
carry "num-examples" (the update's weight) and what `campaigns show` lists.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict

from fedota.client.training.round import RoundResult
from fedota.delta.uplink import RECORD_KEY

ARRAYS_KEY = "arrays"
METRICS_KEY = "metrics"


def global_arrays(record: ArrayRecord) -> dict[str, np.ndarray]:
    """The round's starting trainable arrays, by name."""
    return {name: array.numpy() for name, array in record.items()}


def reply_content(result: RoundResult) -> RecordDict:
    """The reply to a train message: the payload and the round's metrics."""
    payload = ArrayRecord({RECORD_KEY: Array(np.frombuffer(result.payload, dtype=np.uint8))})
    m = result.metrics
    metrics = MetricRecord(
        {
            "num-examples": m.examples,
            "train-loss": m.loss,
            "train-accuracy": m.accuracy,
            "steps": m.steps,
            "peak-memory-bytes": m.peak_memory_bytes,
            "uplink-bytes": result.uplink_bytes,
            "fp32-bytes": result.fp32_bytes,
            "update-norm": result.update_norm,
        }
    )
    return RecordDict({ARRAYS_KEY: payload, METRICS_KEY: metrics})


__all__ = ["ARRAYS_KEY", "METRICS_KEY", "global_arrays", "reply_content"]
