"""`fedota admin`: operate the fleet through a coordinator's Admin API.

Connection flags (or their environment variables) go before or after the command:
`fedota admin --coordinator H:P devices list` and `fedota admin devices list --coordinator H:P`
are the same. Tables by default; `--json` prints exactly one JSON document.
"""

from __future__ import annotations

import argparse

from fedota.cli import _admin_campaigns, _admin_registry, _admin_rollouts
from fedota.cli import _admin_views as views
from fedota.cli._admin_base import (
    Command,
    command,
    connection_options,
    group,
    now,
    positive_int,
)
from fedota.cli._admin_client import AdminClient
from fedota.cli.durations import parse_duration
from fedota.cli.errors import EXIT_FAILURE, CliError
from fedota.cli.output import print_fields, print_json, print_line, print_table
from fedota.protos.v1 import admin_pb2, device_pb2

# Devices asked for per ListDevices call; `devices list` follows page tokens to the end.
PAGE_SIZE = 500


def register(parser: argparse.ArgumentParser) -> None:
    """Add the `admin` command tree to `parser` (the `fedota admin` parser)."""
    connection_options(parser, suppress=False)
    groups = parser.add_subparsers(dest="admin_group", metavar="COMMAND", required=True)

    cohorts = group(
        groups, "cohorts", "group devices into cohorts (rollouts and training target them)"
    )
    create = command(cohorts, "create", "create a cohort", _cohorts_create)
    create.add_argument("name", metavar="NAME", help="lower-case letters, digits and '-'")
    create.add_argument("--description", default="", help="free text shown in listings")
    command(cohorts, "list", "list cohorts and their device counts", _cohorts_list)

    tokens = group(groups, "tokens", "mint, list and revoke enrollment tokens")
    create = command(tokens, "create", "mint an enrollment token (shown once)", _tokens_create)
    create.add_argument("--cohort", default="", help="cohort the devices join (default: default)")
    create.add_argument(
        "--expires",
        type=parse_duration,
        default=parse_duration("24h"),
        metavar="DURATION",
        help="lifetime, e.g. 90m, 24h, 7d (default: 24h)",
    )
    create.add_argument(
        "--uses",
        type=positive_int,
        default=1,
        metavar="N",
        help="enrollments allowed (default: 1)",
    )
    create.add_argument(
        "--auto-accept", action="store_true", help="accept enrolling devices without an operator"
    )
    create.add_argument(
        "--label",
        dest="labels",
        action="append",
        type=_label,
        default=[],
        metavar="KEY=VALUE",
        help="label every device enrolled with this token (repeatable)",
    )
    listing = command(
        tokens, "list", "list enrollment tokens (active ones by default)", _tokens_list
    )
    listing.add_argument("--all", action="store_true", help="include expired, used-up and revoked")
    revoke = command(tokens, "revoke", "revoke an enrollment token", _tokens_revoke)
    revoke.add_argument("id", metavar="ID", help="token id (from `tokens list`)")

    devices = group(groups, "devices", "list, inspect, admit and cut off devices")
    listing = command(devices, "list", "list devices (every page)", _devices_list)
    listing.add_argument("--state", choices=views.DEVICE_STATES, help="only devices in this state")
    listing.add_argument("--cohort", default="", help="only devices in this cohort")
    show = command(devices, "show", "show one device, its certificate and hardware", _devices_show)
    show.add_argument("id", metavar="ID", help="device id")
    for verb, method, help_text in (
        ("accept", "AcceptDevice", "admit a pending device"),
        ("reject", "RejectDevice", "refuse a pending device"),
        ("revoke", "RevokeDevice", "cut off an accepted device (refused on every call after)"),
    ):
        change = command(devices, verb, help_text, _state_change(method))
        change.add_argument("id", metavar="ID", help="device id")
        change.add_argument("--reason", default="", help="recorded in the audit log")

    _admin_registry.register(groups)
    _admin_rollouts.register(groups)
    _admin_campaigns.register(groups)


def _cohorts_create(args: argparse.Namespace, client: AdminClient) -> None:
    request = admin_pb2.CreateCohortRequest(name=args.name, description=args.description)
    cohort = client.call("CreateCohort", request, admin_pb2.Cohort)
    if args.json:
        print_json(views.cohort_json(cohort))
    else:
        print_line(f"created cohort {cohort.name}")


def _cohorts_list(args: argparse.Namespace, client: AdminClient) -> None:
    response = client.call(
        "ListCohorts", admin_pb2.ListCohortsRequest(), admin_pb2.ListCohortsResponse
    )
    if args.json:
        print_json([views.cohort_json(c) for c in response.cohorts])
        return
    moment = now()
    rows = [views.cohort_row(c, moment) for c in response.cohorts]
    print_table(views.COHORT_COLUMNS, rows, empty="no cohorts")


def _tokens_create(args: argparse.Namespace, client: AdminClient) -> None:
    request = admin_pb2.CreateEnrollmentTokenRequest(
        cohort=args.cohort,
        ttl_seconds=int(args.expires.total_seconds()),
        max_uses=args.uses,
        auto_accept=args.auto_accept,
        labels=_labels(args.labels),
    )
    created = client.call("CreateEnrollmentToken", request, admin_pb2.CreateEnrollmentTokenResponse)
    if args.json:
        print_json({"token": created.token, **views.token_json(created.info)})
        return
    info = created.info
    print_line("Enrollment token (shown once; the coordinator keeps only its hash):")
    print_line("")
    print_line(f"  {created.token}")
    print_line("")
    print_line(
        f"id {info.id}, cohort {info.cohort or 'default'}, {info.max_uses} use(s), "
        f"expires {views.when(views.timestamp(info, 'expires_at'), now())}"
        + (", devices are accepted automatically" if info.auto_accept else "")
    )
    print_line(
        f"Enroll a device: fedota device run --coordinator {client.settings.endpoint} "
        "--token <token> --state DIR"
    )


def _tokens_list(args: argparse.Namespace, client: AdminClient) -> None:
    request = admin_pb2.ListEnrollmentTokensRequest(include_inactive=args.all)
    response = client.call("ListEnrollmentTokens", request, admin_pb2.ListEnrollmentTokensResponse)
    if args.json:
        print_json([views.token_json(t) for t in response.tokens])
        return
    moment = now()
    rows = [views.token_row(t, moment) for t in response.tokens]
    print_table(views.TOKEN_COLUMNS, rows, empty="no enrollment tokens")


def _tokens_revoke(args: argparse.Namespace, client: AdminClient) -> None:
    request = admin_pb2.RevokeEnrollmentTokenRequest(id=args.id)
    token = client.call("RevokeEnrollmentToken", request, admin_pb2.EnrollmentToken)
    if args.json:
        print_json(views.token_json(token))
    else:
        print_line(f"revoked enrollment token {token.id}")


def _devices_list(args: argparse.Namespace, client: AdminClient) -> None:
    state = views.state_value(args.state) if args.state else device_pb2.DEVICE_STATE_UNSPECIFIED
    devices = _all_devices(client, state, args.cohort)
    if args.json:
        print_json([views.device_json(d) for d in devices])
        return
    moment = now()
    print_table(
        views.DEVICE_COLUMNS, [views.device_row(d, moment) for d in devices], empty="no devices"
    )


def _all_devices(client: AdminClient, state: int, cohort: str) -> list[device_pb2.Device]:
    devices: list[device_pb2.Device] = []
    seen: set[str] = set()
    page_token = ""
    while True:
        request = admin_pb2.ListDevicesRequest(
            state=state, cohort=cohort, page_size=PAGE_SIZE, page_token=page_token
        )
        page = client.call("ListDevices", request, admin_pb2.ListDevicesResponse)
        devices.extend(page.devices)
        page_token = page.next_page_token
        if not page_token:
            return devices
        if page_token in seen:
            raise CliError("the coordinator repeated a page token; listing stopped", EXIT_FAILURE)
        seen.add(page_token)


def _devices_show(args: argparse.Namespace, client: AdminClient) -> None:
    device = client.call("GetDevice", admin_pb2.DeviceRef(id=args.id), device_pb2.Device)
    if args.json:
        print_json(views.device_json(device, hardware=True))
    else:
        print_fields(views.device_fields(device, now()))


def _state_change(method: str) -> Command:
    def change(args: argparse.Namespace, client: AdminClient) -> None:
        request = admin_pb2.DeviceStateChange(id=args.id, reason=args.reason)
        device = client.call(method, request, device_pb2.Device)
        if args.json:
            print_json(views.device_json(device))
        else:
            print_line(f"device {device.id} is now {views.state_name(device.state)}")

    return change


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def _labels(pairs: list[tuple[str, str]]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for key, value in pairs:
        if key in labels and labels[key] != value:
            raise CliError(f"label {key!r} given twice with different values")
        labels[key] = value
    return labels
