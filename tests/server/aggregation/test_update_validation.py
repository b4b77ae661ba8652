"""Bad updates are rejected with a recorded reason, and the round completes with the rest."""

from __future__ import annotations

import numpy as np
import pytest
from aggregation_updates import honest_update

from fedota.delta.uplink import UplinkSpec, encode
from fedota.server.aggregation import (
    FedAvg,
    Krum,
    ModelSpec,
    NotEnoughUpdates,
    RejectReason,
    Round,
    UpdateLimits,
    validate_update,
)


def _bad(global_arrays: dict[str, np.ndarray], rng: np.random.Generator, kind: str) -> dict:
    update = honest_update(rng, global_arrays)
    name = "layers.0.lora_a"
    if kind == "nan":
        update[name][1, 2] = np.nan
    elif kind == "inf":
        update[name][0, 0] = -np.inf
    elif kind == "oversized":
        update[name] *= 1e4
    elif kind == "shape":
        update[name] = update[name].T.copy()
    elif kind == "dtype":
        update[name] = update[name].astype(np.float64)
    elif kind == "missing":
        del update[name]
    elif kind == "extra":
        update["layers.9.weight"] = np.zeros(3, np.float32)
    return update


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("nan", RejectReason.NOT_FINITE),
        ("inf", RejectReason.NOT_FINITE),
        ("oversized", RejectReason.NORM_TOO_LARGE),
        ("shape", RejectReason.WRONG_SHAPE),
        ("dtype", RejectReason.WRONG_DTYPE),
        ("missing", RejectReason.MISSING_TENSOR),
        ("extra", RejectReason.UNEXPECTED_TENSOR),
    ],
)
def test_bad_update_is_rejected_with_its_reason(
    global_arrays: dict, rng: np.random.Generator, kind: str, reason: RejectReason
) -> None:
    verdict = validate_update(
        _bad(global_arrays, rng, kind), 10, ModelSpec.of(global_arrays), UpdateLimits(max_norm=5.0)
    )
    assert not verdict.accepted
    assert verdict.reason is reason
    assert verdict.detail


@pytest.mark.parametrize("examples", [0, -3, float("nan"), float("inf"), 2_000_000])
def test_bad_example_count_is_rejected(
    global_arrays: dict, rng: np.random.Generator, examples: float
) -> None:
    verdict = validate_update(
        honest_update(rng, global_arrays), examples, ModelSpec.of(global_arrays), UpdateLimits()
    )
    assert verdict.reason is RejectReason.BAD_EXAMPLE_COUNT


def test_norm_detail_states_both_values(global_arrays: dict, rng: np.random.Generator) -> None:
    verdict = validate_update(
        _bad(global_arrays, rng, "oversized"), 1, ModelSpec.of(global_arrays), UpdateLimits(1.0)
    )
    assert "exceeds the bound 1" in verdict.detail and verdict.norm and verdict.norm > 1


def test_round_records_every_rejection_and_aggregates_only_the_sound_updates(
    global_arrays: dict, rng: np.random.Generator
) -> None:
    round_ = Round(FedAvg(), global_arrays, UpdateLimits(max_norm=5.0))
    good = [honest_update(rng, global_arrays) for _ in range(3)]
    for i, update in enumerate(good):
        assert round_.offer(f"good-{i}", encode(update, UplinkSpec()).payload, 10).accepted
    assert not round_.offer("nan", _bad(global_arrays, rng, "nan"), 10).accepted
    assert not round_.offer("big", _bad(global_arrays, rng, "oversized"), 10).accepted
    assert not round_.offer("junk", b"\x00" * 40, 10).accepted
    assert not round_.offer("good-0", good[0], 10).accepted  # a second update this round
    outcome = round_.finish()
    reasons = {r.client: r.reason for r in outcome.rejected}
    assert reasons == {
        "nan": RejectReason.NOT_FINITE,
        "big": RejectReason.NORM_TOO_LARGE,
        "junk": RejectReason.UNDECODABLE,
        "good-0": RejectReason.DUPLICATE,
    }
    assert [a.client for a in outcome.accepted] == ["good-0", "good-1", "good-2"]
    expected = {n: global_arrays[n] + np.mean([u[n] for u in good], axis=0) for n in global_arrays}
    for name in global_arrays:
        np.testing.assert_allclose(outcome.arrays[name], expected[name], rtol=1e-5, atol=1e-7)
    assert outcome.uplink_bytes == 3 * len(encode(good[0], UplinkSpec()).payload) + 40


def test_compressed_payload_with_wrong_shapes_is_undecodable(
    global_arrays: dict, rng: np.random.Generator
) -> None:
    round_ = Round(FedAvg(), global_arrays, UpdateLimits())
    payload = encode(_bad(global_arrays, rng, "shape"), UplinkSpec(topk=0.1)).payload
    verdict = round_.offer("d", payload, 5)
    assert verdict.reason is RejectReason.UNDECODABLE and "not expected" in verdict.detail


def test_round_with_no_sound_update_cannot_finish(global_arrays: dict, rng) -> None:
    round_ = Round(FedAvg(), global_arrays, UpdateLimits())
    round_.offer("nan", _bad(global_arrays, rng, "nan"), 10)
    with pytest.raises(NotEnoughUpdates, match="at least 1"):
        round_.finish()
    assert len(round_.records()[1]) == 1


def test_robust_round_rejects_updates_past_its_cap(global_arrays: dict, rng) -> None:
    round_ = Round(Krum(byzantine=0, max_updates=3), global_arrays, UpdateLimits())
    verdicts = [round_.offer(f"d{i}", honest_update(rng, global_arrays), 1) for i in range(5)]
    assert [v.accepted for v in verdicts] == [True, True, True, False, False]
    assert {v.reason for v in verdicts[3:]} == {RejectReason.ROUND_FULL}
    assert round_.state_nbytes == 3 * sum(a.nbytes for a in global_arrays.values())
