"""`fedota admin campaigns` against a real coordinator with its Flower federation (SQLite):
start, list, show (with the per-round table), stop, and bad input refused with exit code 2.

Runs start on a real SuperLink with no devices online; the round shown is recorded by the
storage operation fedota's ServerApp uses (a campaign that trains is in tests/server/campaigns).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from cli_harness import Result, Run, parse_table
from sqlalchemy import select

from fedota.ml import digits
from fedota.ml.checkpoint import save_checkpoint
from fedota.server import Address, Coordinator, Limits, Settings
from fedota.server.campaigns import Participation, RoundRecord, record_round
from fedota.server.campaigns.weights import StoredCheckpoint
from fedota.storage.models import Cohort, Device, DeviceState, Fleet, ParticipationStatus

pytestmark = pytest.mark.timeout(120)

LOOPBACK = Address("127.0.0.1", 0)
WAIT = "600"


@pytest.fixture(scope="module")
def real(_sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coordinator]:
    """One coordinator with a federation for the module (a SuperLink start is seconds)."""
    data_dir = tmp_path_factory.mktemp("campaigns-cli")
    shutil.copyfile(_sqlite_template, data_dir / "db.sqlite3")
    settings = Settings(
        data_dir=data_dir / "data",
        db_url=f"sqlite:///{data_dir / 'db.sqlite3'}",
        listen=LOOPBACK,
        device_listen=LOOPBACK,
        repository_listen=LOOPBACK,
        federation_listen=LOOPBACK,
        limits=Limits(thread_pool_size=8),
    )
    coordinator = Coordinator.start(settings)
    try:
        yield coordinator
    finally:
        coordinator.stop(grace=0)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = digits.DigitsMLP((16,))
    path = tmp_path_factory.mktemp("model") / "digits.safetensors"
    save_checkpoint(
        path,
        model.state_dict(),
        architecture=digits.ARCHITECTURE,
        config=digits.config_of(model),
        variant="fp32",
    )
    return path


@pytest.fixture
def model(admin_of: Run, checkpoint: Path) -> str:
    """digits@v1 (imported once per module)."""
    listed = admin_of("models", "list", "--json")
    if not json.loads(listed.out):
        imported = admin_of("models", "import", str(checkpoint), "--family", "digits")
        assert imported.code == 0, imported.err
    return "digits@v1"


def _start(admin_of: Run, model: str, *extra: str) -> Result:
    return admin_of(
        *("campaigns", "start", "--model", model, "--rounds", "2"),
        *("--clients-per-round", "2", "--min-clients", "1", "--strategy", "fedavg"),
        *("--node-wait", WAIT, "--round-timeout", WAIT),
        *extra,
    )


def _add_devices(coordinator: Coordinator, names: list[str]) -> None:
    with coordinator.database.transaction() as session:
        fleet = session.scalars(select(Fleet)).one()
        cohort = session.scalars(select(Cohort).where(Cohort.name == "default")).one()
        for name in names:
            pem = f"key of {name}".encode()
            session.add(
                Device(
                    id=name,
                    fleet_id=fleet.id,
                    cohort_id=cohort.id,
                    state=DeviceState.ACCEPTED,
                    hardware_class="cpu",
                    public_key_sha256=hashlib.sha256(pem).hexdigest(),
                    public_key_pem=pem.decode(),
                )
            )


def test_start_list_show_stop(admin_of: Run, model: str) -> None:
    started = _start(admin_of, model, "--uplink", "int8", "--json")
    assert started.code == 0, started.err
    campaign = json.loads(started.out)
    assert campaign["state"] == "running" and campaign["settings"]["uplink"] == "int8"
    assert campaign["rounds_done"] == 0 and campaign["rounds_total"] == 2

    listed = admin_of("campaigns", "list")
    rows = {row["ID"]: row for row in parse_table(listed.out)}
    assert rows[campaign["id"]]["STATE"] == "running"
    assert rows[campaign["id"]]["ROUNDS"] == "0/2"
    assert rows[campaign["id"]]["MODEL"] == "digits@v1"

    shown = admin_of("campaigns", "show", campaign["id"])
    assert shown.code == 0, shown.err
    assert "uplink int8" in shown.out and "no completed rounds yet" in shown.out
    assert "trains lora:4" in shown.out and "Secure aggregation  off" in shown.out

    stopped = admin_of("campaigns", "stop", campaign["id"])
    assert stopped.code == 0, stopped.err
    assert stopped.out == f"campaign {campaign['id']} is cancelled: stopped by an operator (0/2)\n"

    again = admin_of("campaigns", "stop", campaign["id"])
    assert again.code == 2 and "already ended (cancelled)" in again.err


def test_show_prints_the_rounds_and_who_was_refused(
    admin_of: Run, model: str, real: Coordinator
) -> None:
    campaign = json.loads(_start(admin_of, model, "--json").out)
    _add_devices(real, ["cli-d0", "cli-d1", "cli-d2"])
    record_round(
        real.database,
        campaign["id"],
        campaign["flower_run_id"],
        RoundRecord(
            number=1,
            started_at=dt.datetime.now(dt.UTC),
            participations=[
                Participation("cli-d0", ParticipationStatus.ACCEPTED, 100, 2048, "", {}),
                Participation("cli-d1", ParticipationStatus.REJECTED, 90, 950, "norm-too-large: 9"),
                Participation("cli-d2", ParticipationStatus.FAILED, 0, 0, "no reply in 600s"),
            ],
            metrics={"eval_loss": 0.4321, "eval_accuracy": 0.875, "peak_memory_bytes": 3 << 20},
            trainable_key="a" * 64,
            strategy_state_key=None,
            checkpoint=StoredCheckpoint("b" * 64, 1234, "c" * 64, 99),
        ),
    )
    try:
        shown = admin_of("campaigns", "show", campaign["id"])
        as_json = json.loads(admin_of("campaigns", "show", campaign["id"], "--json").out)
    finally:
        admin_of("campaigns", "stop", campaign["id"])

    assert shown.code == 0, shown.err
    table = shown.out[shown.out.index("ROUND") :]
    (row,) = parse_table(table.split("\n\n")[0].split("round 1:")[0])
    assert row == {
        "ROUND": "1",
        "VERSION": "digits@v2",
        "SELECTED": "3",
        "ACCEPTED": "1",
        "DROPPED": "1",
        "REJECTED": "1",
        "UPLINK": "2.9 KiB",
        "TRAIN MEM": "3.0 MiB",
        "EVAL LOSS": "0.4321",
        "EVAL ACC": "87.50%",
    }
    assert "round 1: cli-d1 rejected: norm-too-large: 9" in shown.out
    assert "round 1: cli-d2 dropped: no reply in 600s" in shown.out
    (round_json,) = as_json["rounds"]
    assert round_json["rejected"] == [{"device": "cli-d1", "reason": "norm-too-large: 9"}]
    assert round_json["eval_accuracy"] == 0.875 and round_json["train_loss"] is None
    assert round_json["peak_memory_bytes"] == 3 << 20


def test_a_campaign_may_train_chosen_layers_instead_of_adapters(admin_of: Run, model: str) -> None:
    started = _start(admin_of, model, "--trainable", "layers:layers.1", "--json")
    assert started.code == 0, started.err
    campaign = json.loads(started.out)
    try:
        assert campaign["settings"]["trainable"] == "layers:layers.1"
        assert "trains layers:layers.1" in admin_of("campaigns", "show", campaign["id"]).out
    finally:
        admin_of("campaigns", "stop", campaign["id"])


def test_a_campaign_may_bound_the_update_norm(admin_of: Run, model: str) -> None:
    started = _start(admin_of, model, "--max-update-norm", "2.5", "--json")
    assert started.code == 0, started.err
    campaign = json.loads(started.out)
    try:
        assert campaign["settings"]["max_update_norm"] == 2.5
        assert "update norm at most 2.5" in admin_of("campaigns", "show", campaign["id"]).out
    finally:
        admin_of("campaigns", "stop", campaign["id"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--dp-clip", "1.0"), "--dp-clip and --dp-noise go together"),
        (("--dp-noise", "nan", "--dp-clip", "1"), "'nan' is not a positive number"),
        (("--max-update-norm", "0"), "'0' is not a positive number"),
        (("--max-update-norm", "-3"), "'-3' is not a positive number"),
        (("--strategy", "fedsgd"), "invalid choice: 'fedsgd'"),
        (("--uplink", "zip"), "uplink: uplink must be none, int8"),
        (("--secure-aggregation",), "secure_aggregation: min_clients must be at least 2"),
        (("--cohort", "nowhere"), "cohort nowhere does not exist"),
        (("--clients-per-round", "1", "--min-clients", "2"), "--min-clients (2) cannot exceed"),
        (("--rounds", "0"), "'0' is not a whole number of at least 1"),
        (("--trainable", "adapters"), "trainable must be lora:RANK or layers:PATTERN"),
        (("--trainable", "lora:0"), "needs a rank of at least 1"),
        (("--trainable", "layers:head"), "no layer of the model matches 'head'; its layers: "),
    ],
)
def test_bad_start_options_exit_2(
    admin_of: Run, model: str, extra: tuple[str, ...], message: str
) -> None:
    before = json.loads(admin_of("campaigns", "list", "--json").out)

    result = _start(admin_of, model, *extra)

    assert result.code == 2
    assert message in result.err and result.out == ""
    assert json.loads(admin_of("campaigns", "list", "--json").out) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "cmp_xyz"), "'cmp_xyz' is not a campaign id"),
        (("show", "cmp_00ff"), "no campaign cmp_00ff"),
        (("stop", "cmp_00ff"), "no campaign cmp_00ff"),
    ],
)
def test_bad_ids_exit_2(admin_of: Run, args: tuple[str, ...], message: str) -> None:
    result = admin_of("campaigns", *args)

    assert result.code == 2 and message in result.err
    assert result.err.count("\n") == 1


def test_an_unknown_model_exits_2(admin_of: Run, model: str) -> None:
    result = _start(admin_of, "digits@v9")

    assert result.code == 2
    assert "model version digits@v9 does not exist" in result.err
