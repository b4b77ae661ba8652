"""A campaign's schedule and training settings, and their JSON form in the campaign row.

    spec = CampaignSpec(rounds=3, clients_per_round=4, min_clients=3,
                        settings=TrainingSettings(strategy="fedprox", uplink="int8"))
    row.config = spec.to_json()          # what storage keeps
    CampaignSpec.from_json(row.config)   # what the ServerApp and `campaigns show` read back

Every value is checked when the object is built (TrainingSettings checks its own), so a bad
option is a ValueError naming it before anything is stored or run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from fedota.ml.finetune import FinetuneConfig
from fedota.ml.lora import LayerSelection, LoRAConfig, Trainable
from fedota.server.aggregation import DpParams, FedAdam, ModelSpec, TrainingSettings

FORMAT = 1
EVALUATE_MODES = ("every-round", "final", "none")
# The update norm bound of a secure campaign that sets none and runs without DP.
DEFAULT_SECURE_BOUND = 10.0


class SecureAggregationRefused(ValueError):
    """Secure aggregation was asked for with a strategy, uplink or minimum it cannot serve."""


@dataclass(frozen=True)
class CampaignSpec:
    """What a campaign runs.

    Attributes:
        rounds: federated rounds.
        clients_per_round: devices asked to train each round (fewer when fewer are online).
        min_clients: accepted updates a round needs to complete; also the online devices it
            waits for before it starts.
        cohort_id: only accepted devices of this cohort take part (None: the whole fleet).
        round_timeout: seconds a round waits for replies (train, then evaluate).
        node_wait: seconds a round waits for `min_clients` eligible devices to be online.
        evaluate: when the round's devices evaluate the new aggregate on their own held-out
            data: "every-round", "final" (the last round only: one exchange less per round,
            each costing the devices a process start) or "none".
        seed: device sampling and local shuffling.
        settings: strategy, local training, trainable tensors, uplink, DP, update limits.
        secure_aggregation: each round's training runs Flower's SecAgg+ (see
            `fedota.server.campaigns.secure`): the coordinator learns only the mean update.

    Raises:
        SecureAggregationRefused: secure aggregation with settings it cannot serve.
        ValueError: a count or timeout out of range.
    """

    rounds: int
    clients_per_round: int
    min_clients: int
    cohort_id: str | None = None
    round_timeout: float = 300.0
    node_wait: float = 300.0
    evaluate: str = "every-round"
    seed: int = 0
    settings: TrainingSettings = field(default_factory=TrainingSettings)
    secure_aggregation: bool = False

    def __post_init__(self) -> None:
        for name in ("rounds", "clients_per_round", "min_clients"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.min_clients > self.clients_per_round:
            raise ValueError(
                f"min_clients ({self.min_clients}) cannot exceed clients_per_round "
                f"({self.clients_per_round})"
            )
        if self.evaluate not in EVALUATE_MODES:
            modes = ", ".join(EVALUATE_MODES)
            raise ValueError(f"evaluate must be one of {modes}, got {self.evaluate!r}")
        for name in ("round_timeout", "node_wait"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.secure_aggregation:
            problem = secure_refusal(self.settings.strategy, self.settings.uplink, self.min_clients)
            if problem is not None:
                raise SecureAggregationRefused(problem)

    def secure_bound(self, model: ModelSpec) -> float:
        """The norm bound devices clip to before masking in a secure round: the settings'
        bound for `model`'s tensors (with DP, the noisy-norm bound), else
        `DEFAULT_SECURE_BOUND`."""
        bound = self.settings.update_limits(model).max_norm
        return DEFAULT_SECURE_BOUND if bound is None else float(bound)

    def evaluates(self, number: int) -> bool:
        """Whether round `number` ends with the devices' evaluation."""
        return self.evaluate == "every-round" or (
            self.evaluate == "final" and number == self.rounds
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON object that `from_json` reads back to an equal spec."""
        return {
            "format": FORMAT,
            "rounds": self.rounds,
            "clients_per_round": self.clients_per_round,
            "min_clients": self.min_clients,
            "cohort_id": self.cohort_id,
            "round_timeout": self.round_timeout,
            "node_wait": self.node_wait,
            "evaluate": self.evaluate,
            "seed": self.seed,
            "settings": settings_to_json(self.settings),
            "secure_aggregation": self.secure_aggregation,
        }

    @classmethod
    def from_json(cls, data: Any) -> CampaignSpec:
        """Raises: ValueError: not an object this version wrote, or a value out of range."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a campaign spec of format {FORMAT}")
        try:
            return cls(
                rounds=data["rounds"],
                clients_per_round=data["clients_per_round"],
                min_clients=data["min_clients"],
                cohort_id=data["cohort_id"],
                round_timeout=float(data["round_timeout"]),
                node_wait=float(data["node_wait"]),
                evaluate=str(data["evaluate"]),
                seed=int(data["seed"]),
                settings=settings_from_json(data["settings"]),
                secure_aggregation=bool(data.get("secure_aggregation", False)),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"campaign spec lacks or mistypes {exc}") from None


def settings_to_json(settings: TrainingSettings) -> dict[str, Any]:
    """TrainingSettings as a JSON object (`settings_from_json` reads it back)."""
    trainable: dict[str, Any]
    if isinstance(settings.trainable, LoRAConfig):
        trainable = {"kind": "lora", **asdict(settings.trainable)}
        trainable["targets"] = list(settings.trainable.targets)
    else:
        trainable = {"kind": "layers", "patterns": list(settings.trainable.patterns)}
    return {
        "strategy": settings.strategy,
        "proximal_mu": settings.proximal_mu,
        "server_lr": settings.server_lr,
        "fedadam": asdict(settings.fedadam),
        "trim_fraction": settings.trim_fraction,
        "krum_byzantine": settings.krum_byzantine,
        "krum_select": settings.krum_select,
        "max_round_updates": settings.max_round_updates,
        "finetune": asdict(settings.finetune),
        "trainable": trainable,
        "uplink": settings.uplink,
        "dp": None if settings.dp is None else asdict(settings.dp),
        "max_update_norm": settings.max_update_norm,
        "max_examples": settings.max_examples,
    }


def settings_from_json(data: dict[str, Any]) -> TrainingSettings:
    """Raises: ValueError, KeyError, TypeError: a missing or invalid value."""
    raw = dict(data["trainable"])
    kind = raw.pop("kind")
    trainable: Trainable
    if kind == "lora":
        trainable = LoRAConfig(**{**raw, "targets": tuple(raw["targets"])})
    elif kind == "layers":
        trainable = LayerSelection(tuple(raw["patterns"]))
    else:
        raise ValueError(f"trainable kind must be lora or layers, got {kind!r}")
    return TrainingSettings(
        strategy=data["strategy"],
        proximal_mu=data["proximal_mu"],
        server_lr=data["server_lr"],
        fedadam=FedAdam(**data["fedadam"]),
        trim_fraction=data["trim_fraction"],
        krum_byzantine=data["krum_byzantine"],
        krum_select=data["krum_select"],
        max_round_updates=data["max_round_updates"],
        finetune=FinetuneConfig(**data["finetune"]),
        trainable=trainable,
        uplink=data["uplink"],
        dp=None if data["dp"] is None else DpParams(**data["dp"]),
        max_update_norm=data["max_update_norm"],
        max_examples=data["max_examples"],
    )


def secure_refusal(strategy: str, uplink: str, min_clients: int) -> str | None:
    """Why a campaign with these settings cannot run with secure aggregation (None: it can).

    The server sees only the sum: robust strategies need every single update, a sparse uplink
    would be densified by masking anyway, and a sum of one device is that device's update.
    """
    if strategy not in ("fedavg", "fedprox", "fedadam"):
        return (
            f"secure_aggregation: strategy {strategy} needs every device's update; with secure "
            "aggregation use fedavg, fedprox or fedadam"
        )
    if uplink.startswith("topk"):
        return (
            f"secure_aggregation: uplink {uplink} is refused (masked vectors are dense); "
            "use none or int8 (SecAgg+'s own quantization is then the wire format)"
        )
    if min_clients < 2:
        return (
            f"secure_aggregation: min_clients must be at least 2 (got {min_clients}): "
            "a sum of one device's update is that update"
        )
    return None


__all__ = [
    "DEFAULT_SECURE_BOUND",
    "EVALUATE_MODES",
    "CampaignSpec",
    "SecureAggregationRefused",
    "secure_refusal",
    "settings_from_json",
    "settings_to_json",
]
