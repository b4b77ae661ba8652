"""Campaigns on the Admin API: a StartCampaignRequest's spec, and views as Campaign messages.

spec = request_spec(request.settings, cohort_id)   # ValueError names the bad option
message = campaign_message(get_campaign(db, campaign_id))
"""

from __future__ import annotations

import math
from typing import Any

from fedota.ml.finetune import FinetuneConfig
from fedota.ml.lora import LoRAConfig, describe_trainable, parse_trainable
from fedota.protos.v1 import campaigns_pb2
from fedota.server.aggregation import DpParams, TrainingSettings
from fedota.server.aggregation.config import STRATEGIES
from fedota.server.campaigns.spec import CampaignSpec, SecureAggregationRefused
from fedota.server.campaigns.views import CampaignView, RoundView
from fedota.server.convert import timestamp
from fedota.server.errors import FailedPrecondition, InvalidArgument

DEFAULT_WAIT = 300.0


def request_spec(settings: campaigns_pb2.CampaignSettings, cohort_id: str | None) -> CampaignSpec:
    """The campaign spec the request's settings ask for (unset values take their defaults).

    Raises:
        InvalidArgument: an option out of range, naming it.
        FailedPrecondition: secure aggregation asked for with a strategy other than fedavg,
            fedprox or fedadam, a topk uplink, or min_clients below 2.
    """
    if (settings.dp_clip > 0) != (settings.dp_noise > 0) or min(
        settings.dp_clip, settings.dp_noise
    ) < 0:
        raise InvalidArgument("dp_clip", "dp_clip and dp_noise must both be positive, or both 0")
    if not (settings.max_update_norm >= 0 and math.isfinite(settings.max_update_norm)):
        raise InvalidArgument("max_update_norm", "must be a positive number, or 0 for no bound")
    for name in ("rounds", "clients_per_round", "min_clients"):
        if getattr(settings, name) < 1:
            raise InvalidArgument(name, "must be a positive integer")
    try:
        dp = DpParams(settings.dp_clip, settings.dp_noise) if settings.dp_clip else None
    except ValueError as exc:
        raise InvalidArgument("dp_clip", str(exc)) from None
    try:
        finetune = FinetuneConfig(epochs=settings.local_epochs or 1)
    except ValueError as exc:
        raise InvalidArgument("local_epochs", str(exc)) from None
    strategy = settings.strategy or "fedavg"
    if strategy not in STRATEGIES:
        names = ", ".join(STRATEGIES)
        raise InvalidArgument("strategy", f"must be one of {names}, got {strategy!r}")
    try:
        trainable = parse_trainable(settings.trainable) if settings.trainable else LoRAConfig()
    except ValueError as exc:
        raise InvalidArgument("trainable", str(exc)) from None
    try:
        training = TrainingSettings(
            strategy=strategy,
            finetune=finetune,
            trainable=trainable,
            uplink=settings.uplink or "none",
            dp=dp,
            max_update_norm=settings.max_update_norm or None,
        )
    except ValueError as exc:
        raise InvalidArgument("uplink", str(exc)) from None
    try:
        return CampaignSpec(
            rounds=settings.rounds,
            clients_per_round=settings.clients_per_round,
            min_clients=settings.min_clients,
            cohort_id=cohort_id,
            round_timeout=settings.round_timeout_seconds or DEFAULT_WAIT,
            node_wait=settings.node_wait_seconds or DEFAULT_WAIT,
            evaluate=settings.evaluate or "every-round",
            settings=training,
            secure_aggregation=settings.secure_aggregation,
        )
    except SecureAggregationRefused as exc:
        raise FailedPrecondition(str(exc)) from None
    except ValueError as exc:
        raise InvalidArgument(_spec_field(str(exc)), str(exc)) from None


def _spec_field(message: str) -> str:
    for name in ("min_clients", "round_timeout", "node_wait", "evaluate"):
        if message.startswith(name):
            return name + "_seconds" if name in ("round_timeout", "node_wait") else name
    return "settings"


def campaign_message(view: CampaignView) -> campaigns_pb2.Campaign:
    """The Campaign message of a view (with its rounds when the view has them)."""
    spec = _stored_spec(view.config)
    message = campaigns_pb2.Campaign(
        id=view.id,
        name=view.name,
        model=view.base_version,
        state=view.state,
        reason=view.error,
        rounds_done=view.completed_rounds,
        rounds_total=view.num_rounds,
        final_version=view.result_version,
        flower_run_id=view.flower_run_id or 0,
        created_at=timestamp(view.created_at),
        rounds=[_round_message(r) for r in view.rounds],
    )
    if spec is not None:
        message.settings.CopyFrom(_settings_message(spec, view.cohort))
        dp = spec.settings.dp
        if dp is not None:
            spent = _last_privacy(view.rounds)
            message.privacy.CopyFrom(
                campaigns_pb2.CampaignPrivacy(
                    clip=dp.clip,
                    noise_multiplier=dp.noise_multiplier,
                    epsilon=spent[0],
                    delta=spent[1] or dp.delta,
                )
            )
    if view.started_at is not None:
        message.started_at.CopyFrom(timestamp(view.started_at))
    if view.finished_at is not None:
        message.finished_at.CopyFrom(timestamp(view.finished_at))
    return message


def _stored_spec(config: dict[str, Any]) -> CampaignSpec | None:
    try:
        return CampaignSpec.from_json(config.get("spec"))
    except (ValueError, KeyError, TypeError):
        return None  # a row another version wrote: shown without its settings


def _settings_message(spec: CampaignSpec, cohort: str) -> campaigns_pb2.CampaignSettings:
    training = spec.settings
    return campaigns_pb2.CampaignSettings(
        rounds=spec.rounds,
        clients_per_round=spec.clients_per_round,
        min_clients=spec.min_clients,
        strategy=training.strategy,
        cohort=cohort,
        local_epochs=training.finetune.epochs,
        dp_clip=training.dp.clip if training.dp else 0.0,
        dp_noise=training.dp.noise_multiplier if training.dp else 0.0,
        uplink=training.uplink,
        evaluate=spec.evaluate,
        round_timeout_seconds=spec.round_timeout,
        node_wait_seconds=spec.node_wait,
        secure_aggregation=spec.secure_aggregation,
        trainable=describe_trainable(training.trainable),
        max_update_norm=training.max_update_norm or 0.0,
    )


def _last_privacy(rounds: tuple[RoundView, ...]) -> tuple[float, float]:
    for row in reversed(rounds):
        if "dp_epsilon" in row.metrics:
            return float(row.metrics["dp_epsilon"]), float(row.metrics.get("dp_delta", 0.0))
    return 0.0, 0.0


def _round_message(row: RoundView) -> campaigns_pb2.CampaignRound:
    message = campaigns_pb2.CampaignRound(
        number=row.number,
        state=row.state,
        selected=row.selected,
        accepted=row.accepted,
        rejected=[campaigns_pb2.RoundRefusal(device_id=d, reason=r) for d, r in row.rejected],
        dropped=[campaigns_pb2.RoundRefusal(device_id=d, reason=r) for d, r in row.dropped],
        uplink_bytes=row.uplink_bytes,
        version=row.version,
    )
    for name in ("eval_loss", "eval_accuracy", "train_loss", "train_accuracy"):
        value = row.metrics.get(name)
        if isinstance(value, int | float):
            setattr(message, name, float(value))
    peak = row.metrics.get("peak_memory_bytes")
    if isinstance(peak, int | float) and peak >= 0:
        message.peak_memory_bytes = int(peak)
    return message


__all__ = ["campaign_message", "request_spec"]
