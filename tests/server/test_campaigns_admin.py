"""Campaigns on the Admin API of a real coordinator with its Flower federation (SQLite and
PostgreSQL): start, list, show and stop; bad options named; viewers read only; a coordinator
without a federation refuses.

A campaign that trains is covered in tests/server/campaigns; here the runs start on a real
SuperLink with no devices online, and the per-round table is recorded by the storage operation
the ServerApp uses.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import torch
from coordinator_support import (
    AdminClient,
    add_operator,
    coordinator_settings,
    enroll,
    public_channel,
)

from fedota.ml import digits
from fedota.ml.checkpoint import save_checkpoint
from fedota.protos.v1 import admin_pb2, releases_pb2
from fedota.protos.v1 import campaigns_pb2 as pb
from fedota.server import Address, Coordinator
from fedota.server.campaigns import CoordinatorLink, Participation, RoundRecord, record_round
from fedota.server.campaigns.weights import StoredCheckpoint
from fedota.storage.models import ParticipationStatus, Role

pytestmark = pytest.mark.timeout(120)

UPLOAD_CHUNK = 64 * 1024
# Long enough that a run started here never gives up waiting for devices during the module.
WAIT = 600.0


@dataclass
class Federated:
    coordinator: Coordinator
    admin: AdminClient
    devices: list[str]


def _import_digits(admin: AdminClient, directory: Path) -> str:
    torch.manual_seed(0)
    model = digits.DigitsMLP((16,))
    path = directory / "digits.safetensors"
    save_checkpoint(
        path,
        model.state_dict(),
        architecture=digits.ARCHITECTURE,
        config=digits.config_of(model),
        variant="fp32",
    )
    data = path.read_bytes()
    header = releases_pb2.ImportModelHeader(family="digits", size_bytes=len(data))
    chunks = [releases_pb2.ImportModelChunk(header=header)]
    chunks += [
        releases_pb2.ImportModelChunk(data=data[i : i + UPLOAD_CHUNK])
        for i in range(0, len(data), UPLOAD_CHUNK)
    ]
    return str(admin.ImportModel(iter(chunks)).ref)


@pytest.fixture(scope="module")
def federated(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federated]:
    """One coordinator with a federation for the module, digits@v1 imported, cohort `lab`,
    two accepted devices."""
    data_dir = tmp_path_factory.mktemp("federated")
    settings = dataclasses.replace(
        coordinator_settings(data_dir, module_db_url), federation_listen=Address("127.0.0.1", 0)
    )
    coordinator = Coordinator.start(settings)
    try:
        with public_channel(coordinator) as channel:
            admin = AdminClient(channel, coordinator.admin_token)
            assert _import_digits(admin, data_dir) == "digits@v1"
            admin.CreateCohort(admin_pb2.CreateCohortRequest(name="lab"))
            token = admin.CreateEnrollmentToken(
                admin_pb2.CreateEnrollmentTokenRequest(
                    ttl_seconds=3600, max_uses=2, auto_accept=True, cohort="lab"
                )
            ).token
            devices = [enroll(coordinator, token).id for _ in range(2)]
            yield Federated(coordinator, admin, devices)
    finally:
        coordinator.stop(grace=0)


def _start(admin: AdminClient, model: str = "digits@v1", **settings: object) -> pb.Campaign:
    base: dict[str, object] = {
        "rounds": 2,
        "clients_per_round": 2,
        "min_clients": 1,
        "strategy": "fedavg",
        "node_wait_seconds": WAIT,
        "round_timeout_seconds": WAIT,
    }
    request = pb.StartCampaignRequest(model=model, settings=pb.CampaignSettings(**base | settings))
    return admin.StartCampaign(request)


def _run_status(coordinator: Coordinator, run_id: int) -> str:
    assert coordinator.federation is not None
    with coordinator.federation.control() as control:
        status = control.run_status(run_id)
    return f"{status.status}/{status.sub_status}"


def _wait_finished(coordinator: Coordinator, run_id: int, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    status = _run_status(coordinator, run_id)
    while not status.startswith("finished") and time.monotonic() < deadline:
        time.sleep(0.5)
        status = _run_status(coordinator, run_id)
    return status


def test_the_coordinator_file_names_this_coordinator(federated: Federated) -> None:
    coordinator = federated.coordinator
    link = CoordinatorLink.read((coordinator.data_dir / "campaigns" / "coordinator.json").resolve())

    assert link.database_url == coordinator.database.url.render_as_string(hide_password=False)
    assert Path(link.blob_root) == (coordinator.data_dir / "blobs").resolve()
    assert coordinator.federation is not None
    assert coordinator.federation.campaigns.following() == set()


def test_start_list_show_and_stop(federated: Federated) -> None:
    admin, coordinator = federated.admin, federated.coordinator

    started = _start(
        admin, cohort="lab", uplink="int8", local_epochs=2, dp_clip=1.0, dp_noise=0.8,
        max_update_norm=40.0,
    )  # fmt: skip

    assert started.state == "running" and started.flower_run_id
    assert (started.model, started.name, started.rounds_total) == (
        "digits@v1",
        "train digits@v1",
        2,
    )
    assert started.settings.cohort == "lab" and started.settings.uplink == "int8"
    assert started.settings.local_epochs == 2 and started.settings.evaluate == "every-round"
    assert (started.privacy.clip, started.privacy.noise_multiplier) == (1.0, 0.8)
    assert started.settings.max_update_norm == 40.0
    assert started.privacy.epsilon == 0.0 and started.privacy.delta == 1e-5
    assert not _run_status(coordinator, started.flower_run_id).startswith("finished")
    assert coordinator.federation is not None
    assert started.id in coordinator.federation.campaigns.following()

    listed = admin.ListCampaigns(pb.ListCampaignsRequest()).campaigns
    assert started.id in [c.id for c in listed]
    shown = admin.GetCampaign(pb.CampaignRef(id=started.id))
    assert (shown.state, shown.rounds_done, list(shown.rounds)) == ("running", 0, [])

    stopped = admin.StopCampaign(pb.CampaignRef(id=started.id))

    assert (stopped.state, stopped.reason) == ("cancelled", "stopped by an operator")
    assert stopped.HasField("finished_at")
    assert _wait_finished(coordinator, started.flower_run_id) == "finished/stopped"
    assert started.id not in coordinator.federation.campaigns.following()
    with pytest.raises(grpc.RpcError) as again:
        admin.StopCampaign(pb.CampaignRef(id=started.id))
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already ended (cancelled)" in again.value.details()


def test_show_has_the_per_round_table(federated: Federated) -> None:
    admin, coordinator = federated.admin, federated.coordinator
    started = _start(admin, rounds=3)
    d0, d1 = federated.devices
    record_round(
        coordinator.database,
        started.id,
        started.flower_run_id,
        RoundRecord(
            number=1,
            started_at=dt.datetime.now(dt.UTC),
            participations=[
                Participation(d0, ParticipationStatus.ACCEPTED, 100, 900, "", {"train-loss": 0.5}),
                Participation(d1, ParticipationStatus.REJECTED, 90, 950, "not-finite: w has NaN"),
            ],
            metrics={"accepted": 1, "rejected": 1, "eval_loss": 0.4, "eval_accuracy": 0.8},
            trainable_key="a" * 64,
            strategy_state_key=None,
            checkpoint=StoredCheckpoint("b" * 64, 1234, "c" * 64, 99),
        ),
    )
    try:
        shown = admin.GetCampaign(pb.CampaignRef(id=started.id))
    finally:
        admin.StopCampaign(pb.CampaignRef(id=started.id))

    assert (shown.rounds_done, shown.rounds_total, len(shown.rounds)) == (1, 3, 1)
    (row,) = shown.rounds
    assert (row.number, row.version, row.selected, row.accepted) == (1, "digits@v2", 2, 1)
    assert [(r.device_id, r.reason) for r in row.rejected] == [(d1, "not-finite: w has NaN")]
    assert list(row.dropped) == [] and row.uplink_bytes == 1850
    assert (row.eval_loss, row.eval_accuracy) == (0.4, 0.8)
    assert not row.HasField("train_loss")
    assert not shown.HasField("privacy")


@pytest.mark.parametrize(
    ("fields", "code", "message"),
    [
        ({"strategy": "fedsgd"}, "INVALID_ARGUMENT", "strategy: must be one of"),
        ({"uplink": "zip"}, "INVALID_ARGUMENT", "uplink: uplink must be none"),
        ({"min_clients": 3}, "INVALID_ARGUMENT", "min_clients: min_clients (3) cannot exceed"),
        ({"model": "digits@v9"}, "NOT_FOUND", "model version digits@v9 does not exist"),
        ({"cohort": "nowhere"}, "NOT_FOUND", "cohort nowhere does not exist"),
        ({"secure_aggregation": True}, "FAILED_PRECONDITION", "min_clients must be at least 2"),
    ],
)
def test_bad_options_are_refused_and_start_nothing(
    federated: Federated, fields: dict[str, object], code: str, message: str
) -> None:
    before = len(federated.admin.ListCampaigns(pb.ListCampaignsRequest()).campaigns)

    with pytest.raises(grpc.RpcError) as refused:
        _start(federated.admin, **fields)  # type: ignore[arg-type]

    assert refused.value.code().name == code
    assert message in refused.value.details()
    assert len(federated.admin.ListCampaigns(pb.ListCampaignsRequest()).campaigns) == before


def test_a_viewer_lists_and_shows_but_may_not_start_or_stop(federated: Federated) -> None:
    coordinator = federated.coordinator
    token = add_operator(coordinator.database, coordinator.ca_certificate_pem, Role.VIEWER)
    listed = federated.admin.ListCampaigns(pb.ListCampaignsRequest()).campaigns
    with public_channel(coordinator) as channel:
        viewer = AdminClient(channel, token)
        assert [c.id for c in viewer.ListCampaigns(pb.ListCampaignsRequest()).campaigns] == [
            c.id for c in listed
        ]
        if listed:
            assert viewer.GetCampaign(pb.CampaignRef(id=listed[0].id)).id == listed[0].id
        for call in (
            lambda: _start(viewer),
            lambda: viewer.StopCampaign(pb.CampaignRef(id="cmp_00ff")),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                call()
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_without_a_federation_start_and_stop_are_refused(db_url: str, tmp_path: Path) -> None:
    coordinator = Coordinator.start(coordinator_settings(tmp_path / "data", db_url))
    try:
        with public_channel(coordinator) as channel:
            admin = AdminClient(channel, coordinator.admin_token or "")
            for call in (
                lambda: _start(admin),
                lambda: admin.StopCampaign(pb.CampaignRef(id="cmp_00ff")),
            ):
                with pytest.raises(grpc.RpcError) as refused:
                    call()
                assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert refused.value.details() == (
                    "this coordinator runs no federation (started with --no-federation)"
                )
            admin.ListCampaigns(pb.ListCampaignsRequest())
    finally:
        coordinator.stop(grace=0)


def test_a_restarted_coordinator_follows_the_campaign_it_left_running(
    db_url: str, tmp_path: Path
) -> None:
    settings = dataclasses.replace(
        coordinator_settings(tmp_path / "data", db_url), federation_listen=Address("127.0.0.1", 0)
    )
    first = Coordinator.start(settings)
    try:
        with public_channel(first) as channel:
            admin = AdminClient(channel, first.admin_token)
            _import_digits(admin, tmp_path)
            started = _start(admin)
    finally:
        first.stop(grace=0)

    second = Coordinator.start(settings)
    try:
        assert second.federation is not None
        assert second.federation.campaigns.following() == {started.id}
        with public_channel(second) as channel:
            admin = AdminClient(channel, first.admin_token)
            assert admin.GetCampaign(pb.CampaignRef(id=started.id)).state == "running"
            stopped = admin.StopCampaign(pb.CampaignRef(id=started.id))
        assert stopped.state == "cancelled"
        assert second.federation.campaigns.following() == set()
    finally:
        second.stop(grace=0)
