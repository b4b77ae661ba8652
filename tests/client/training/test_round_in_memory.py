"""Device rounds and the coordinator's aggregation, wired through Flower's records in memory:
int8 devices train LoRA adapters, privatize and compress; the server decodes, validates and
averages; the merged model beats its base."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict

from fedota.client.training import ResidualStore, run_round
from fedota.client.training.records import global_arrays, reply_content
from fedota.ml.digits import accuracy, load_digits_data, train_digits
from fedota.ml.finetune import DigitsTask, FinetuneConfig, RoundPlan
from fedota.ml.lora import LoRAConfig, load_trainable_state, make_trainable, merge_lora
from fedota.ml.lora import trainable_state as trainable
from fedota.ml.quant import quantize_model
from fedota.server.aggregation import DpParams, ModelSpec, RejectReason, Round, TrainingSettings
from fedota.server.aggregation.records import arrays_to_record, offer_reply


@pytest.fixture(scope="module")
def fleet():
    """The digits split, an fp32 base trained on the first 150 images only (~63% accurate: the
    fleet's data has much to add), and four devices' skewed shards."""
    torch.set_num_threads(1)
    data = load_digits_data(seed=0)
    first = replace(data, x_train=data.x_train[:150], y_train=data.y_train[:150])
    base, _ = train_digits(seed=0, epochs=5, data=first)
    rng = np.random.default_rng(0)
    shards = []
    for device in range(4):
        favoured = np.isin(data.y_train, [(device * 3 + k) % 10 for k in range(4)])
        pick = np.flatnonzero(favoured)[:150].tolist() + rng.choice(len(data.y_train), 50).tolist()
        shards.append([(data.x_train[i], int(data.y_train[i])) for i in pick])
    return data, base, shards


def _campaign(fleet, settings: TrainingSettings, rounds: int, tmp_path):
    """Run `rounds` rounds; returns (base accuracy, merged accuracy, round outcomes)."""
    data, base, shards = fleet
    plan = RoundPlan.from_record(settings.round_plan().to_record())  # as devices receive it
    server_model = copy.deepcopy(base)
    make_trainable(server_model, plan.trainable)
    arrays = {k: v.numpy() for k, v in trainable(server_model).items()}
    devices = []
    for i in range(len(shards)):
        model = quantize_model(base, "int8")
        make_trainable(model, plan.trainable)
        (tmp_path / f"d{i}").mkdir()
        devices.append((model, ResidualStore(tmp_path / f"d{i}")))
    outcomes = []
    for number in range(rounds):
        strategy = settings.build_strategy()
        limits = settings.update_limits(ModelSpec.of(arrays))
        round_ = Round(strategy, arrays, limits, weight_by_examples=settings.weight_by_examples)
        sent = arrays_to_record(arrays)
        for i, (model, store) in enumerate(devices):
            start = global_arrays(sent)
            device_plan = replace(plan, finetune=replace(plan.finetune, seed=10 * number + i))
            result = run_round(
                model,
                start,
                shards[i],
                DigitsTask(),
                device_plan,
                residual=store.load("campaign-1", start),
                rng=np.random.default_rng(100 * number + i),
            )
            store.save("campaign-1", result.residual)
            verdict = offer_reply(round_, f"device-{i}", reply_content(result))
            assert verdict.accepted, verdict.detail
        outcome = round_.finish()
        arrays = outcome.arrays
        outcomes.append(outcome)
    load_trainable_state(server_model, arrays)
    merged = merge_lora(server_model)
    before = accuracy(base, data.x_test, data.y_test)
    return before, accuracy(merged, data.x_test, data.y_test), outcomes


@pytest.mark.timeout(120)
@pytest.mark.parametrize("uplink", ["none", "int8"])
def test_three_rounds_of_four_int8_devices_beat_the_base(fleet, tmp_path, uplink: str) -> None:
    settings = TrainingSettings(
        finetune=FinetuneConfig(epochs=2, learning_rate=1e-2),
        trainable=LoRAConfig(rank=4),
        uplink=uplink,
    )
    before, after, outcomes = _campaign(fleet, settings, 3, tmp_path)
    assert after >= before + 0.05, (before, after)
    assert all(len(o.accepted) == 4 and not o.rejected for o in outcomes)
    fp32 = 4 * sum(a.size for a in outcomes[0].arrays.values())
    if uplink == "int8":
        # A 1k-value adapter: int8 values plus names, shapes and block scales per tensor.
        assert outcomes[0].uplink_bytes <= 4 * 0.35 * fp32


@pytest.mark.timeout(120)
def test_dp_and_fedprox_rounds_are_accepted_under_the_dp_norm_bound(fleet, tmp_path) -> None:
    settings = TrainingSettings(
        strategy="fedprox",
        proximal_mu=0.1,
        finetune=FinetuneConfig(epochs=1),
        trainable=LoRAConfig(rank=2),
        uplink="int8",
        dp=DpParams(clip=0.5, noise_multiplier=0.3),
    )
    _, _, outcomes = _campaign(fleet, settings, 1, tmp_path)
    assert len(outcomes[0].accepted) == 4


def test_a_reply_without_a_payload_is_recorded_as_undecodable() -> None:
    start = {"w": np.zeros(3, np.float32)}
    round_ = Round(
        TrainingSettings().build_strategy(),
        start,
        TrainingSettings().update_limits(ModelSpec.of(start)),
    )
    empty = RecordDict({"metrics": MetricRecord({"num-examples": 5})})
    floats = RecordDict(
        {
            "arrays": ArrayRecord({"uplink": Array(np.zeros(4, np.float32))}),
            "metrics": MetricRecord({"num-examples": 5}),
        }
    )
    assert offer_reply(round_, "a", empty).reason is RejectReason.UNDECODABLE
    assert offer_reply(round_, "b", floats).reason is RejectReason.UNDECODABLE
    assert [r.client for r in round_.records()[1]] == ["a", "b"]
