"""Rollout messages as JSON objects (for `--json`) and as table cells and fields (for people)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fedota.cli._admin_views import timestamp, when
from fedota.cli.output import human_bytes, iso, relative_time
from fedota.protos.v1 import releases_pb2

ROLLOUT_COLUMNS = ("ID", "VERSION", "COHORT", "STATE", "STAGE", "HEALTHY", "FAILED", "CREATED")
STAGE_COLUMNS = (
    "STAGE",
    "SHARE",
    "STATE",
    "DEVICES",
    "HEALTHY",
    "FAILED",
    "IN PROGRESS",
    "ROLLED BACK",
)


def share(fraction: float) -> str:
    """`0.1` as `10%`, `2/3` as `66.67%`."""
    return f"{fraction * 100:.2f}".rstrip("0").rstrip(".") + "%"


def outlook(rollout: releases_pb2.Rollout) -> str:
    """What the policy says now ("" once the rollout is finished)."""
    return rollout.outlook


def stage_label(rollout: releases_pb2.Rollout) -> str:
    """`stage 2 of 4 (10%)`, 1-based as operators count."""
    if not rollout.stages:
        return "no stages"
    current = min(rollout.current_stage, len(rollout.stages) - 1)
    fraction = rollout.stages[current].fraction
    return f"stage {current + 1} of {len(rollout.stages)} ({share(fraction)})"


def bytes_sent(rollout: releases_pb2.Rollout) -> str:
    """`1.2 KiB of 26.0 KiB full downloads (4.6%)`, or `-` before any device fetched."""
    if not rollout.full_bytes:
        return "-"
    ratio = rollout.bytes_sent / rollout.full_bytes
    return (
        f"{human_bytes(rollout.bytes_sent)} of {human_bytes(rollout.full_bytes)} "
        f"full downloads ({ratio:.1%})"
    )


def rollout_json(rollout: releases_pb2.Rollout) -> dict[str, Any]:
    """A rollout as a JSON object (stage indexes and `current_stage` are 0-based)."""
    return {
        "id": rollout.id,
        "release_id": rollout.release_id,
        "version": rollout.version,
        "cohort": rollout.cohort,
        "state": rollout.state,
        "reason": rollout.reason or None,
        "outlook": outlook(rollout) or None,
        "success_threshold": rollout.success_threshold,
        "max_failure": rollout.max_failure,
        "current_stage": rollout.current_stage,
        "stages": [
            {
                "index": stage.index,
                "fraction": stage.fraction,
                "state": stage.state,
                "devices": stage.devices,
                "healthy": stage.healthy,
                "failed": stage.failed,
                "in_progress": stage.in_progress,
                "rolled_back": stage.rolled_back,
            }
            for stage in rollout.stages
        ],
        "bytes_sent": rollout.bytes_sent,
        "full_bytes": rollout.full_bytes,
        "created_at": iso(timestamp(rollout, "created_at")),
        "created_by": rollout.created_by or None,
        "finished_at": iso(timestamp(rollout, "finished_at")),
    }


def rollout_row(rollout: releases_pb2.Rollout, now: dt.datetime) -> list[str]:
    """One row under ROLLOUT_COLUMNS."""
    return [
        rollout.id,
        rollout.version,
        rollout.cohort,
        rollout.state,
        stage_label(rollout),
        str(sum(stage.healthy for stage in rollout.stages)),
        str(sum(stage.failed + stage.rolled_back for stage in rollout.stages)),
        relative_time(timestamp(rollout, "created_at"), now, missing="-"),
    ]


def rollout_fields(rollout: releases_pb2.Rollout, now: dt.datetime) -> dict[str, str]:
    """Everything `rollouts show` prints above the stage table, name -> value."""
    return {
        "ID": rollout.id,
        "Release": f"{rollout.version} ({rollout.release_id})",
        "Cohort": rollout.cohort,
        "State": rollout.state,
        "Stage": stage_label(rollout),
        "Reason": rollout.reason or "-",
        "Outlook": outlook(rollout) or "-",
        "Success threshold": share(rollout.success_threshold),
        "Max failure": share(rollout.max_failure),
        "Bytes sent": bytes_sent(rollout),
        "Created": when(timestamp(rollout, "created_at"), now),
        "Created by": rollout.created_by or "-",
        "Finished": when(timestamp(rollout, "finished_at"), now),
    }


def stage_rows(rollout: releases_pb2.Rollout) -> list[list[str]]:
    """The stages under STAGE_COLUMNS, the current one marked with `*`."""
    running = rollout.state in ("running", "paused")
    return [
        [
            f"{stage.index + 1}{'*' if running and stage.index == rollout.current_stage else ''}",
            share(stage.fraction),
            stage.state,
            str(stage.devices),
            str(stage.healthy),
            str(stage.failed),
            str(stage.in_progress),
            str(stage.rolled_back),
        ]
        for stage in rollout.stages
    ]


__all__ = [
    "ROLLOUT_COLUMNS",
    "STAGE_COLUMNS",
    "bytes_sent",
    "outlook",
    "rollout_fields",
    "rollout_json",
    "rollout_row",
    "share",
    "stage_label",
    "stage_rows",
]
