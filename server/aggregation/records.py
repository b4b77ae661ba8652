"""Between Flower's Message API and the aggregation core: arrays in, payloads and counts out.

The ServerApp sends the global trainable arrays as an ArrayRecord ("arrays") and the round
plan as a ConfigRecord; a device replies with its uplink payload as one uint8 array under
`fedota.delta.uplink.RECORD_KEY` and a MetricRecord ("metrics") whose "num-examples" is its
weight. `offer_reply` turns one reply into a verdict of the round, whatever the reply holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from flwr.app import Array, ArrayRecord, RecordDict

from fedota.delta.uplink import RECORD_KEY
from fedota.server.aggregation.round import Round
from fedota.server.aggregation.validation import RejectReason, Verdict

ARRAYS_KEY = "arrays"
METRICS_KEY = "metrics"
EXAMPLES_KEY = "num-examples"


def arrays_to_record(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    """An ArrayRecord of the arrays, in name order."""
    return ArrayRecord({name: Array(np.ascontiguousarray(arrays[name])) for name in sorted(arrays)})


def record_to_arrays(record: ArrayRecord) -> dict[str, np.ndarray]:
    """The arrays of an ArrayRecord, by name."""
    return {name: array.numpy() for name, array in record.items()}


def offer_reply(round_: Round, client: str, content: RecordDict) -> Verdict:
    """Offer one reply's update to the round; a reply without a readable payload or example
    count is rejected as undecodable (recorded, never raised)."""
    try:
        payload = _payload(content)
        examples = _examples(content)
    except (KeyError, TypeError, ValueError) as exc:
        return round_.reject(client, RejectReason.UNDECODABLE, f"unreadable reply: {exc}")
    return round_.offer(client, payload, examples)


def _payload(content: RecordDict) -> bytes:
    record = content.array_records.get(ARRAYS_KEY)
    if record is None or RECORD_KEY not in record:
        raise KeyError(f"no {ARRAYS_KEY}/{RECORD_KEY} array in the reply")
    array = record[RECORD_KEY]
    if array.dtype != "uint8" or len(array.shape) != 1:
        raise TypeError(f"the uplink array must be 1-D uint8, got {array.dtype}{array.shape}")
    return array.numpy().tobytes()


def _examples(content: RecordDict) -> float:
    metrics = content.metric_records.get(METRICS_KEY)
    if metrics is None or EXAMPLES_KEY not in metrics:
        raise KeyError(f"no {METRICS_KEY}/{EXAMPLES_KEY} in the reply")
    value = metrics[EXAMPLES_KEY]
    if isinstance(value, list) or not math.isfinite(float(value)):
        raise ValueError(f"{EXAMPLES_KEY} must be a finite number, got {value!r}")
    return float(value)


__all__ = [
    "ARRAYS_KEY",
    "EXAMPLES_KEY",
    "METRICS_KEY",
    "arrays_to_record",
    "offer_reply",
    "record_to_arrays",
]
