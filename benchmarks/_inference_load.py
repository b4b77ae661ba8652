"""The serving benchmark's client side: closed-loop callers of the local inference API.

    python benchmarks/_inference_load.py SPEC.json        # one JSON line on stdout

Runs in its own process (so its Python never competes for the server's GIL) and imports only
gRPC and the generated stubs. For each concurrency level, that many threads, each on its own
channel (as separate apps would be), call the server back to back: one warm-up call each, then
a window of `seconds` that starts for all of them at once. Only what completes inside the window
counts: requests for Predict and Embed, streamed tokens for Generate (streams still open when the
window closes are cancelled). The server's CPU time over the same window is read from
/proc/<pid>/stat, so throughput is also given per server CPU second, which a shared machine
disturbs far less than wall time.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc

from fedota.protos.v1 import inference_pb2 as pb
from fedota.protos.v1 import inference_pb2_grpc as pb_grpc

_CLOCK_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process `pid` (all its threads); None where /proc is absent."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After the command name: state is field 3, utime field 14 and stime field 15 (man 5 proc).
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICK


@dataclass
class _Caller:
    """One client thread's tally inside the window."""

    requests: int = 0
    items: int = 0
    latencies: list[float] = field(default_factory=list)
    first_tokens: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


class _Window:
    """Start and end of the measured window, shared by the callers."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = 0.0
        self.end = float("inf")
        self.closed = threading.Event()
        self.calls: set[Any] = set()
        self.lock = threading.Lock()

    def open(self) -> None:
        self.start = time.perf_counter()
        self.end = self.start + self.seconds


def _request(kind: str, payload: dict[str, Any], index: int, warm: bool) -> Any:
    if kind == "predict":
        rows = payload["rows"]
        return pb.PredictRequest(features=rows[index % len(rows)])
    if kind == "embed":
        texts = payload["texts"]
        return pb.EmbedRequest(texts=[texts[index % len(texts)]])
    prompts = payload["prompts"]
    return pb.GenerateRequest(
        prompt=prompts[index % len(prompts)].encode(),
        max_new_tokens=2 if warm else payload["new_tokens"],
    )


def _call(stub: Any, kind: str, request: Any, window: _Window, tally: _Caller) -> None:
    sent = time.perf_counter()
    if kind != "generate":
        method = stub.Predict if kind == "predict" else stub.Embed
        method(request, timeout=120)
        done = time.perf_counter()
        if window.start <= sent and done <= window.end:
            tally.requests += 1
            tally.items += 1
            tally.latencies.append(done - sent)
        return
    call = stub.Generate(request, timeout=120)
    with window.lock:
        window.calls.add(call)
    try:
        first = True
        for chunk in call:
            now = time.perf_counter()
            if now > window.end:
                break
            if chunk.token and now >= window.start:
                tally.items += len(chunk.token)  # a chunk carries one or more byte tokens
                if first:
                    tally.first_tokens.append(now - sent)
            first = first and not chunk.token
            if chunk.finished and window.start <= sent:
                tally.requests += 1
                tally.latencies.append(now - sent)
    finally:
        with window.lock:
            window.calls.discard(call)
        call.cancel()


def _worker(
    target: str,
    kind: str,
    payload: dict[str, Any],
    seed: int,
    barrier: threading.Barrier,
    window: _Window,
    tally: _Caller,
) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.LocalInferenceStub(channel)
        _call(stub, kind, _request(kind, payload, seed, warm=True), _Window(0.0), _Caller())
        barrier.wait()
        index = seed
        while not window.closed.is_set():
            index += 1
            try:
                _call(stub, kind, _request(kind, payload, index, warm=False), window, tally)
            except grpc.RpcError as error:
                if not window.closed.is_set():
                    tally.errors[error.code().name] += 1  # type: ignore[attr-defined]
                    time.sleep(0.001)  # a refused caller retries, but does not spin


def _percentiles_ms(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "samples": 0}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"p50": pick(0.50), "p95": pick(0.95), "samples": len(ordered)}


def run_level(spec: dict[str, Any], clients: int) -> dict[str, Any]:
    """`clients` closed-loop callers for one window; the figures of that window."""
    window = _Window(spec["seconds"])
    marks: dict[str, float | None] = {}

    def start() -> None:
        marks["server"] = process_cpu_s(spec["server_pid"])
        marks["client"] = time.process_time()
        window.open()

    barrier = threading.Barrier(clients + 1, action=start)
    tallies = [_Caller() for _ in range(clients)]
    threads = [
        threading.Thread(
            target=_worker,
            args=(spec["target"], spec["kind"], spec["payload"], i * 7919, barrier, window, t),
            daemon=True,
        )
        for i, t in enumerate(tallies)
    ]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=120)
    time.sleep(max(0.0, window.end - time.perf_counter()))
    server_end = process_cpu_s(spec["server_pid"])
    client_cpu = time.process_time() - (marks["client"] or 0.0)
    window.closed.set()
    with window.lock:
        for call in list(window.calls):
            call.cancel()
    for thread in threads:
        thread.join(timeout=120)
    server_cpu = None
    if server_end is not None and marks["server"] is not None:
        server_cpu = round(server_end - marks["server"], 3)
    items = sum(t.items for t in tallies)
    errors: Counter[str] = Counter()
    for tally in tallies:
        errors.update(tally.errors)
    level = {
        "clients": clients,
        "window_s": spec["seconds"],
        "requests": sum(t.requests for t in tallies),
        "items": items,
        "items_per_s": round(items / spec["seconds"], 2),
        "server_cpu_s": server_cpu,
        "items_per_server_cpu_s": round(items / server_cpu, 2) if server_cpu else None,
        "client_cpu_s": round(client_cpu, 3),
        "latency_ms": _percentiles_ms([x for t in tallies for x in t.latencies]),
        "errors": dict(errors),
    }
    if spec["kind"] == "generate":
        level["first_token_ms"] = _percentiles_ms([x for t in tallies for x in t.first_tokens])
    return level


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    levels = {}
    for clients in spec["concurrency"]:
        levels[str(clients)] = run_level(spec, clients)
        time.sleep(spec.get("settle_s", 0.3))  # cancelled streams wind down on the server
    print(json.dumps({"levels": levels}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
