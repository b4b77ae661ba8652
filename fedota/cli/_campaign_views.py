"""Campaign messages as JSON objects (for `--json`) and as table cells and fields (for people)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fedota.cli._admin_views import timestamp, when
from fedota.cli.output import human_bytes, iso, relative_time
from fedota.protos.v1 import campaigns_pb2

CAMPAIGN_COLUMNS = ("ID", "NAME", "MODEL", "STATE", "ROUNDS", "STRATEGY", "RESULT", "CREATED")
ROUND_COLUMNS = (
    "ROUND",
    "VERSION",
    "SELECTED",
    "ACCEPTED",
    "DROPPED",
    "REJECTED",
    "UPLINK",
    "TRAIN MEM",
    "EVAL LOSS",
    "EVAL ACC",
)


def _optional(message: Any, name: str) -> float | None:
    return getattr(message, name) if message.HasField(name) else None


def _refusals(refusals: Any) -> list[dict[str, str]]:
    return [{"device": r.device_id, "reason": r.reason} for r in refusals]


def settings_json(settings: campaigns_pb2.CampaignSettings) -> dict[str, Any]:
    return {
        "rounds": settings.rounds,
        "clients_per_round": settings.clients_per_round,
        "min_clients": settings.min_clients,
        "strategy": settings.strategy,
        "cohort": settings.cohort or None,
        "local_epochs": settings.local_epochs,
        "dp_clip": settings.dp_clip or None,
        "dp_noise": settings.dp_noise or None,
        "max_update_norm": settings.max_update_norm or None,
        "uplink": settings.uplink,
        "trainable": settings.trainable or None,
        "secure_aggregation": settings.secure_aggregation,
        "evaluate": settings.evaluate,
        "round_timeout_seconds": settings.round_timeout_seconds,
        "node_wait_seconds": settings.node_wait_seconds,
    }


def round_json(row: campaigns_pb2.CampaignRound) -> dict[str, Any]:
    return {
        "number": row.number,
        "state": row.state,
        "version": row.version or None,
        "selected": row.selected,
        "accepted": row.accepted,
        "rejected": _refusals(row.rejected),
        "dropped": _refusals(row.dropped),
        "uplink_bytes": row.uplink_bytes,
        "eval_loss": _optional(row, "eval_loss"),
        "eval_accuracy": _optional(row, "eval_accuracy"),
        "train_loss": _optional(row, "train_loss"),
        "train_accuracy": _optional(row, "train_accuracy"),
        "peak_memory_bytes": row.peak_memory_bytes if row.HasField("peak_memory_bytes") else None,
    }


def campaign_json(campaign: campaigns_pb2.Campaign) -> dict[str, Any]:
    """A campaign as a JSON object (`rounds` is empty in listings)."""
    privacy = None
    if campaign.HasField("privacy"):
        p = campaign.privacy
        privacy = {
            "clip": p.clip,
            "noise_multiplier": p.noise_multiplier,
            "epsilon": p.epsilon,
            "delta": p.delta,
        }
    return {
        "id": campaign.id,
        "name": campaign.name,
        "model": campaign.model,
        "state": campaign.state,
        "reason": campaign.reason or None,
        "rounds_done": campaign.rounds_done,
        "rounds_total": campaign.rounds_total,
        "settings": settings_json(campaign.settings),
        "final_version": campaign.final_version or None,
        "privacy": privacy,
        "flower_run_id": campaign.flower_run_id or None,
        "created_at": iso(timestamp(campaign, "created_at")),
        "started_at": iso(timestamp(campaign, "started_at")),
        "finished_at": iso(timestamp(campaign, "finished_at")),
        "rounds": [round_json(r) for r in campaign.rounds],
    }


def progress(campaign: campaigns_pb2.Campaign) -> str:
    """`2/3`: completed rounds of all."""
    return f"{campaign.rounds_done}/{campaign.rounds_total}"


def campaign_row(campaign: campaigns_pb2.Campaign, now: dt.datetime) -> list[str]:
    """One row under CAMPAIGN_COLUMNS."""
    return [
        campaign.id,
        campaign.name,
        campaign.model,
        campaign.state,
        progress(campaign),
        campaign.settings.strategy or "-",
        campaign.final_version or "-",
        relative_time(timestamp(campaign, "created_at"), now, missing="-"),
    ]


def _training(settings: campaigns_pb2.CampaignSettings) -> str:
    parts = [
        f"{settings.clients_per_round} device(s) per round, at least {settings.min_clients}",
        f"{settings.local_epochs} local epoch(s)",
        f"trains {settings.trainable or 'lora:4'}",
        f"uplink {settings.uplink}",
        f"evaluate {settings.evaluate}",
    ]
    return ", ".join(parts)


def _privacy(campaign: campaigns_pb2.Campaign) -> str:
    if not campaign.HasField("privacy"):
        return "off"
    p = campaign.privacy
    spent = f"epsilon {p.epsilon:.3g}, delta {p.delta:.3g}" if p.epsilon else "nothing spent yet"
    return f"clip {p.clip:g}, noise {p.noise_multiplier:g} ({spent})"


def campaign_fields(campaign: campaigns_pb2.Campaign, now: dt.datetime) -> dict[str, str]:
    """Everything `campaigns show` prints above the round table, name -> value."""
    settings = campaign.settings
    return {
        "ID": campaign.id,
        "Name": campaign.name,
        "Model": campaign.model,
        "State": campaign.state,
        "Reason": campaign.reason or "-",
        "Rounds": progress(campaign),
        "Strategy": settings.strategy or "-",
        "Cohort": settings.cohort or "whole fleet",
        "Training": _training(settings),
        "Privacy": _privacy(campaign),
        "Update bound": (
            f"update norm at most {settings.max_update_norm:g}"
            if settings.max_update_norm
            else "none set"
        ),
        "Secure aggregation": "on (SecAgg+)" if settings.secure_aggregation else "off",
        "Result": campaign.final_version or "-",
        "Flower run": str(campaign.flower_run_id) if campaign.flower_run_id else "-",
        "Created": when(timestamp(campaign, "created_at"), now),
        "Started": when(timestamp(campaign, "started_at"), now),
        "Finished": when(timestamp(campaign, "finished_at"), now),
    }


def _number(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def round_rows(campaign: campaigns_pb2.Campaign) -> list[list[str]]:
    """The rounds under ROUND_COLUMNS."""
    return [
        [
            str(row.number),
            row.version or "-",
            str(row.selected),
            str(row.accepted),
            str(len(row.dropped)),
            str(len(row.rejected)),
            human_bytes(row.uplink_bytes),
            human_bytes(row.peak_memory_bytes) if row.HasField("peak_memory_bytes") else "-",
            _number(_optional(row, "eval_loss"), ".4f"),
            _number(_optional(row, "eval_accuracy"), ".2%"),
        ]
        for row in campaign.rounds
    ]


def refusal_lines(campaign: campaigns_pb2.Campaign) -> list[str]:
    """One line per device left out of a round: `round 2: d3 rejected: not-finite: …`."""
    lines = []
    for row in campaign.rounds:
        for kind, refusals in (("rejected", row.rejected), ("dropped", row.dropped)):
            lines += [f"round {row.number}: {r.device_id} {kind}: {r.reason}" for r in refusals]
    return lines


__all__ = [
    "CAMPAIGN_COLUMNS",
    "ROUND_COLUMNS",
    "campaign_fields",
    "campaign_json",
    "campaign_row",
    "progress",
    "refusal_lines",
    "round_json",
    "round_rows",
]
