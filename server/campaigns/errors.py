"""Failures of campaign storage operations, each a `fedota.server.errors` service error, so
the Admin API maps them to a gRPC status without a table of its own."""

from __future__ import annotations

from fedota.server.errors import FailedPrecondition, NotFound


class CampaignNotFound(NotFound):
    """No campaign with that id."""

    def __init__(self, campaign_id: str) -> None:
        super().__init__(f"no campaign {campaign_id}")
        self.campaign_id = campaign_id


class CampaignStateError(FailedPrecondition):
    """The campaign's state does not allow the change (e.g. recording a round of a finished
    campaign, or a round out of order)."""


class StaleRun(CampaignStateError):
    """A Flower run writes for a campaign that has moved on to another run (a ServerApp thought
    dead that still lives): its write is refused so two runs never both record rounds."""

    def __init__(self, campaign_id: str, run_id: int, current: int | None) -> None:
        super().__init__(
            f"campaign {campaign_id} now belongs to Flower run {current}, not run {run_id}"
        )
        self.campaign_id = campaign_id
        self.run_id = run_id
        self.current = current


__all__ = ["CampaignNotFound", "CampaignStateError", "StaleRun"]
