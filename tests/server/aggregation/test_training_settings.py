"""Campaign settings: options checked up front, and the round plan devices receive."""

from __future__ import annotations

import pytest

from fedota.ml.finetune import FinetuneConfig, RoundPlan
from fedota.ml.lora import LayerSelection, LoRAConfig
from fedota.server.aggregation import (
    STRATEGIES,
    DpParams,
    FedAdam,
    FedProx,
    Krum,
    TrainingSettings,
    TrimmedMean,
)


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_name_builds(name: str) -> None:
    assert TrainingSettings(strategy=name).build_strategy().name == name


def test_fedprox_sends_its_mu_to_the_devices() -> None:
    settings = TrainingSettings(strategy="fedprox", proximal_mu=0.3)
    assert isinstance(settings.build_strategy(), FedProx)
    plan = RoundPlan.from_record(settings.round_plan().to_record())
    assert plan.finetune.proximal_mu == 0.3
    assert (
        TrainingSettings(strategy="fedavg", proximal_mu=0.3).round_plan().finetune.proximal_mu == 0
    )


@pytest.mark.parametrize(
    "settings",
    [
        TrainingSettings(),
        TrainingSettings(
            strategy="krum",
            krum_byzantine=2,
            finetune=FinetuneConfig(epochs=3, learning_rate=0.05, batch_size=8, optimizer="sgd"),
            trainable=LayerSelection(("layers.2", "layers.1")),
            uplink="topk:0.01+int8",
            dp=DpParams(clip=1.0, noise_multiplier=0.8),
        ),
        TrainingSettings(trainable=LoRAConfig(rank=2, alpha=4, targets=("blocks.*",), seed=9)),
    ],
)
def test_round_plan_survives_its_record(settings: TrainingSettings) -> None:
    plan = settings.round_plan()
    record = plan.to_record()
    assert all(isinstance(v, int | float | str) for v in record.values())
    assert RoundPlan.from_record(record) == plan


@pytest.mark.parametrize(
    "options",
    [
        {"strategy": "fedmedian"},
        {"uplink": "topk:2"},
        {"strategy": "trimmed-mean", "trim_fraction": 0.6},
        {"strategy": "krum", "krum_byzantine": 40},
        {"max_update_norm": -1.0},
    ],
)
def test_bad_options_are_refused_before_anything_runs(options: dict) -> None:
    with pytest.raises(ValueError):
        TrainingSettings(**options)


def test_robust_strategies_take_their_parameters() -> None:
    assert TrainingSettings(strategy="trimmed-mean", trim_fraction=0.3).build_strategy() == (
        TrimmedMean(0.3)
    )
    assert TrainingSettings(strategy="krum", krum_select=3).build_strategy() == Krum(1, 3)
    assert TrainingSettings(strategy="fedadam").build_strategy() == FedAdam()


@pytest.mark.parametrize(
    ("key", "value"),
    [("local-epochs", "2"), ("learning-rate", None), ("trainable", "all"), ("seed", True)],
)
def test_malformed_round_record_names_the_key(key: str, value: object) -> None:
    record = TrainingSettings().round_plan().to_record()
    if value is None:
        del record[key]
    else:
        record[key] = value  # type: ignore[assignment]
    with pytest.raises(ValueError, match="trainable|" + key):
        RoundPlan.from_record(record)
