"""Staged rollouts of a release to a cohort, with health gates.

`policy` is the pure core (stages, thresholds, stage membership, the decision); `service` holds
the operator's calls (create, list, get, pause, resume, abort, rollback) and `devices` the
device's (assignment_for, report_status), each one transaction over `fedota.storage`.
"""

from fedota.server.rollouts.devices import assignment_for, report_status
from fedota.server.rollouts.errors import (
    CohortBusy,
    DeviceNotFound,
    InvalidRolloutPolicy,
    NoAssignment,
    ReleaseNotFound,
    ReleaseNotReady,
    ReportContradicts,
    RolloutNotFound,
    RolloutSuperseded,
    RolloutTransitionNotAllowed,
    UpdateTransitionNotAllowed,
)
from fedota.server.rollouts.policy import (
    Decision,
    StageCounts,
    Thresholds,
    Verdict,
    decide,
    parse_percent,
    parse_stages,
    stage_fractions,
)
from fedota.server.rollouts.service import (
    abort,
    create,
    get,
    list_rollouts,
    pause,
    resume,
    rollback,
)
from fedota.server.rollouts.views import ArtifactRef, DeviceAssignment, RolloutView, StageView

__all__ = [
    "ArtifactRef",
    "CohortBusy",
    "Decision",
    "DeviceAssignment",
    "DeviceNotFound",
    "InvalidRolloutPolicy",
    "NoAssignment",
    "ReleaseNotFound",
    "ReleaseNotReady",
    "ReportContradicts",
    "RolloutNotFound",
    "RolloutSuperseded",
    "RolloutTransitionNotAllowed",
    "RolloutView",
    "StageCounts",
    "StageView",
    "Thresholds",
    "UpdateTransitionNotAllowed",
    "Verdict",
    "abort",
    "assignment_for",
    "create",
    "decide",
    "get",
    "list_rollouts",
    "parse_percent",
    "parse_stages",
    "pause",
    "report_status",
    "resume",
    "rollback",
    "stage_fractions",
]
