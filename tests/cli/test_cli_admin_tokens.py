"""`fedota admin tokens ...` and `fedota admin cohorts ...`."""

from __future__ import annotations

import datetime as dt
import json

from cli_harness import Coordinator, Run, parse_table
from fake_admin import NOW

from fedota.trust import ENROLLMENT_KIND, parse_token


def test_create_defaults_to_one_use_for_a_day(admin: Run, coordinator: Coordinator) -> None:
    result = admin("tokens", "create")

    assert result.code == 0, result.err
    (request,) = coordinator.fake.calls("CreateEnrollmentToken")
    assert (request.cohort, request.ttl_seconds, request.max_uses) == ("", 86400, 1)
    assert not request.auto_accept
    token = next(line.strip() for line in result.out.splitlines() if "fdte1." in line)
    assert parse_token(token, ENROLLMENT_KIND).kind == ENROLLMENT_KIND
    assert f"--coordinator {coordinator.address}" in result.out


def test_create_json_carries_the_token_and_its_scope(admin: Run, coordinator: Coordinator) -> None:
    result = admin(
        "tokens",
        "create",
        "--json",
        "--cohort",
        "lab",
        "--expires",
        "2h",
        "--uses",
        "3",
        "--auto-accept",
        "--label",
        "site=berlin",
        "--label",
        "rack=7",
    )

    assert result.code == 0, result.err
    created = json.loads(result.out)
    parse_token(created["token"], ENROLLMENT_KIND)
    assert created["id"] == "tok-1"
    assert created["cohort"] == "lab"
    assert dt.datetime.fromisoformat(created["expires_at"]) == NOW + dt.timedelta(hours=2)
    assert created["max_uses"] == 3
    assert created["auto_accept"] is True
    assert created["labels"] == {"rack": "7", "site": "berlin"}
    (request,) = coordinator.fake.calls("CreateEnrollmentToken")
    assert request.ttl_seconds == 7200
    assert dict(request.labels) == {"site": "berlin", "rack": "7"}


def test_create_refuses_a_label_given_twice_differently(admin: Run) -> None:
    result = admin("tokens", "create", "--label", "site=a", "--label", "site=b")

    assert result.code == 2
    assert result.err == "fedota: error: label 'site' given twice with different values\n"


def test_create_rejects_bad_flags_before_calling(admin: Run, coordinator: Coordinator) -> None:
    for flags in (("--uses", "0"), ("--expires", "soon"), ("--label", "novalue")):
        result = admin("tokens", "create", *flags)
        assert result.code == 2
        assert "usage:" in result.err
    assert coordinator.fake.requests == []


def test_list_and_revoke(admin: Run, coordinator: Coordinator) -> None:
    admin("tokens", "create", "--uses", "2")
    admin("tokens", "create", "--cohort", "lab")

    revoked = admin("tokens", "revoke", "tok-1")
    assert revoked.out == "revoked enrollment token tok-1\n"

    active = parse_table(admin("tokens", "list").out)
    assert [(r["ID"], r["COHORT"], r["USES"], r["STATUS"]) for r in active] == [
        ("tok-2", "lab", "0/1", "active")
    ]
    assert active[0]["EXPIRES"] == "in 23h"
    everything = json.loads(admin("tokens", "list", "--all", "--json").out)
    assert [(t["id"], t["revoked"]) for t in everything] == [("tok-1", True), ("tok-2", False)]
    assert "token" not in everything[0]
    assert [r.include_inactive for r in coordinator.fake.calls("ListEnrollmentTokens")] == [
        False,
        True,
    ]


def test_revoke_unknown_token(admin: Run) -> None:
    result = admin("tokens", "revoke", "tok-404")

    assert (result.code, result.err) == (2, "fedota: error: no enrollment token 'tok-404'\n")


def test_cohorts_create_and_list(admin: Run, coordinator: Coordinator) -> None:
    created = admin("cohorts", "create", "lab", "--description", "bench devices")
    assert (created.code, created.out) == (0, "created cohort lab\n")

    rows = parse_table(admin("cohorts", "list").out)
    assert [(r["NAME"], r["DEVICES"], r["DESCRIPTION"]) for r in rows] == [
        ("lab", "0", "bench devices")
    ]
    (cohort,) = json.loads(admin("cohorts", "list", "--json").out)
    assert cohort["name"] == "lab"
    assert cohort["description"] == "bench devices"

    again = admin("cohorts", "create", "lab")
    assert (again.code, again.err) == (2, "fedota: error: cohort 'lab' already exists\n")
