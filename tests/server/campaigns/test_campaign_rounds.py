"""A campaign's rounds end to end in one process: the real round logic and storage (SQLite and
PostgreSQL) against devices served by the real ClientApp functions over the FleetLink seam."""

from __future__ import annotations

from pathlib import Path

import pytest
from campaign_world import DIGITS_SETTINGS, World, held_out_accuracy, prepare_device, version_model
from memory_fleet import MemoryFleet, huge_update, nan_update
from sqlalchemy import select

from fedota.server import audit
from fedota.server.campaigns import (
    CampaignSpec,
    StaleRun,
    attach_run,
    create_campaign,
    get_campaign,
    resume_point,
)
from fedota.server.campaigns.run import CampaignFailure, CampaignRun
from fedota.storage.models import (
    CampaignState,
    DeviceState,
    ModelVersion,
    TrainingCampaign,
    VersionSource,
)

SETTINGS = DIGITS_SETTINGS


def _devices(world: World, tmp_path: Path, names: list[str], cohort: str = "a") -> dict[str, Path]:
    devices = {}
    for index, name in enumerate(names):
        world.add_device(name, cohort)
        devices[name] = tmp_path / "devices" / name
        prepare_device(devices[name], index)
    return devices


def _start(world: World, spec: CampaignSpec, run_id: int = 11) -> str:
    campaign_id = create_campaign(
        world.database,
        name="tune",
        base_version_id=world.base_version_id,
        spec=spec,
        actor=audit.Actor.system(),
    )
    attach_run(world.database, campaign_id, run_id)
    return campaign_id


def _run(world: World, fleet: MemoryFleet, campaign_id: str, run_id: int = 11, **kw) -> str:  # type: ignore[no-untyped-def]
    return CampaignRun(
        world.database, world.blobs, fleet, campaign_id, run_id, world.work_dir, **kw
    ).run()


@pytest.mark.timeout(120)
def test_rounds_become_versions_with_lineage_and_beat_the_base(
    world: World, tmp_path: Path
) -> None:
    devices = _devices(world, tmp_path, ["d0", "d1", "d2", "d3"])
    spec = CampaignSpec(rounds=3, clients_per_round=4, min_clients=3, settings=SETTINGS)
    campaign_id = _start(world, spec)
    final = _run(world, MemoryFleet(devices), campaign_id)

    view = get_campaign(world.database, campaign_id)
    assert view.state == "completed" and view.result_version == "digits@v4"
    assert [r.number for r in view.rounds] == [1, 2, 3]
    for row in view.rounds:
        assert (row.selected, row.accepted, row.rejected, row.dropped) == (4, 4, (), ())
        assert row.uplink_bytes > 0 and row.metrics["examples"] > 0
        assert 0 <= row.metrics["eval_accuracy"] <= 1 and row.metrics["train_loss"] > 0
        assert row.metrics["peak_memory_bytes"] > 0
    with world.database.session() as session:
        versions = {v.number: v for v in session.scalars(select(ModelVersion))}
    assert [versions[n].parent_id for n in (2, 3, 4)] == [versions[n].id for n in (1, 2, 3)]
    assert all(versions[n].source is VersionSource.CAMPAIGN for n in (2, 3, 4))
    assert all(versions[n].campaign_id == campaign_id for n in (2, 3, 4))
    assert [versions[n].metrics["round"] for n in (2, 3, 4)] == [1.0, 2.0, 3.0]
    assert final == versions[4].id
    before = held_out_accuracy(version_model(world, world.base_version_id, tmp_path))
    after = held_out_accuracy(version_model(world, final, tmp_path))
    assert after >= before + 0.05, (before, after)


@pytest.mark.timeout(120)
def test_bad_updates_and_broken_devices_are_recorded_and_the_round_completes(
    world: World, tmp_path: Path
) -> None:
    devices = _devices(world, tmp_path, ["d0", "d1", "nan", "huge", "mute"])
    empty = tmp_path / "devices" / "empty"
    world.add_device("empty", "a")
    empty.mkdir(parents=True)
    prepare_device(empty, 0)
    (empty / "examples.db").unlink()
    devices["empty"] = empty
    fleet = MemoryFleet(devices, poison={"nan": nan_update, "huge": huge_update}, silent={"mute"})
    spec = CampaignSpec(
        rounds=1, clients_per_round=6, min_clients=2, round_timeout=5, settings=SETTINGS
    )
    campaign_id = _start(world, spec)
    _run(world, fleet, campaign_id)

    (row,) = get_campaign(world.database, campaign_id).rounds
    assert row.accepted == 2
    rejected = dict(row.rejected)
    assert rejected["nan"].startswith("not-finite:")
    assert rejected["huge"].startswith("norm-too-large:")
    dropped = dict(row.dropped)
    assert dropped["mute"] == "no reply within 5s"
    assert "no example store" in dropped["empty"]
    assert row.metrics["rejected"] == 2 and row.metrics["dropped"] == 2


@pytest.mark.timeout(120)
def test_too_few_accepted_updates_end_the_run_and_record_no_round(
    world: World, tmp_path: Path
) -> None:
    devices = _devices(world, tmp_path, ["d0", "nan"])
    spec = CampaignSpec(rounds=2, clients_per_round=2, min_clients=2, settings=SETTINGS)
    campaign_id = _start(world, spec)
    fleet = MemoryFleet(devices, poison={"nan": nan_update})
    with pytest.raises(CampaignFailure, match=r"round 1: 1 update\(s\) accepted.*nan: not-finite"):
        _run(world, fleet, campaign_id)
    assert resume_point(world.database, campaign_id).completed == 0


@pytest.mark.timeout(120)
def test_a_device_on_another_version_refuses_and_a_revoked_one_gets_no_work(
    world: World, tmp_path: Path
) -> None:
    devices = _devices(world, tmp_path, ["d0", "d1", "d2"])
    other = tmp_path / "devices" / "other"
    world.add_device("other", "a")
    prepare_device(other, 3, version=2)
    devices["other"] = other

    def revoke_after_round_one(kind: str, number: int) -> None:
        if (kind, number) == ("evaluate", 1):
            world.set_state("d2", DeviceState.REVOKED)

    fleet = MemoryFleet(devices, on_exchange=revoke_after_round_one)
    spec = CampaignSpec(rounds=2, clients_per_round=4, min_clients=2, settings=SETTINGS)
    campaign_id = _start(world, spec)
    _run(world, fleet, campaign_id)
    first, second = get_campaign(world.database, campaign_id).rounds
    assert (
        "this device runs digits@v2; the campaign trains digits@v1" in dict(first.dropped)["other"]
    )
    assert {d for kind, d, n in fleet.calls if n == 2 and kind == "train"} == {"d0", "d1", "other"}
    assert second.selected == 3


@pytest.mark.timeout(120)
def test_a_new_run_resumes_after_the_last_completed_round(world: World, tmp_path: Path) -> None:
    devices = _devices(world, tmp_path, ["d0", "d1"])
    spec = CampaignSpec(rounds=3, clients_per_round=2, min_clients=2, settings=SETTINGS)
    campaign_id = _start(world, spec, run_id=1)

    def crash_in_round_two(kind: str, number: int) -> None:
        if number == 2:
            raise RuntimeError("the ServerApp process died")

    with pytest.raises(RuntimeError, match="died"):
        _run(world, MemoryFleet(devices, on_exchange=crash_in_round_two), campaign_id, run_id=1)
    kept = get_campaign(world.database, campaign_id).rounds
    assert [r.number for r in kept] == [1]

    attach_run(world.database, campaign_id, 2, resume=True)
    # The first run, presumed dead, can no longer write.
    with pytest.raises(StaleRun):
        _run(world, MemoryFleet(devices), campaign_id, run_id=1)
    fleet = MemoryFleet(devices)
    _run(world, fleet, campaign_id, run_id=2)
    assert {n for _k, _d, n in fleet.calls} == {2, 3}

    view = get_campaign(world.database, campaign_id)
    assert view.state == "completed" and view.config["resumes"] == 1
    assert view.rounds[0] == kept[0]
    assert [r.metrics["flower_run_id"] for r in view.rounds] == [1, 2, 2]
    with world.database.session() as session:
        versions = {v.number: v for v in session.scalars(select(ModelVersion))}
        campaign = session.get(TrainingCampaign, campaign_id)
        assert campaign is not None and campaign.state is CampaignState.COMPLETED
    assert [versions[n].parent_id for n in (2, 3, 4)] == [versions[n].id for n in (1, 2, 3)]


@pytest.mark.timeout(60)
def test_a_resumed_run_must_say_so(world: World, tmp_path: Path) -> None:
    devices = _devices(world, tmp_path, ["d0", "d1"])
    spec = CampaignSpec(rounds=2, clients_per_round=2, min_clients=2, settings=SETTINGS)
    campaign_id = _start(world, spec, run_id=1)

    def crash(kind: str, number: int) -> None:
        if number == 2:
            raise RuntimeError("died")

    with pytest.raises(RuntimeError):
        _run(world, MemoryFleet(devices, on_exchange=crash), campaign_id, run_id=1)
    attach_run(world.database, campaign_id, 2, resume=True)
    with pytest.raises(CampaignFailure, match="1 completed rounds"):
        _run(world, MemoryFleet(devices), campaign_id, run_id=2, resume=False)


@pytest.mark.timeout(60)
def test_too_few_online_devices_fail_with_the_reason(world: World, tmp_path: Path) -> None:
    devices = _devices(world, tmp_path, ["d0", "d1"])
    spec = CampaignSpec(
        rounds=1, clients_per_round=2, min_clients=2, node_wait=3, settings=SETTINGS
    )
    campaign_id = _start(world, spec)
    with pytest.raises(CampaignFailure, match=r"1 accepted device.* online after 3s.* needs 2"):
        _run(world, MemoryFleet(devices, offline={"d1"}), campaign_id)
