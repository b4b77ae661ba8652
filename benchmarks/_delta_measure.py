"""The delta benchmark's measurements: per mode and codec (size, exactness, error, speed), peak
memory in fresh processes, and every figure of one dataset or of the fine-tuned MiniLM."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from _common import best_of, log, peak_rss_bytes, ratio, timed
from _delta_baselines import baselines
from _delta_bound import rate_bound
from _delta_data import (
    Model,
    Plan,
    changed_fraction,
    fp16_budget,
    model_bytes,
    model_hash,
    rel_l2,
    save_bytes,
    to_arrays,
    to_model,
)
from _delta_library import MODES, DeltaLib, Released, warm_up
from _delta_minilm import (
    deviation,
    embeddings,
    finetune_minilm,
    fp16_cast,
    heldout_sentences,
    load_minilm,
    minilm_missing,
)
from safetensors.numpy import load_file, save_file

T = TypeVar("T")
# The memory children run the CLI (`delta.py --child ...`), the script a user starts.
_SCRIPT = Path(__file__).resolve().with_name("delta.py")


def measure(
    lib: DeltaLib, base: Model, trained: Model, mode: str, codec: str | None, plan: Plan
) -> tuple[dict[str, Any], Released]:
    """Diff (+ serialize) and apply (parse + apply) timed per core, size, exactness, error."""
    repeats = plan.repeats if codec is None else 1
    released, t_diff = best_of(repeats, lambda: lib.diff(base, trained, mode, codec))
    applied, t_apply = best_of(repeats, lambda: lib.apply(base, released.patch))
    total = model_bytes(trained)
    record: dict[str, Any] = {
        "patch_bytes": len(released.patch),
        "ratio": ratio(len(released.patch), total),
        "bit_exact": model_hash(applied) == model_hash(released.target),
        "rel_error": rel_l2(base, trained, released.target),
        "diff_mb_s_per_core": t_diff.mb_s_per_core(total),
        "apply_mb_s_per_core": t_apply.mb_s_per_core(total),
        "diff_wall_s": round(t_diff.wall_s, 3),
        "apply_wall_s": round(t_apply.wall_s, 3),
        "codecs": released.codecs,
    }
    if mode == "lossless":
        record["released_is_trained"] = model_hash(released.target) == model_hash(trained)
    if mode == "max_error_fp16":
        record["fp16_budget"] = fp16_budget(trained, released.target)
    return record, released


def run_modes(
    lib: DeltaLib, base: Model, trained: Model, plan: Plan, *, forced: bool = True
) -> tuple[dict[str, Any], dict[str, Released]]:
    """Each mode with the encoder's own choice, then (if `forced`) with each codec alone.

    A mode or codec that raises is recorded as `{"error": ...}`: a finding, not a crash.
    """
    out: dict[str, Any] = {}
    released: dict[str, Released] = {}
    for mode in MODES:
        log(f"  {mode}: auto")
        auto = _attempt(lambda m=mode: measure(lib, base, trained, m, None, plan))
        if isinstance(auto, tuple):
            out[mode] = {"auto": auto[0]}
            released[mode] = auto[1]
        else:
            out[mode] = {"auto": auto}
        if not forced:
            continue
        per_codec: dict[str, Any] = {}
        for name in lib.codec_names():
            if lib.lossy(name) != (mode != "lossless"):
                continue  # a lossless codec meets any budget; the lossy ones need one
            log(f"  {mode}: {name}")
            got = _attempt(lambda m=mode, c=name: measure(lib, base, trained, m, c, plan))
            per_codec[name] = got[0] if isinstance(got, tuple) else got
        out[mode]["codecs"] = per_codec
    return out, released


def _attempt(call: Callable[[], T]) -> T | dict[str, str]:
    try:
        return call()
    except Exception as exc:  # reported in the JSON, with the library's own message
        log(f"    error: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"}


# ---------------------------------------------------------------- peak memory, in subprocesses


def child(argv: list[str]) -> int:
    """`--child apply BASE PATCH OUT` or `--child diff BASE TARGET OUT MODE`: one JSON line.

    The library is warmed up first, so the RSS before the work includes its loaded kernels and
    the times are the steady state's.
    """
    lib = DeltaLib()
    warm_up(lib)
    before = peak_rss_bytes()
    with timed() as box:
        if argv[0] == "apply":
            lib.apply_file(Path(argv[1]), Path(argv[2]), Path(argv[3]))
        else:
            base, target = to_model(load_file(argv[1])), to_model(load_file(argv[2]))
            Path(argv[3]).write_bytes(lib.diff(base, target, argv[4], None).patch)
    print(
        json.dumps(
            {
                "peak_rss_mb": round(peak_rss_bytes() / 1e6, 1),
                "rss_after_imports_mb": round(before / 1e6, 1),
                "cpu_s": round(box[0].cpu_s, 3),
                "wall_s": round(box[0].wall_s, 3),
                "streaming": argv[0] == "apply" and lib.streaming_apply is not None,
            }
        )
    )
    return 0


def _run_child(*args: str) -> dict[str, Any]:
    command = [sys.executable, str(_SCRIPT), "--child", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or ["exit " + str(done.returncode)]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory(base: Model, trained: Model, released: Mapping[str, Released]) -> dict[str, Any]:
    """Peak RSS of diff and of a file-to-file apply, each in a fresh process."""
    with tempfile.TemporaryDirectory(prefix="fedota-bench-delta-") as tmp:
        work = Path(tmp)
        save_file(to_arrays(base), str(work / "base.safetensors"))
        save_file(to_arrays(trained), str(work / "target.safetensors"))
        out: dict[str, Any] = {
            "base_file_mb": round((work / "base.safetensors").stat().st_size / 1e6, 1),
            "largest_tensor_mb": round(max(t.nbytes for t in base.values()) / 1e6, 1),
        }
        for mode in [m for m in ("lossless", "max_error_fp16") if m in released]:
            (work / "patch").write_bytes(released[mode].patch)
            run = _run_child(
                "apply",
                str(work / "base.safetensors"),
                str(work / "patch"),
                str(work / "out.safetensors"),
            )
            if "error" not in run:
                got = to_model(load_file(str(work / "out.safetensors")))
                run["output_bit_exact"] = model_hash(got) == model_hash(released[mode].target)
            out[f"apply_{mode}"] = run
        out["diff_lossless"] = _run_child(
            "diff",
            str(work / "base.safetensors"),
            str(work / "target.safetensors"),
            str(work / "p2"),
            "lossless",
        )
    return out


# ---------------------------------------------------------------- datasets


def run_dataset(
    lib: DeltaLib | None,
    why_not: str | None,
    description: str,
    base: Model,
    trained: Model,
    plan: Plan,
    *,
    full: bool = True,
) -> tuple[dict[str, Any], dict[str, Released]]:
    """Every figure for one (base, trained) pair; `full=False` runs only the encoder's choice."""
    record: dict[str, Any] = {
        "description": description,
        "tensors": len(trained),
        "parameters": sum(t.numel for t in trained.values()),
        "target_bytes": model_bytes(trained),
        "target_file_bytes": len(save_bytes(to_arrays(trained))),
        "changed_fraction": changed_fraction(base, trained),
    }
    if full:
        log("  baselines (zstd, zipnn)")
        record["baselines"] = baselines(base, trained, plan)
    if lib is None:
        record["modes"] = {"skipped": why_not}
        return record, {}
    record["modes"], released = run_modes(lib, base, trained, plan, forced=full)
    if released:
        record["largest_patch_vs_target_file"] = max(
            ratio(len(r.patch), record["target_file_bytes"]) for r in released.values()
        )
    if full and plan.measure_memory:
        log("  peak memory (subprocesses)")
        record["memory"] = memory(base, trained, released)
    return record, released


def run_minilm(lib: DeltaLib | None, why_not: str | None, plan: Plan) -> dict[str, Any]:
    """Fine-tune the packaged MiniLM, then every figure plus the embedding deviations."""
    missing = minilm_missing()
    if missing is not None:
        return {"skipped": missing}
    log("minilm: loading and fine-tuning")
    st, base = load_minilm()
    trained, info = finetune_minilm(st, base, plan)
    log(f"minilm: fine-tuned ({info['wall_s']} s); measuring")
    record, released = run_dataset(lib, why_not, "all-MiniLM-L6-v2 fine-tuned", base, trained, plan)
    record["finetune"] = info
    sentences = heldout_sentences(plan.heldout_sentences, np.random.default_rng(plan.seed + 2))
    reference = embeddings(st, trained, sentences)
    dev = {
        "sentences": len(sentences),
        "fp16_cast": deviation(reference, embeddings(st, fp16_cast(trained), sentences)),
        "base_model": deviation(reference, embeddings(st, base, sentences)),
    }
    for mode, r in released.items():
        if mode != "lossless":
            dev[mode] = deviation(reference, embeddings(st, r.target, sentences))
    record["embedding_deviation"] = dev
    if "max_error_fp16" in released:
        record["fp16_rate_bound"] = rate_bound(base, trained, released["max_error_fp16"].patch)
    return record
