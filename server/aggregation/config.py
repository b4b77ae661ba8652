"""A campaign's training settings: which strategy, what devices do, and what the server accepts.

    settings = TrainingSettings(strategy="fedprox", proximal_mu=0.01, uplink="topk:0.01")
    strategy = settings.build_strategy()
    plan = settings.round_plan()          # plan.to_record() goes to the devices each round
    limits = settings.update_limits(spec) # norm bound (from DP when on)

This is the one place the CLI's `campaigns start` options become objects; each object checks
its own values, so a bad option is a ValueError naming it before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fedota.delta.uplink import UplinkSpec
from fedota.ml.finetune import FinetuneConfig, RoundPlan
from fedota.ml.lora import LoRAConfig, Trainable
from fedota.server.aggregation.base import Strategy
from fedota.server.aggregation.fedadam import FedAdam
from fedota.server.aggregation.fedavg import FedAvg, FedProx
from fedota.server.aggregation.privacy import DpParams, noisy_update_norm_bound
from fedota.server.aggregation.robust import DEFAULT_MAX_UPDATES, Krum, TrimmedMean
from fedota.server.aggregation.validation import ModelSpec, UpdateLimits

STRATEGIES = ("fedavg", "fedprox", "fedadam", "trimmed-mean", "krum")


@dataclass(frozen=True)
class TrainingSettings:
    """Everything about a campaign's training but its model and schedule.

    Attributes:
        strategy: one of STRATEGIES.
        proximal_mu: FedProx's client coefficient (used with "fedprox" only).
        server_lr: FedAvg / FedProx server learning rate.
        fedadam: FedAdam's hyper-parameters (used with "fedadam").
        trim_fraction: trimmed mean's beta per side.
        krum_byzantine, krum_select: Krum's assumed hostile updates and how many it keeps.
        max_round_updates: the cap on updates a robust strategy holds per round.
        finetune: local training (its proximal_mu is replaced by `proximal_mu` for fedprox).
        trainable: LoRA adapters or layers.
        uplink: the uplink compression ("none", "int8", "topk:0.01", "topk:0.01+int8").
        dp: client-side DP, or None.
        max_update_norm: the norm bound without DP (with DP it follows from clip and sigma).
        max_examples: the most examples one update may claim.
    """

    strategy: str = "fedavg"
    proximal_mu: float = 0.01
    server_lr: float = 1.0
    fedadam: FedAdam = field(default_factory=FedAdam)
    trim_fraction: float = 0.1
    krum_byzantine: int = 1
    krum_select: int = 1
    max_round_updates: int = DEFAULT_MAX_UPDATES
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    trainable: Trainable = field(default_factory=LoRAConfig)
    uplink: str = "none"
    dp: DpParams | None = None
    max_update_norm: float | None = None
    max_examples: int = 1_000_000

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            names = ", ".join(STRATEGIES)
            raise ValueError(f"strategy must be one of {names}, got {self.strategy!r}")
        UplinkSpec.parse(self.uplink)
        self.build_strategy()  # checks the strategy's own parameters now
        UpdateLimits(self.max_update_norm, self.max_examples)

    def build_strategy(self) -> Strategy:
        """The aggregation strategy these settings name."""
        if self.strategy == "fedavg":
            return FedAvg(self.server_lr)
        if self.strategy == "fedprox":
            return FedProx(self.server_lr, self.proximal_mu)
        if self.strategy == "fedadam":
            return self.fedadam
        if self.strategy == "trimmed-mean":
            return TrimmedMean(self.trim_fraction, self.max_round_updates)
        return Krum(self.krum_byzantine, self.krum_select, self.max_round_updates)

    def round_plan(self) -> RoundPlan:
        """What devices are asked to do each round (its record goes in the round's config)."""
        mu = self.proximal_mu if self.strategy == "fedprox" else self.finetune.proximal_mu
        finetune = FinetuneConfig(**{**self.finetune.__dict__, "proximal_mu": mu})
        if self.dp is None:
            return RoundPlan(finetune, self.trainable, self.uplink)
        return RoundPlan(
            finetune, self.trainable, self.uplink, self.dp.clip, self.dp.noise_multiplier
        )

    def update_limits(self, spec: ModelSpec) -> UpdateLimits:
        """The server's checks for `spec`'s updates: with DP, the honest noisy-norm bound."""
        bound = self.max_update_norm
        if self.dp is not None:
            noisy = noisy_update_norm_bound(self.dp, spec.numel)
            bound = noisy if bound is None else max(bound, noisy)
        return UpdateLimits(bound, self.max_examples)

    @property
    def weight_by_examples(self) -> bool:
        """FedAvg weights by examples, except under DP (the sensitivity needs equal weights)."""
        return self.dp is None


__all__ = ["STRATEGIES", "TrainingSettings"]
