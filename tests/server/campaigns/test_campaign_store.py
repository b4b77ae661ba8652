"""Campaign storage operations on SQLite and PostgreSQL: each one transaction, each refusal
typed, and nothing half-written after a refusal."""

from __future__ import annotations

import datetime as dt

import pytest
from campaign_world import World
from sqlalchemy import func, select

from fedota.server import audit
from fedota.server.aggregation import DpParams, TrainingSettings
from fedota.server.campaigns import (
    CampaignNotFound,
    CampaignSpec,
    CampaignStateError,
    Participation,
    RoundRecord,
    StaleRun,
    attach_run,
    claim,
    create_campaign,
    fail_campaign,
    finish_campaign,
    get_campaign,
    list_campaigns,
    record_round,
    resume_point,
    running_campaigns,
)
from fedota.server.campaigns.weights import StoredCheckpoint
from fedota.server.errors import InvalidArgument, NotFound
from fedota.storage.models import (
    AuditEvent,
    ModelVersion,
    ParticipationStatus,
    RoundParticipation,
    TrainingRound,
)

SPEC = CampaignSpec(rounds=2, clients_per_round=2, min_clients=1)
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def _record(number: int, content: str = "") -> RoundRecord:
    return RoundRecord(
        number=number,
        started_at=NOW,
        participations=[
            Participation("d0", ParticipationStatus.ACCEPTED, 100, 900, "", {"train-loss": 0.5}),
            Participation("d1", ParticipationStatus.REJECTED, 90, 950, "not-finite: w has NaN"),
        ],
        metrics={"accepted": 1, "rejected": 1, "eval_accuracy": 0.8},
        trainable_key="a" * 64,
        strategy_state_key=None,
        checkpoint=StoredCheckpoint("b" * 64, 1234, content or f"{number:064x}", 99),
        version_metrics={"eval_accuracy": 0.8},
    )


@pytest.fixture
def campaign(world: World) -> str:
    world.add_device("d0", "a")
    world.add_device("d1", "a")
    return create_campaign(
        world.database,
        name="tune",
        base_version_id=world.base_version_id,
        spec=SPEC,
        actor=audit.Actor.system(),
    )


def test_create_checks_its_inputs(world: World) -> None:
    def create(**kw):  # type: ignore[no-untyped-def]
        args = {"name": "x", "base_version_id": world.base_version_id, "spec": SPEC}
        return create_campaign(world.database, actor=audit.Actor.system(), **{**args, **kw})

    with pytest.raises(InvalidArgument, match="name"):
        create(name="")
    with pytest.raises(NotFound, match="no model version"):
        create(base_version_id="mv_nope")
    with pytest.raises(NotFound, match="no cohort"):
        create(spec=CampaignSpec(rounds=1, clients_per_round=1, min_clients=1, cohort_id="coh_x"))
    assert list_campaigns(world.database) == []


def test_spec_round_trips_through_storage(world: World) -> None:
    spec = CampaignSpec(
        rounds=3,
        clients_per_round=5,
        min_clients=2,
        cohort_id=world.cohorts["a"],
        settings=TrainingSettings(strategy="krum", uplink="topk:0.01+int8", dp=DpParams(1.0, 0.5)),
    )
    campaign_id = create_campaign(
        world.database,
        name="krum",
        base_version_id=world.base_version_id,
        spec=spec,
        actor=audit.Actor.system(),
    )
    attach_run(world.database, campaign_id, 5)
    assert claim(world.database, campaign_id, 5).spec == spec


@pytest.mark.parametrize("bad", [{"rounds": 0}, {"min_clients": 3}, {"round_timeout": -1.0}])
def test_spec_refuses_values_out_of_range(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        CampaignSpec(**{"rounds": 1, "clients_per_round": 2, "min_clients": 1, **bad})  # type: ignore[arg-type]


def test_rounds_are_recorded_in_order_with_their_versions(world: World, campaign: str) -> None:
    with pytest.raises(CampaignStateError, match="pending, not running"):
        record_round(world.database, campaign, 7, _record(1))  # no run yet
    attach_run(world.database, campaign, 7)
    with pytest.raises(CampaignStateError, match="started"):
        attach_run(world.database, campaign, 8)
    with pytest.raises(CampaignStateError, match="expects round 1"):
        record_round(world.database, campaign, 7, _record(2))
    with pytest.raises(CampaignStateError, match="completed 0 of 2"):
        finish_campaign(world.database, campaign, 7)
    first = record_round(world.database, campaign, 7, _record(1))
    point = resume_point(world.database, campaign)
    assert (point.completed, point.version_id, point.trainable_key) == (1, first, "a" * 64)
    with pytest.raises(CampaignStateError, match="expects round 2"):
        record_round(world.database, campaign, 7, _record(1))
    second = record_round(world.database, campaign, 7, _record(2))
    assert finish_campaign(world.database, campaign, 7) == second

    view = get_campaign(world.database, campaign)
    assert (view.state, view.result_version, view.completed_rounds) == ("completed", "digits@v3", 2)
    assert view.rounds[0].rejected == (("d1", "not-finite: w has NaN"),)
    assert view.rounds[0].uplink_bytes == 1850
    with world.database.session() as session:
        v2 = session.scalars(select(ModelVersion).where(ModelVersion.id == first)).one()
        assert (v2.number, v2.parent_id, v2.campaign_id) == (2, world.base_version_id, campaign)
        actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions == [
        "campaign.create",
        "campaign.run",
        "campaign.round",
        "campaign.round",
        "campaign.complete",
    ]
    assert not fail_campaign(world.database, campaign, "too late")


def test_a_stale_run_cannot_write_and_a_refused_round_leaves_nothing(
    world: World, campaign: str
) -> None:
    attach_run(world.database, campaign, 1)
    record_round(world.database, campaign, 1, _record(1))
    attach_run(world.database, campaign, 2, resume=True)
    with pytest.raises(StaleRun, match="run 2, not run 1"):
        record_round(world.database, campaign, 1, _record(2))
    with pytest.raises(StaleRun):
        claim(world.database, campaign, 1)
    assert not fail_campaign(world.database, campaign, "old run", run_id=1)
    with world.database.session() as session:
        assert session.scalar(select(func.count()).select_from(TrainingRound)) == 1
        assert session.scalar(select(func.count()).select_from(RoundParticipation)) == 2
        assert session.scalar(select(func.count()).select_from(ModelVersion)) == 2
    assert claim(world.database, campaign, 2).resume.completed == 1
    assert running_campaigns(world.database) == [(campaign, 2)]
    assert fail_campaign(world.database, campaign, "the SuperLink restarted", run_id=2)
    view = get_campaign(world.database, campaign)
    assert (view.state, view.error, view.completed_rounds) == (
        "failed",
        "the SuperLink restarted",
        1,
    )
    assert view.config["resumes"] == 1
    with pytest.raises(CampaignStateError, match="failed"):
        attach_run(world.database, campaign, 3, resume=True)


def test_an_unknown_campaign_is_not_found(world: World) -> None:
    with pytest.raises(CampaignNotFound):
        get_campaign(world.database, "cmp_nope")
    with pytest.raises(CampaignNotFound):
        attach_run(world.database, "cmp_nope", 1)
    with pytest.raises(CampaignNotFound):
        fail_campaign(world.database, "cmp_nope", "x")
