"""An in-memory fleet behind the ServerApp's `FleetLink` seam: each node is a device state
directory served by the real ClientApp functions (`local_train`, `local_evaluate`), in this
process. Faults are per device: an answer transformed by a function, no answer, or offline."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, RecordDict

from fedota.client.federation.client_app import DeviceNotReady, local_evaluate, local_train
from fedota.delta.uplink import RECORD_KEY, UplinkSpec, decode, encode
from fedota.server.campaigns.run import EVALUATE, ROUND_KEY, TRAIN, Reply

Poison = Callable[[RecordDict, RecordDict], RecordDict]


@dataclass
class MemoryFleet:
    devices: dict[str, Path]
    poison: dict[str, Poison] = field(default_factory=dict)
    silent: set[str] = field(default_factory=set)
    offline: set[str] = field(default_factory=set)
    calls: list[tuple[str, str, int]] = field(default_factory=list)  # (kind, device, round)
    on_exchange: Callable[[str, int], None] | None = None

    def node_id(self, device_id: str) -> int:
        return sorted(self.devices).index(device_id) + 1

    def online_nodes(self) -> dict[str, int]:
        return {d: self.node_id(d) for d in self.devices if d not in self.offline}

    def exchange(
        self, kind: str, contents: Mapping[int, RecordDict], timeout: float
    ) -> dict[int, Reply]:
        names = {self.node_id(d): d for d in self.devices}
        replies: dict[int, Reply] = {}
        for node, content in contents.items():
            device = names[node]
            number = int(content.config_records["config"][ROUND_KEY])
            if self.on_exchange is not None:
                self.on_exchange(kind, number)
            self.calls.append((kind, device, number))
            if device in self.silent:
                continue
            work = local_train if kind == TRAIN else local_evaluate
            try:
                answer = work(self.devices[device], content)
            except DeviceNotReady as exc:
                replies[node] = Reply(error=str(exc))
                continue
            if kind == TRAIN and device in self.poison:
                answer = self.poison[device](content, answer)
            replies[node] = Reply(content=answer)
        assert kind in (TRAIN, EVALUATE)
        return replies

    def wait(self, seconds: float) -> None:
        pass


def poisoned_payload(reply: RecordDict, values: Callable[[np.ndarray], np.ndarray]) -> RecordDict:
    """The reply with its update's tensors replaced by `values(tensor)`, re-encoded as an
    honest payload would be (NaN values are written past the encoder, which refuses them)."""
    payload = reply.array_records["arrays"][RECORD_KEY].numpy().tobytes()
    update = decode(payload)
    sentinel = np.float32(1234.5678)
    changed = {name: values(a) for name, a in update.items()}
    finite = {
        n: np.where(np.isfinite(a), a, sentinel).astype(np.float32) for n, a in changed.items()
    }
    data = encode(finite, UplinkSpec.parse("none")).payload
    if any(not np.all(np.isfinite(a)) for a in changed.values()):
        data = data.replace(sentinel.tobytes(), np.float32(np.nan).tobytes())
    arrays = ArrayRecord({RECORD_KEY: Array(np.frombuffer(data, dtype=np.uint8).copy())})
    return RecordDict({"arrays": arrays, "metrics": reply.metric_records["metrics"]})


def nan_update(_content: RecordDict, reply: RecordDict) -> RecordDict:
    return poisoned_payload(reply, lambda a: np.full_like(a, np.nan))


def huge_update(_content: RecordDict, reply: RecordDict) -> RecordDict:
    return poisoned_payload(reply, lambda a: np.full_like(a, 100.0))
