"""Fuzz: truncated, bit-flipped, tampered and resealed patches give only the library's own
exception (a PatchError subclass), each case in bounded time and memory; never an IndexError,
MemoryError, a hang or a wrong model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterable
from pathlib import Path

import pytest
from delta_fuzz import (
    Model,
    header_mutations,
    huge_lengths,
    index_end,
    payload_mutations,
    sample,
    truncations,
)

from fedota.delta import Patch, PatchError, PatchTruncated, apply, model_hash
from fedota.delta.codecs import Codec, registered

CASE_SECONDS = 1.0  # one small patch: anything slower is a hang in the making
PEAK_BYTES = 32 << 20  # the sample model is a few KB; no case may allocate more than this


def run_cases(base: Model, patch: Patch, cases: Iterable[bytes]) -> dict[str, int]:
    """Apply each mutated patch; count outcomes; fail on any other exception or slow case."""
    outcomes: dict[str, int] = {}
    for raw in cases:
        started = time.perf_counter()
        try:
            result = apply(base, raw)
        except PatchError as exc:
            outcome = type(exc).__name__
        else:
            # A mutation that changed nothing that matters (a no-op bit) must give the target.
            assert model_hash(result) == patch.target_hash
            outcome = "same target"
        elapsed = time.perf_counter() - started
        assert elapsed < CASE_SECONDS, f"a case took {elapsed:.2f}s"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


@pytest.fixture(scope="module")
def fuzzed() -> tuple[Model, Patch, bytes]:
    base, patch = sample()
    return base, patch, patch.to_bytes()


@pytest.mark.timeout(120)
def test_truncation_at_every_offset_is_a_truncated_patch(
    fuzzed: tuple[Model, Patch, bytes],
) -> None:
    base, _, raw = fuzzed
    for cut in truncations(raw):
        with pytest.raises(PatchTruncated):
            apply(base, cut)
    assert len(raw) > 500  # the sample is big enough to reach every codec's payload


@pytest.mark.timeout(300)
def test_header_mutations_raw_and_resealed(fuzzed: tuple[Model, Patch, bytes]) -> None:
    base, patch, raw = fuzzed
    outcomes = run_cases(base, patch, header_mutations(raw, index_end(patch)))
    assert "same target" not in outcomes  # every header byte matters
    # Unsealed mutations are caught by the digest; resealed ones by the parser's own bounds.
    assert outcomes.get("PatchIntegrityError", 0) > 0
    assert outcomes.get("PatchFormatError", 0) + outcomes.get("PatchTruncated", 0) > 0


@pytest.mark.timeout(120)
def test_huge_length_fields_are_refused_before_allocating(
    fuzzed: tuple[Model, Patch, bytes],
) -> None:
    base, patch, raw = fuzzed
    tracemalloc.start()
    try:
        outcomes = run_cases(base, patch, huge_lengths(raw, index_end(patch)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BYTES, f"peak allocation {peak} bytes"
    assert "same target" not in outcomes
    assert outcomes.get("PatchTooLarge", 0) > 0


@pytest.mark.timeout(300)
@pytest.mark.parametrize("codec", [c.name for c in registered()])
def test_resealed_payload_mutations_meet_only_the_codecs_checks(codec: str) -> None:
    """Memory is bounded by the address-space test below (tracemalloc would slow the entropy
    codecs' many small allocations tenfold)."""
    base, patch = codec_sample(codec)
    outcomes = run_cases(base, patch, payload_mutations(patch))
    # Hashes were recomputed, so the codecs' decoders (or the target hash) must refuse them.
    assert outcomes.get("PatchFormatError", 0) + outcomes.get("TargetMismatch", 0) > 50


def codec_sample(codec: str) -> tuple[Model, Patch]:
    """The sample patch made with only `codec` (and raw where it does not apply)."""
    lossy = by_name(codec).lossy
    base, patch = sample((codec,), lossy=lossy)
    if not any(e.codec_id == by_name(codec).codec_id for e in patch.entries):
        pytest.skip(f"{codec} applies to none of the sample's tensors")
    return base, patch


def by_name(name: str) -> Codec:
    return next(c for c in registered() if c.name == name)


_CAPPED = """
import json, resource, sys
sys.path.insert(0, sys.argv[1])
from delta_fuzz import huge_lengths, index_end, payload_mutations, sample
from fedota.delta import PatchError, apply
from fedota.delta.codecs import registered

base, patch = sample()
raw = patch.to_bytes()
cases = [(base, case) for case in huge_lengths(raw, index_end(patch))]
for codec in registered():
    codec_base, codec_patch = sample((codec.name,), lossy=codec.lossy)
    cases += [(codec_base, case) for case in payload_mutations(codec_patch)]
with open("/proc/self/status") as status:
    vm = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
headroom = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (vm + headroom, vm + headroom))
try:  # the cap bites: twice the headroom cannot be had
    bytearray(2 * headroom)
    sys.exit("RLIMIT_AS did not apply")
except MemoryError:
    pass
count = 0
for model, case in cases:
    try:
        apply(model, case)
    except PatchError:
        pass
    count += 1
print(json.dumps({"cases": count}))
"""


@pytest.mark.timeout(300)
def test_fuzz_under_an_address_space_cap() -> None:
    """The hostile patches (huge lengths; every codec's resealed payload mutations) in a
    process that cannot map 256 MiB more than it started with: a huge allocation would be a
    MemoryError, which is not a PatchError, and fails the run."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    here = str(Path(__file__).parent)
    done = subprocess.run(
        [sys.executable, "-c", _CAPPED, here, str(256 << 20)],
        capture_output=True,
        text=True,
        env=env,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["cases"] > 1000
