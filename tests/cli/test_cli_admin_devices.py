"""`fedota admin devices ...`: tables, JSON, pagination and state changes."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from cli_harness import Coordinator, Run, parse_table
from fake_admin import NOW, make_device

from fedota.protos.v1 import device_pb2


@pytest.fixture
def fleet(coordinator: Coordinator) -> Coordinator:
    """Five devices: two heard from, one pending that never was, one revoked, one in `lab`."""
    coordinator.fake.devices.extend(
        [
            make_device(1, last_seen=NOW - dt.timedelta(hours=3, minutes=5), model_version="v7"),
            make_device(2, last_seen=NOW - dt.timedelta(days=2, hours=1)),
            make_device(3, state=device_pb2.DEVICE_STATE_PENDING, hardware_class="int8"),
            make_device(4, state=device_pb2.DEVICE_STATE_REVOKED, state_reason="stolen"),
            make_device(5, cohort="lab", labels={"site": "berlin"}),
        ]
    )
    return coordinator


def test_list_prints_a_table_with_every_device(admin: Run, fleet: Coordinator) -> None:
    result = admin("devices", "list")

    assert result.code == 0, result.err
    rows = {row["ID"]: row for row in parse_table(result.out)}
    assert list(rows) == [f"dev-{n:04d}" for n in range(1, 6)]
    assert list(rows["dev-0001"]) == [
        "ID",
        "STATE",
        "COHORT",
        "CLASS",
        "LAST SEEN",
        "MODEL",
        "CERT EXPIRES",
    ]
    assert rows["dev-0001"] == {
        "ID": "dev-0001",
        "STATE": "accepted",
        "COHORT": "default",
        "CLASS": "fp32",
        "LAST SEEN": "3h ago",
        "MODEL": "v7",
        "CERT EXPIRES": "in 29d",
    }
    assert rows["dev-0002"]["LAST SEEN"] == "2d ago"
    assert rows["dev-0003"]["STATE"] == "pending"
    assert rows["dev-0003"]["CLASS"] == "int8"
    assert rows["dev-0003"]["LAST SEEN"] == "never"
    assert rows["dev-0003"]["MODEL"] == "-"
    assert rows["dev-0004"]["STATE"] == "revoked"
    assert rows["dev-0005"]["COHORT"] == "lab"


def test_list_json_is_one_document_of_device_objects(admin: Run, fleet: Coordinator) -> None:
    result = admin("devices", "list", "--json")

    assert result.code == 0, result.err
    devices = json.loads(result.out)
    assert [d["id"] for d in devices] == [f"dev-{n:04d}" for n in range(1, 6)]
    first, _, pending, revoked, lab = devices
    assert first["state"] == "accepted"
    assert first["hardware_class"] == "fp32"
    assert first["model_version"] == "v7"
    assert dt.datetime.fromisoformat(first["last_seen"]) == NOW - dt.timedelta(hours=3, minutes=5)
    assert first["last_seen"].endswith("Z")
    assert first["certificate_expires_at"] is not None
    assert "hardware" not in first
    assert pending["state"] == "pending"
    assert pending["last_seen"] is None
    assert pending["model_version"] is None
    assert revoked["state"] == "revoked"
    assert revoked["state_reason"] == "stolen"
    assert lab["cohort"] == "lab"
    assert lab["labels"] == {"site": "berlin"}


def test_list_follows_page_tokens_to_the_end(admin: Run, fleet: Coordinator) -> None:
    fleet.fake.max_page_size = 2

    result = admin("devices", "list", "--json")

    assert len(json.loads(result.out)) == 5
    pages = fleet.fake.calls("ListDevices")
    assert [p.page_token for p in pages] == ["", "2", "4"]


def test_list_stops_when_the_coordinator_repeats_a_page_token(
    admin: Run, fleet: Coordinator
) -> None:
    fleet.fake.stuck_page_token = "2"

    result = admin("devices", "list")

    assert result.code == 1
    assert result.err == "fedota: error: the coordinator repeated a page token; listing stopped\n"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("--state", "pending"), ["dev-0003"]),
        (("--state", "revoked"), ["dev-0004"]),
        (("--cohort", "lab"), ["dev-0005"]),
    ],
)
def test_list_filters_are_sent_to_the_coordinator(
    admin: Run, fleet: Coordinator, flags: tuple[str, str], expected: list[str]
) -> None:
    result = admin("devices", "list", "--json", *flags)

    assert [d["id"] for d in json.loads(result.out)] == expected


def test_list_of_no_devices(admin: Run, coordinator: Coordinator) -> None:
    assert admin("devices", "list").out == "no devices\n"
    assert json.loads(admin("devices", "list", "--json").out) == []


def test_show_json_adds_the_hardware_profile(admin: Run, fleet: Coordinator) -> None:
    result = admin("devices", "show", "dev-0001", "--json")

    assert result.code == 0, result.err
    device = json.loads(result.out)
    listed = json.loads(admin("devices", "list", "--json").out)[0]
    assert device == {**listed, "hardware": device["hardware"]}
    assert device["hardware"]["cpu_count"] == 4
    assert device["hardware"]["memory_bytes"] == 8 * 1024**3
    assert device["hardware"]["torch_version"] == "2.13.0+cpu"


def test_show_prints_certificate_expiry_and_hardware(admin: Run, fleet: Coordinator) -> None:
    result = admin("devices", "show", "dev-0001")

    assert result.code == 0, result.err
    fields = {
        line.split("  ")[0]: line.split("  ", 1)[1].strip() for line in result.out.splitlines()
    }
    assert fields["State"] == "accepted"
    assert fields["Cert expires"].endswith("(in 29d)")
    assert fields["Memory"] == "8.0 GiB"
    assert fields["Torch"] == "2.13.0+cpu"


def test_show_unknown_device(admin: Run, fleet: Coordinator) -> None:
    result = admin("devices", "show", "dev-9999")

    assert result.code == 2
    assert result.err == "fedota: error: no device 'dev-9999'\n"


@pytest.mark.parametrize(
    ("verb", "method", "state"),
    [
        ("accept", "AcceptDevice", "accepted"),
        ("reject", "RejectDevice", "rejected"),
        ("revoke", "RevokeDevice", "revoked"),
    ],
)
def test_state_changes_send_id_and_reason(
    admin: Run, fleet: Coordinator, verb: str, method: str, state: str
) -> None:
    result = admin("devices", verb, "dev-0003", "--reason", "checked by ops")

    assert result.code == 0, result.err
    assert result.out == f"device dev-0003 is now {state}\n"
    (request,) = fleet.fake.calls(method)
    assert (request.id, request.reason) == ("dev-0003", "checked by ops")

    as_json = json.loads(admin("devices", verb, "dev-0003", "--json").out)
    assert as_json["state"] == state
