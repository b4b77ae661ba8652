"""`diff`: choose, per tensor, the smallest payload within its budget, and build the patch.

The released target is what devices will compute: each chosen payload is decoded right here
and must equal, bit for bit, what goes into `Patch.target` and the target hash (DESIGN.md: "the
released version *is* the base plus the decoded delta"); a codec that breaks this is a bug and
stops the diff rather than ship a patch the registry would disagree with. A codec whose encoder
releases through the decoder's own compiled arithmetic (`releases_as_decoder`: quant-ans) is
not decoded again: its tests hold it to that, and a device's target-hash check to the rest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

import numpy as np

import fedota.delta.codecs  # noqa: F401  (registers every codec)
from fedota.delta.codecs._planes import words
from fedota.delta.codecs.base import Budget, Codec, Encoded, by_id, registered
from fedota.delta.format import Entry, Op, Patch, make_header
from fedota.delta.hashing import ModelHasher
from fedota.delta.limits import DEFAULT_LIMITS, Limits
from fedota.delta.planning import plan_budgets
from fedota.delta.tensor import Tensor

Progress = Callable[[int, int], None]
CodecChoice = int | str | Codec
_FALLBACK = 0  # raw: applies to everything, never larger than the target's bytes
_SPARSE = "sparse"
# The best lossless coding of a dense float update measured so far is 26% of its bytes (real
# MiniLM fine-tune, diff-ans); a lossy payload under an eighth of the bytes is out of its reach.
LOSSLESS_FLOOR = 0.125
# diff-ans models the same integer difference the byte-level codecs (bitdiff, zstd) see, with
# contexts they lack; on the real MiniLM fine-tune and the synthetic sets it beat them on every
# tensor above 64 KiB (by 1.4x to 11x), and lost only on ~1.5 KB vectors, where its tables
# cost more than they save. Above that size, once any codec is under this fraction of the
# bytes, the byte-level codecs are not tried.
_MODELLED = "diff-ans"
_MODELLED_MIN_BYTES = 1 << 16
_MODELLED_ENOUGH = 0.9
# A codec that can estimate its payload from a sample (diff-ans: within a few percent) is not
# run when the estimate is this much above the best payload so far.
_ESTIMATE_MARGIN = 1.1


def diff(
    base: Mapping[str, Tensor],
    target: Mapping[str, Tensor],
    *,
    lossless: bool = False,
    max_error: Literal["fp16"] | None = None,
    max_rel_error: float | None = None,
    codecs: Iterable[CodecChoice] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    progress: Progress | None = None,
) -> Patch:
    """A patch from `base` to (a released version of) `target`, and that exact released target.

    Modes (at most one): `lossless` (the default when none is given: the released target is
    `target` bit for bit); `max_error="fp16"`: per float tensor, the released tensor is no
    further from the requested one in L2 than rounding it to fp16 would be (F16/BF16 tensors
    and tensors with NaN/Inf stay lossless); `max_rel_error=E`: one global quantization step so
    that ||released - target|| <= E ||target - base|| over every float tensor with a base.

    `codecs` restricts the candidates (ids, names or codec objects); raw (codec 0) remains the
    fall-back for a tensor no candidate can encode. Added tensors and tensors whose dtype or
    shape changed are coded without a base, losslessly.

    Raises:
        ValueError: conflicting modes, a bad `max_rel_error`, an unknown codec.
        PatchTooLarge: the patch would exceed `limits` (a device would refuse it).
        RuntimeError: a codec does not reproduce what it promised (a bug, never shipped).
    """
    candidates = _candidates(codecs)
    budgets = plan_budgets(
        base,
        target,
        lossless=lossless,
        max_error=max_error,
        max_rel_error=max_rel_error,
        lossy_codecs=any(codec.lossy for codec in candidates),
    )
    names = sorted(set(base) | set(target))
    total = sum(target[name].nbytes for name in target)
    base_hasher, target_hasher = ModelHasher(), ModelHasher()
    entries: list[Entry] = []
    payloads: list[bytes] = []
    released: dict[str, Tensor] = {}
    done = 0
    for name in names:
        old, new = base.get(name), target.get(name)
        if old is not None:
            base_hasher.add(name, old)
        if new is None:
            assert old is not None
            entries.append(Entry(name, Op.REMOVED, old.dtype, old.shape))
            payloads.append(b"")
            continue
        if old is not None and _same(old, new):
            entry, payload, result = Entry(name, Op.UNCHANGED, new.dtype, new.shape), b"", old
        else:
            entry, payload, result = _encode(name, old, new, budgets.get(name), candidates)
        entries.append(entry)
        payloads.append(payload)
        released[name] = result
        target_hasher.add(name, result)
        done += new.nbytes
        if progress is not None:
            progress(done, total)
    header = make_header(base_hasher.hexdigest(), target_hasher.hexdigest(), entries, limits=limits)
    return Patch(header, tuple(payloads), released)


def _encode(
    name: str,
    old: Tensor | None,
    new: Tensor,
    budget: Budget | None,
    candidates: list[Codec],
) -> tuple[Entry, bytes, Tensor]:
    """The smallest payload within budget, decoded back to the released tensor."""
    matched = old if old is not None and (old.dtype, old.shape) == (new.dtype, new.shape) else None
    budget = budget if matched is not None and budget is not None else Budget()
    best: tuple[Codec, Encoded] | None = None
    # Lossy codecs first: once one is under LOSSLESS_FLOOR of the tensor's bytes, no dense
    # lossless coding of a float update can beat it, so only the cheap sparse codec is tried.
    ordered = sorted(candidates, key=lambda codec: (not codec.lossy, codec.name != _MODELLED))
    for codec in ordered:
        if codec.lossy and budget.lossless:
            continue
        if best is not None and not codec.lossy and codec.name != _SPARSE:
            size = len(best[1].payload)
            if best[0].lossy and size < LOSSLESS_FLOOR * new.nbytes:
                continue
            if (
                codec.name != _MODELLED
                and new.nbytes >= _MODELLED_MIN_BYTES
                and size < _MODELLED_ENOUGH * new.nbytes
            ):
                continue
        estimate = getattr(codec, "estimate", None)
        if best is not None and estimate is not None:
            guess = estimate(matched, new)
            if guess is None or guess > _ESTIMATE_MARGIN * len(best[1].payload):
                continue
        encoded = codec.encode(matched, new, budget)
        if encoded is None or not _within(encoded, budget):
            continue
        size = len(encoded.payload)
        if best is None or size < len(best[1].payload):
            best = (codec, encoded)
        elif size == len(best[1].payload) and best[0].lossy and not codec.lossy:
            best = (codec, encoded)  # a tie goes to the exact encoding
    if best is None:
        codec = by_id(_FALLBACK)
        assert codec is not None
        encoded = codec.encode(matched, new, Budget())
        assert encoded is not None
        best = (codec, encoded)
    codec, encoded = best
    expected = encoded.target if codec.lossy else new
    if not getattr(codec, "releases_as_decoder", False):
        result = codec.decode(matched, new.dtype, new.shape, encoded.payload)
        if not _same(result, expected):
            raise RuntimeError(f"codec {codec.name} does not reproduce {name} bit for bit")
    op = Op.CHANGED if old is not None else Op.ADDED
    digest = hashlib.sha256(encoded.payload).digest()
    entry = Entry(name, op, new.dtype, new.shape, codec.codec_id, len(encoded.payload), digest)
    # `expected` is bit-equal to the decoded tensor; keeping it (the caller's own array when
    # lossless) rather than the decoded copy spares a second copy of the model in memory.
    return entry, encoded.payload, expected


def _within(encoded: Encoded, budget: Budget) -> bool:
    if budget.lossless:
        return encoded.error_sq == 0.0
    if budget.step is not None:
        return True  # a global step: the plan's bisection bounds the total error
    return encoded.error_sq <= budget.max_error_sq


def _same(a: Tensor, b: Tensor) -> bool:
    """Equal dtype, shape and bits (so NaN payloads and -0.0 count as themselves)."""
    return (a.dtype, a.shape) == (b.dtype, b.shape) and np.array_equal(words(a), words(b))


def _candidates(codecs: Iterable[CodecChoice] | None) -> list[Codec]:
    """The codecs to try, in id order (ties keep the lower id); by default every registered
    codec but the superseded ones (kept so that their patches still decode)."""
    if codecs is None:
        return [codec for codec in registered() if not getattr(codec, "superseded", False)]
    by_name = {codec.name: codec for codec in registered()}
    chosen: dict[int, Codec] = {}
    for choice in codecs:
        if isinstance(choice, str):
            codec = by_name.get(choice)
        elif isinstance(choice, int):
            codec = by_id(choice)
        else:
            codec = choice
        if codec is None or by_id(codec.codec_id) is None:
            raise ValueError(f"unknown codec {choice!r}; known: {sorted(by_name)}")
        chosen[codec.codec_id] = codec
    return [chosen[key] for key in sorted(chosen)]


__all__ = ["diff"]
