"""Rollout views as Admin messages, and a CreateRolloutRequest's thresholds."""

from __future__ import annotations

from fedota.protos.v1 import releases_pb2
from fedota.server.convert import timestamp
from fedota.server.rollouts.errors import InvalidRolloutPolicy
from fedota.server.rollouts.policy import (
    DEFAULT_MAX_FAILURE_PERCENT,
    DEFAULT_SUCCESS_PERCENT,
    Thresholds,
)
from fedota.server.rollouts.views import RolloutView


def request_thresholds(request: releases_pb2.CreateRolloutRequest) -> Thresholds:
    """The request's thresholds; 0 means the default (95% / 5%), `zero_failure_tolerance` a
    max failure of exactly 0.

    Raises:
        InvalidRolloutPolicy: a threshold out of range, or `zero_failure_tolerance` together
            with a nonzero max failure.
    """
    success = request.success_threshold_percent or DEFAULT_SUCCESS_PERCENT
    if request.zero_failure_tolerance:
        if request.max_failure_percent:
            raise InvalidRolloutPolicy(
                "max_failure",
                f"zero_failure_tolerance contradicts a max failure of "
                f"{request.max_failure_percent:g}%",
            )
        max_failure = 0.0
    else:
        max_failure = request.max_failure_percent or DEFAULT_MAX_FAILURE_PERCENT
    return Thresholds.from_percents(success, max_failure)


def rollout_message(view: RolloutView) -> releases_pb2.Rollout:
    """The Rollout message of a view, with per-stage counts."""
    message = releases_pb2.Rollout(
        id=view.id,
        release_id=view.release_id,
        version=view.ref,
        cohort=view.cohort,
        state=view.state.value,
        success_threshold=view.thresholds.success,
        max_failure=view.thresholds.max_failure,
        current_stage=view.current_stage,
        stages=[
            releases_pb2.RolloutStage(
                index=stage.index,
                fraction=stage.fraction,
                state=stage.state.value,
                devices=stage.counts.assigned,
                healthy=stage.counts.healthy,
                failed=stage.counts.failed,
                in_progress=stage.counts.in_progress,
                rolled_back=stage.counts.rolled_back,
            )
            for stage in view.stages
        ],
        reason=view.reason,
        created_at=timestamp(view.created_at),
        created_by=view.created_by or "",
        bytes_sent=view.bytes_received,
        full_bytes=view.full_bytes,
    )
    if view.finished_at is not None:
        message.finished_at.CopyFrom(timestamp(view.finished_at))
    message.outlook = view.outlook
    if view.rolled_back_at is not None:
        message.rolled_back_at.CopyFrom(timestamp(view.rolled_back_at))
    return message


__all__ = ["request_thresholds", "rollout_message"]
