"""Bad-input cases of the campaign RPCs of the Admin service, run by test_bad_input.py.

The world there runs no federation: a request whose options are well-formed is refused with
FAILED_PRECONDITION; the options themselves are checked first, so each bad one is named.
"""

from __future__ import annotations

from typing import Any

import grpc

from fedota.protos.v1 import campaigns_pb2 as pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
TRUNCATED = b"\x0a\x05ab"
BAD_UTF8 = b"\x0a\x02\xff\xfe"
NO_FEDERATION = "this coordinator runs no federation (started with --no-federation)"


def _start(model: str = "digits@v1", **settings: Any) -> pb.StartCampaignRequest:
    base: dict[str, Any] = {"rounds": 2, "clients_per_round": 3, "min_clients": 2}
    return pb.StartCampaignRequest(model=model, settings=pb.CampaignSettings(**base | settings))


def _start_case(build: Any, code: grpc.StatusCode, message: str) -> tuple[Any, ...]:
    return ("Admin", "StartCampaign", lambda w: build(), code, message)


CAMPAIGN_CASES: list[tuple[str, str, Any, grpc.StatusCode, str]] = [
    _start_case(lambda: _start(model=""), INVALID, "model: '' is not a model version"),
    _start_case(lambda: _start(model="digits"), INVALID, "model: 'digits' is not a model"),
    _start_case(lambda: _start(rounds=0), INVALID, "rounds: must be a positive integer"),
    _start_case(
        lambda: _start(clients_per_round=0), INVALID, "clients_per_round: must be a positive"
    ),
    _start_case(
        lambda: _start(min_clients=4),
        INVALID,
        "min_clients: min_clients (4) cannot exceed clients_per_round (3)",
    ),
    _start_case(lambda: _start(strategy="fedsgd"), INVALID, "strategy: must be one of fedavg"),
    _start_case(lambda: _start(uplink="int4"), INVALID, "uplink: uplink must be none, int8"),
    _start_case(lambda: _start(uplink="topk:2"), INVALID, "uplink: the top-k fraction"),
    _start_case(lambda: _start(dp_clip=1.0), INVALID, "dp_clip: dp_clip and dp_noise must"),
    _start_case(
        lambda: _start(dp_clip=float("nan"), dp_noise=1.0), INVALID, "dp_clip: dp_clip and dp_noise"
    ),
    _start_case(
        lambda: _start(dp_clip=float("inf"), dp_noise=1.0), INVALID, "dp_clip: DP clip must be"
    ),
    _start_case(lambda: _start(evaluate="always"), INVALID, "evaluate: evaluate must be one of"),
    _start_case(
        lambda: _start(max_update_norm=-1.0), INVALID, "max_update_norm: must be a positive"
    ),
    _start_case(
        lambda: _start(max_update_norm=float("inf")), INVALID, "max_update_norm: must be a"
    ),
    _start_case(
        lambda: _start(round_timeout_seconds=float("nan")),
        INVALID,
        "round_timeout_seconds: round_timeout must be a positive number",
    ),
    _start_case(
        lambda: _start(node_wait_seconds=-1.0),
        INVALID,
        "node_wait_seconds: node_wait must be a positive number",
    ),
    _start_case(
        lambda: _start(secure_aggregation=True, strategy="krum"),
        PRECONDITION,
        "secure_aggregation: strategy krum needs every device's update",
    ),
    _start_case(lambda: _start(), PRECONDITION, NO_FEDERATION),
    ("Admin", "StartCampaign", lambda w: TRUNCATED, INVALID, "StartCampaignRequest"),
    ("Admin", "ListCampaigns", lambda w: TRUNCATED, INVALID, "ListCampaignsRequest"),
    ("Admin", "GetCampaign", lambda w: pb.CampaignRef(), INVALID, "id: is required"),
    (
        "Admin",
        "GetCampaign",
        lambda w: pb.CampaignRef(id="cmp_xyz"),
        INVALID,
        "id: 'cmp_xyz' is not a campaign id",
    ),
    ("Admin", "GetCampaign", lambda w: pb.CampaignRef(id="cmp_00ff"), NOT_FOUND, "no campaign"),
    ("Admin", "GetCampaign", lambda w: BAD_UTF8, INVALID, "CampaignRef"),
    ("Admin", "StopCampaign", lambda w: pb.CampaignRef(), INVALID, "id: is required"),
    (
        "Admin",
        "StopCampaign",
        lambda w: pb.CampaignRef(id="x" * 41),
        INVALID,
        "id: must be at most 40 characters",
    ),
    ("Admin", "StopCampaign", lambda w: pb.CampaignRef(id="cmp_00ff"), PRECONDITION, "federation"),
    ("Admin", "StopCampaign", lambda w: TRUNCATED, INVALID, "CampaignRef"),
]
