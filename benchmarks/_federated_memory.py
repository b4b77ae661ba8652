"""Client peak training memory: the quantized base + LoRA against fp32 full fine-tuning.

Each variant trains in a fresh process (`python _federated_memory.py VARIANT SPEC_JSON`, which
imports only torch and `fedota.ml`), on one thread, a few steps of `fedota.ml.finetune.finetune`
over generated text, and reports two figures:

- `training_peak_bytes` (the target's): the process's peak resident memory while training
  (VmHWM, reset after the model is built) minus its resident memory before any model existed,
  after the imports and a one-step warm-up on a tiny model (what the first training step of any
  model pages in once). It is what the device's operating system sees the training hold:
  weights, gradients, optimizer state, activations, kernel workspaces, allocator slack.
  Building a quantized model passes through the fp32 one; that transient is freed (and
  trimmed back to the OS) before the reset, so it is not counted, but anything of it the
  allocator keeps is (it counts against the quantized variants).
- `meter_peak_bytes`: `finetune`'s own tensor count (`_MemoryMeter`: each storage once,
  weights and buffers, gradients, optimizer moments, autograd's saved activations), which
  leaves out the allocator and the interpreter: the same comparison without process noise.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import log

_SCRIPT = Path(__file__).resolve()
VARIANTS = ("fp32-full", "int8-lora", "int4-lora")
WARMUP_SHAPE = {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 128}


def _status(key: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: clear_refs 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def _trim() -> None:
    gc.collect()
    # Not glibc: freed memory may stay counted, which only overstates a variant.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def child(variant: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Build the variant, train `steps` steps, and report its memory (runs in the child)."""
    import torch

    from fedota.ml.finetune import FinetuneConfig, LanguageTask, TrainMetrics, finetune
    from fedota.ml.lm import ByteLM, LMConfig, generate_corpus
    from fedota.ml.lora import LoRAConfig, make_trainable
    from fedota.ml.quant import quantize_model

    torch.set_num_threads(1)
    seq_len = spec["seq_len"]
    # Full windows only, enough for every step: each example is seq_len bytes of generated text.
    corpus = generate_corpus(spec["batch"] * spec["steps"] * seq_len // 8, seed=1).decode("ascii")
    examples = [corpus[i : i + seq_len] for i in range(0, len(corpus) - seq_len, seq_len)]
    examples = examples[: spec["batch"] * spec["steps"]]

    def build(shape: dict[str, int]) -> torch.nn.Module:
        torch.manual_seed(0)
        model: torch.nn.Module = ByteLM(LMConfig(**shape))
        if variant != "fp32-full":
            model = quantize_model(model, "int8" if variant.startswith("int8") else "int4")
            rank = spec["lora_rank"]
            make_trainable(model, LoRAConfig(rank=rank, alpha=2.0 * rank))
        return model

    def train(model: torch.nn.Module, steps: int) -> TrainMetrics:
        config = FinetuneConfig(learning_rate=1e-4, batch_size=spec["batch"], max_steps=steps)
        return finetune(model, examples, LanguageTask(seq_len=seq_len), config).metrics

    _trim()
    after_imports = _status("VmRSS")
    # Warm-up: one step of the same variant on a tiny model of the same batch shape, so the
    # baseline already holds what any first training step pages in once (library code, lazy
    # initialisation: about 90 MB here, the same for every variant and model size).
    train(build({**spec["lm"], **WARMUP_SHAPE}), 1)
    _trim()
    baseline = _status("VmRSS")
    started = time.process_time()
    model = build(spec["lm"])
    _trim()
    after_load = _status("VmRSS")
    reset = _reset_peak()
    metrics = train(model, spec["steps"])
    peak = _status("VmHWM")
    held = {
        t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
        for t in model.state_dict().values()
    }
    return {
        "variant": variant,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "model_tensor_bytes": sum(held.values()),
        "steps": metrics.steps,
        "rss_after_imports_mb": _mb(after_imports),
        "rss_after_warmup_mb": _mb(baseline),
        "rss_after_load_mb": _mb(after_load),
        "peak_rss_mb": _mb(peak),
        "peak_reset_after_load": reset,
        "training_peak_bytes": None if peak is None or baseline is None else peak - baseline,
        "meter_peak_bytes": metrics.peak_memory_bytes,
        "cpu_s": round(time.process_time() - started, 2),
    }


def _mb(value: int | None) -> float | None:
    return None if value is None else round(value / 1e6, 1)


def child_main(argv: list[str]) -> int:
    """`VARIANT SPEC_JSON`: one JSON line on stdout."""
    print(json.dumps(child(argv[0], json.loads(argv[1]))))
    return 0


def _run(variant: str, spec: dict[str, Any]) -> dict[str, Any]:
    environment = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    command = [sys.executable, str(_SCRIPT), variant, json.dumps(spec)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=900, check=False, env=environment
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return {"variant": variant, "error": tail[0]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(lm: dict[str, int], *, steps: int, batch: int, seq_len: int, lora_rank: int) -> dict:
    """Every variant in its own process, and each quantized one's ratios to fp32 full FT."""
    spec = {"lm": lm, "steps": steps, "batch": batch, "seq_len": seq_len, "lora_rank": lora_rank}
    variants = {}
    for variant in VARIANTS:
        log(f"memory: {variant}, batch {batch} x {seq_len} bytes")
        variants[variant] = _run(variant, spec)
    full = variants["fp32-full"]
    ratios: dict[str, Any] = {}
    for name in VARIANTS[1:]:
        run = variants[name]
        ratios[name] = {
            key: (
                round(run[key] / full[key], 4)
                if isinstance(run.get(key), int) and isinstance(full.get(key), int) and full[key]
                else None
            )
            for key in ("training_peak_bytes", "meter_peak_bytes")
        }
    return {
        "workload": {"steps": steps, "batch": batch, "seq_len": seq_len, "lora_rank": lora_rank},
        "variants": variants,
        "ratio_vs_fp32_full": ratios,
    }


__all__ = ["VARIANTS", "child", "child_main", "measure"]


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
