"""One model variant in a fresh process: memory, speed on one thread, and serving.

The parent writes a spec (model, variant, file, plan, payload) and runs
`python benchmarks/_inference_child.py SPEC`, a script of its own so that the child imports no
more than serving needs (its RSS is the variant's plus the daemon's code). The child loads the
variant as the daemon does, measures it in process with `torch.set_num_threads(1)` (speeds per
CPU second), reads its own peak RSS (so each variant's peak is its own), then serves it on a
Unix socket twice, with dynamic batching and one request at a time, while `_inference_load.py`
drives it from another process. It prints one JSON line.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import best_of, log, peak_rss_bytes, timed
from _inference_memory import held_tensor_bytes, int4_allowance, rss_mb
from _inference_plan import MODES, Plan
from _inference_served import KV_BLOCK, BenchModel, Loaded, engine_factory, load, module_of

from fedota.client.inference import InferenceConfig, InferenceServer
from fedota.ml.lm import GenerationEngine, GenerationRequest, blocks_needed
from fedota.ml.quant.native import native_status

_HERE = Path(__file__).resolve().parent
_LOAD = _HERE / "_inference_load.py"


def run_child(spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run one variant's child (in the parent); its JSON, or `{"error": ...}`."""
    path = work / f"spec-{spec['model']}-{spec['variant']}.json"
    path.write_text(json.dumps(spec))
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), str(path)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return {"error": tail[0]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(spec_path: str) -> int:
    """The child's entry point: measure the variant the spec names, print one JSON line."""
    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(1)
    plan = Plan.from_dict(spec["plan"])
    work = Path(spec_path).parent
    record: dict[str, Any] = {"rss_after_imports_mb": rss_mb()}
    with timed() as box:
        loaded = load(spec["model"], spec["variant"], spec.get("path"))
    record["load_wall_s"] = round(box[0].wall_s, 2)
    gc.collect()  # what loading left unreferenced in cycles is not the variant's
    record["rss_after_load_mb"] = rss_mb()
    record["peak_rss_after_load_mb"] = round(peak_rss_bytes() / 1e6, 1)
    record["weight_bytes"] = loaded.info.weight_bytes
    log(f"  {spec['model']} {spec['variant']}: in-process speed")
    record["in_process"] = in_process(
        loaded, spec["payload"], plan, work / f"{spec['model']}-{spec['variant']}"
    )
    module = module_of(loaded)
    if module is not None:  # after the workload: no layer may have kept a dequantized copy
        record["held_tensor_bytes_after_run"] = held_tensor_bytes(module)
        allowance = int4_allowance(module)
        if allowance["int4_layers"]:
            record["int4_after_run"] = allowance
    record["peak_rss_mb"] = round(peak_rss_bytes() / 1e6, 1)
    log(f"  {spec['model']} {spec['variant']}: serving")
    record["serving"] = serve(loaded, spec["payload"], plan, work)
    record["peak_rss_with_server_mb"] = round(peak_rss_bytes() / 1e6, 1)
    record["kernels"] = native_status()
    print(json.dumps(record))
    return 0


# ---------------------------------------------------------------- in process, one thread


def _cpu_latency_ms(call: Callable[[Any], object], inputs: Sequence[Any]) -> dict[str, Any]:
    samples = []
    for value in inputs:
        with timed() as box:
            call(value)
        samples.append(box[0].cpu_s * 1000)
    return {
        "p50": round(float(np.percentile(samples, 50)), 4),
        "p95": round(float(np.percentile(samples, 95)), 4),
        "samples": len(samples),
    }


def in_process(loaded: Loaded, payload: dict[str, Any], plan: Plan, stem: Path) -> dict[str, Any]:
    """Single-request latency and throughput per CPU second, without the server."""
    if loaded.kind == "predict":
        assert loaded.predict is not None
        predict = loaded.predict
        rows = np.asarray(payload["rows"], dtype=np.float32)
        singles = [rows[i % len(rows)][None] for i in range(plan.latency_samples)]
        predict(rows)  # warm-up
        _, timing = best_of(max(3, plan.gen_repeats), lambda: [predict(rows) for _ in range(20)])
        return {
            "latency_ms": _cpu_latency_ms(predict, singles),
            "batch": len(rows),
            "rows_per_cpu_s": round(20 * len(rows) / max(timing.cpu_s, 1e-9), 1),
        }
    if loaded.kind == "embed":
        assert loaded.embed is not None
        handle = loaded.handle
        texts = payload["heldout"]
        handle.embed(texts[: plan.minilm_batch], batch_size=plan.minilm_batch)  # warm-up
        vectors, timing = best_of(
            plan.gen_repeats, lambda: handle.embed(texts, batch_size=plan.minilm_batch)
        )
        np.save(stem.with_suffix(".npy"), vectors.numpy())
        singles = [[texts[i % len(texts)]] for i in range(plan.latency_samples)]
        return {
            "latency_ms": _cpu_latency_ms(loaded.embed, singles),
            "batch": plan.minilm_batch,
            "sentences": len(texts),
            "sentences_per_cpu_s": round(len(texts) / max(timing.cpu_s, 1e-9), 2),
        }
    prompts = [p.encode() for p in payload["prompts"]]
    return {
        "batch_1": generation(loaded.handle, prompts, plan, 1),
        "batched": generation(loaded.handle, prompts, plan, plan.gen_batch),
    }


def generation(
    module: torch.nn.Module, prompts: list[bytes], plan: Plan, batch: int
) -> dict[str, Any]:
    """Decoding speed of `batch` sequences together: the tokens after the first step (which
    admits and prefills every prompt) per CPU second; best of `plan.gen_repeats`."""
    longest = max(len(p) for p in prompts) + 1 + plan.gen_new_tokens
    blocks = batch * blocks_needed(longest, KV_BLOCK, module.config.window)  # type: ignore[union-attr]

    def once() -> tuple[int, float, float]:
        engine = GenerationEngine(module, max_batch=batch, kv_blocks=blocks)
        for i in range(batch):
            engine.submit(GenerationRequest(prompts[i % len(prompts)], plan.gen_new_tokens))
        with timed() as first:
            engine.step()
        tokens = 0
        with timed() as decode:
            while engine.active or engine.waiting:
                tokens += sum(1 for event in engine.step() if event.token)
        return tokens, first[0].cpu_s, decode[0].wall_s

    once()  # warm-up: kernels loaded, caches touched
    (tokens, prefill_cpu, wall), timing = best_of(plan.gen_repeats, once)
    decode_cpu = timing.cpu_s - prefill_cpu
    return {
        "batch": batch,
        "decode_tokens": tokens,
        "tokens_per_cpu_s": round(tokens / max(decode_cpu, 1e-9), 1),
        "tokens_per_wall_s": round(tokens / max(wall, 1e-9), 1),
        "first_step_cpu_ms": round(prefill_cpu * 1000, 2),
    }


# ---------------------------------------------------------------- serving


def serve(loaded: Loaded, payload: dict[str, Any], plan: Plan, work: Path) -> dict[str, Any]:
    """The variant behind a real `InferenceServer`, batched and one at a time, each driven by
    the load generator at every concurrency level of the plan."""
    clients = max(plan.concurrency)
    out: dict[str, Any] = {}
    for mode in MODES:
        batched = mode == "batched"
        config = InferenceConfig() if batched else InferenceConfig(max_batch=1)
        engine = None
        if loaded.kind == "generate":
            longest = max(len(p) for p in payload["prompts"]) + 1 + plan.serve_new_tokens
            engine = engine_factory(
                loaded,
                max_batch=clients if batched else 1,
                waiting=clients,
                sequence_tokens=longest,
            )
        socket_path = work / f"{mode[0]}.sock"
        served = BenchModel(loaded, engine=engine)
        server = InferenceServer(served, socket_path=socket_path, config=config)
        server.start()
        try:
            with timed() as box:
                out[mode] = _drive(server.unix_target or "", loaded.kind, payload, plan, work, mode)
        finally:
            server.stop(1.0)
        # Over the whole mode (every level and its warm-up): how much of the server's CPU ran
        # the model; the rest is gRPC, handler threads and queues.
        out[mode]["server_cpu_s_total"] = round(box[0].cpu_s, 3)
        out[mode]["model_cpu_s_total"] = round(served.model_cpu_s, 3)
        out[mode]["model_cpu_share"] = round(served.model_cpu_s / max(box[0].cpu_s, 1e-9), 4)
        out[mode]["config"] = {
            "max_batch": config.max_batch if loaded.kind != "generate" else None,
            "max_wait_ms": config.max_wait * 1000 if loaded.kind != "generate" else None,
            "engine_max_batch": (clients if batched else 1) if loaded.kind == "generate" else None,
        }
    return out


def _drive(
    target: str, kind: str, payload: dict[str, Any], plan: Plan, work: Path, mode: str
) -> dict[str, Any]:
    spec = {
        "target": target,
        "kind": kind,
        "server_pid": os.getpid(),
        "concurrency": list(plan.concurrency),
        "seconds": plan.serve_seconds_generate if kind == "generate" else plan.serve_seconds,
        "payload": {**payload, "new_tokens": plan.serve_new_tokens},
    }
    path = work / f"load-{mode}.json"
    path.write_text(json.dumps(spec))
    done = subprocess.run(
        [sys.executable, str(_LOAD), str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return {"error": tail[0]}
    return json.loads(done.stdout.strip().splitlines()[-1])


__all__ = ["child", "generation", "in_process", "run_child", "serve"]


if __name__ == "__main__":
    sys.exit(child(sys.argv[1]))
