"""Admin cohort and enrollment-token operations."""

from __future__ import annotations

from collections.abc import Callable

import grpc
from coordinator_support import AdminClient, enroll, rpc_error, snapshot

from fedota.protos.v1 import admin_pb2
from fedota.server import Coordinator
from fedota.storage.db import Database
from fedota.trust import ENROLLMENT_KIND, certificate_sha256, parse_token


def test_bootstrap_created_the_default_cohort(admin: AdminClient) -> None:
    cohorts = admin.ListCohorts(admin_pb2.ListCohortsRequest()).cohorts

    assert [(c.name, c.fleet, c.device_count) for c in cohorts] == [("default", "default", 0)]


def test_create_cohort_and_refuse_a_duplicate(admin: AdminClient, database: Database) -> None:
    created = admin.CreateCohort(admin_pb2.CreateCohortRequest(name="edge-1", description="roof"))
    before = snapshot(database)

    error = rpc_error(lambda: admin.CreateCohort(admin_pb2.CreateCohortRequest(name="edge-1")))

    assert (created.name, created.description, created.fleet) == ("edge-1", "roof", "default")
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error.details() == "cohort edge-1 already exists"
    assert snapshot(database) == before


def test_a_token_pins_the_fleet_ca_and_is_shown_once(
    coordinator: Coordinator, admin: AdminClient
) -> None:
    created = admin.CreateEnrollmentToken(
        admin_pb2.CreateEnrollmentTokenRequest(
            ttl_seconds=3600, max_uses=3, auto_accept=True, labels={"site": "a"}
        )
    )

    token = parse_token(created.token, ENROLLMENT_KIND)
    assert token.ca_sha256 == certificate_sha256(coordinator.ca_certificate_pem)
    info = created.info
    assert info.id.startswith("tok_")
    assert (info.cohort, info.max_uses, info.uses, info.auto_accept) == ("default", 3, 0, True)
    assert info.created_by == "admin"
    assert dict(info.labels) == {"site": "a"}
    delta = info.expires_at.ToSeconds() - info.created_at.ToSeconds()
    assert delta == 3600
    listed = admin.ListEnrollmentTokens(admin_pb2.ListEnrollmentTokensRequest()).tokens
    assert [t.id for t in listed] == [info.id]
    assert created.token not in str(listed)


def test_unknown_cohort_says_how_to_create_it(admin: AdminClient, database: Database) -> None:
    before = snapshot(database)

    error = rpc_error(
        lambda: admin.CreateEnrollmentToken(
            admin_pb2.CreateEnrollmentTokenRequest(cohort="lab", ttl_seconds=60, max_uses=1)
        )
    )

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == (
        "cohort lab does not exist; create it with `fedota admin cohorts create lab`"
    )
    assert snapshot(database) == before


def test_inactive_tokens_are_listed_only_on_request(
    coordinator: Coordinator, admin: AdminClient, make_token: Callable[..., str]
) -> None:
    used_up = make_token(uses=1)
    enroll(coordinator, used_up)
    make_token(uses=1)
    revoked_id = admin.ListEnrollmentTokens(admin_pb2.ListEnrollmentTokensRequest()).tokens[0].id
    admin.RevokeEnrollmentToken(admin_pb2.RevokeEnrollmentTokenRequest(id=revoked_id))
    make_token(uses=1)

    active = admin.ListEnrollmentTokens(admin_pb2.ListEnrollmentTokensRequest()).tokens
    every = admin.ListEnrollmentTokens(
        admin_pb2.ListEnrollmentTokensRequest(include_inactive=True)
    ).tokens

    assert len(active) == 1
    assert len(every) == 3
    assert [(t.uses, t.revoked) for t in every] == [(1, False), (0, True), (0, False)]


def test_revoking_twice_or_an_unknown_token_is_refused(
    admin: AdminClient, make_token: Callable[..., str], database: Database
) -> None:
    make_token()
    token_id = admin.ListEnrollmentTokens(admin_pb2.ListEnrollmentTokensRequest()).tokens[0].id
    revoked = admin.RevokeEnrollmentToken(admin_pb2.RevokeEnrollmentTokenRequest(id=token_id))
    before = snapshot(database)

    again = rpc_error(
        lambda: admin.RevokeEnrollmentToken(admin_pb2.RevokeEnrollmentTokenRequest(id=token_id))
    )
    unknown = rpc_error(
        lambda: admin.RevokeEnrollmentToken(
            admin_pb2.RevokeEnrollmentTokenRequest(id="tok_0000000000000000")
        )
    )

    assert revoked.revoked
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert again.details() == f"enrollment token {token_id} is already revoked"
    assert unknown.code() == grpc.StatusCode.NOT_FOUND
    assert snapshot(database) == before
