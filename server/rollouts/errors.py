"""What a rollout request can meet, each a `fedota.server.errors` class (so one gRPC code each)."""

from __future__ import annotations

from fedota.server.errors import FailedPrecondition, InvalidArgument, NotFound


class InvalidRolloutPolicy(InvalidArgument):
    """Stages or thresholds that break a rule (the message names the field, the rule and value)."""


class RolloutNotFound(NotFound):
    def __init__(self, rollout_id: str) -> None:
        super().__init__(f"rollout {rollout_id} does not exist; see `fedota admin rollouts list`")
        self.rollout_id = rollout_id


class ReleaseNotFound(NotFound):
    def __init__(self, release: str) -> None:
        super().__init__(f"release {release} does not exist; see `fedota admin releases list`")
        self.release = release


class DeviceNotFound(NotFound):
    def __init__(self, device_id: str) -> None:
        super().__init__(f"device {device_id} does not exist")
        self.device_id = device_id


class ReleaseNotReady(FailedPrecondition):
    """Only a release whose artifacts are built and signed can be rolled out."""

    def __init__(self, release_id: str, state: str) -> None:
        super().__init__(f"release {release_id} is {state}; only a ready release can be rolled out")
        self.release_id = release_id
        self.state = state


class CohortBusy(FailedPrecondition):
    """The cohort already has a running or paused rollout (one at a time per cohort)."""

    def __init__(self, cohort: str, rollout_id: str, state: str) -> None:
        super().__init__(
            f"cohort {cohort} already has rollout {rollout_id} {state}; abort it or let it "
            f"complete first"
        )
        self.cohort = cohort
        self.rollout_id = rollout_id


class RolloutTransitionNotAllowed(FailedPrecondition):
    """An operator move the rollout's current state does not allow."""

    def __init__(self, rollout_id: str, state: str, participle: str) -> None:
        super().__init__(f"rollout {rollout_id} is {state}; it cannot be {participle}")
        self.rollout_id = rollout_id
        self.state = state


class RolloutSuperseded(FailedPrecondition):
    """A rollback of a rollout after which the cohort got a newer one (that one decides now)."""

    def __init__(self, rollout_id: str, newer_id: str) -> None:
        super().__init__(
            f"rollout {rollout_id} is superseded by rollout {newer_id} of the same cohort; "
            f"roll that one back instead"
        )
        self.rollout_id = rollout_id
        self.newer_id = newer_id


class NoAssignment(NotFound):
    """A device reports on a rollout that never assigned it anything."""

    def __init__(self, device_id: str, rollout_id: str) -> None:
        super().__init__(f"device {device_id} has no assignment in rollout {rollout_id}")
        self.device_id = device_id
        self.rollout_id = rollout_id


class UpdateTransitionNotAllowed(FailedPrecondition):
    """A status report the device's recorded progress does not allow (e.g. failed after healthy)."""

    def __init__(self, device_id: str, rollout_id: str, state: str, reported: str) -> None:
        super().__init__(
            f"device {device_id} is {state} in rollout {rollout_id}; it cannot report {reported}"
        )
        self.device_id = device_id
        self.rollout_id = rollout_id
        self.state = state
        self.reported = reported


class ReportContradicts(FailedPrecondition):
    """The device reports healthy on a model that is not the one its assignment installs."""

    def __init__(self, device_id: str, rollout_id: str, runs: str, expected: str) -> None:
        super().__init__(
            f"device {device_id} reports healthy on content {runs[:16]}..., but rollout "
            f"{rollout_id} installs {expected[:16]}..."
        )
        self.device_id = device_id
        self.rollout_id = rollout_id


__all__ = [
    "CohortBusy",
    "DeviceNotFound",
    "InvalidRolloutPolicy",
    "NoAssignment",
    "ReleaseNotFound",
    "ReleaseNotReady",
    "ReportContradicts",
    "RolloutNotFound",
    "RolloutSuperseded",
    "RolloutTransitionNotAllowed",
    "UpdateTransitionNotAllowed",
]
