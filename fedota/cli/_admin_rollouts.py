"""`fedota admin rollouts`: staged rollouts of a release to a cohort, with health gates."""

from __future__ import annotations

import argparse
import re
from typing import Any

from fedota.cli import _rollout_views as views
from fedota.cli._admin_base import Command, command, group, now
from fedota.cli._admin_client import AdminClient
from fedota.cli.output import print_fields, print_json, print_line, print_table
from fedota.protos.v1 import releases_pb2

_PERCENT = re.compile(r"\s*(?P<number>[0-9]{1,3}(?:\.[0-9]{1,4})?)\s*%?\s*")
# The policy's own limit (the coordinator checks it again); here only to fail before a call.
MAX_STAGES = 20


def register(groups: Any) -> None:
    """Add the rollouts group to `fedota admin`."""
    rollouts = group(groups, "rollouts", "roll a release out to a cohort in stages")
    create = command(
        rollouts, "create", "start rolling a release out (its first stage at once)", _create
    )
    create.add_argument("release", metavar="RELEASE", help="FAMILY@vN or a release id")
    create.add_argument("--cohort", required=True, help="the cohort whose devices update")
    create.add_argument(
        "--stages",
        required=True,
        type=stage_list,
        metavar="P%,...,100%",
        help="cumulative shares of the cohort, increasing, the last 100%% "
        "(e.g. 1%%,10%%,50%%,100%%)",
    )
    create.add_argument(
        "--success-threshold",
        type=success_percent,
        default=None,
        metavar="P%",
        help="share of a stage's devices that must report healthy before the next (default: 95%%)",
    )
    create.add_argument(
        "--max-failure",
        type=percent,
        default=None,
        metavar="P%",
        help="share of failed devices above which the rollout aborts "
        "(default: 5%%; 0%% aborts on the first failure)",
    )
    command(rollouts, "list", "list rollouts, newest first", _list)
    show = command(rollouts, "show", "show a rollout's stages, health and bytes sent", _show)
    show.add_argument("id", metavar="ID", help="rollout id (from `rollouts list`)")
    for verb, method, help_text in (
        ("pause", "PauseRollout", "stop assigning devices (those under way may finish)"),
        ("resume", "ResumeRollout", "run a paused rollout again"),
        ("abort", "AbortRollout", "stop the rollout for good (devices keep what they run)"),
        (
            "rollback",
            "RollbackRollout",
            "send the devices it updated back to the version they ran before",
        ),
    ):
        move = command(rollouts, verb, help_text, _move(method, verb))
        move.add_argument("id", metavar="ID", help="rollout id")
        move.add_argument("--reason", default="", help="recorded with the rollout and audit log")


def percent(text: str) -> float:
    """`5%` or `5` (at most 4 decimals) as a number of percent in [0, 100]."""
    match = _PERCENT.fullmatch(text)
    value = float(match["number"]) if match else -1.0
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage from 0% to 100%")
    return value


def success_percent(text: str) -> float:
    """A success threshold: as `percent`, above 0 (0 on the wire means the default)."""
    value = percent(text)
    if value == 0:
        raise argparse.ArgumentTypeError("a success threshold must be above 0%")
    return value


def stage_list(text: str) -> list[float]:
    """`1%,10%,100%` as percentages; the coordinator checks the rules (increasing, last 100%)."""
    parts = text.split(",")
    if len(parts) > MAX_STAGES:
        raise argparse.ArgumentTypeError(f"at most {MAX_STAGES} stages (got {len(parts)})")
    return [percent(part) for part in parts]


def _create(args: argparse.Namespace, client: AdminClient) -> None:
    request = releases_pb2.CreateRolloutRequest(
        release=args.release,
        cohort=args.cohort,
        stage_percents=args.stages,
        success_threshold_percent=args.success_threshold or 0.0,
        max_failure_percent=args.max_failure or 0.0,
        zero_failure_tolerance=args.max_failure == 0,
    )
    rollout = client.call("CreateRollout", request, releases_pb2.Rollout)
    if args.json:
        print_json(views.rollout_json(rollout))
        return
    print_line(
        f"rollout {rollout.id} of {rollout.version} to cohort {rollout.cohort} is "
        f"{rollout.state} ({views.stage_label(rollout)})"
    )
    print_table(views.STAGE_COLUMNS, views.stage_rows(rollout))


def _list(args: argparse.Namespace, client: AdminClient) -> None:
    response = client.call(
        "ListRollouts", releases_pb2.ListRolloutsRequest(), releases_pb2.ListRolloutsResponse
    )
    if args.json:
        print_json([views.rollout_json(r) for r in response.rollouts])
        return
    moment = now()
    rows = [views.rollout_row(r, moment) for r in response.rollouts]
    print_table(views.ROLLOUT_COLUMNS, rows, empty="no rollouts")


def _show(args: argparse.Namespace, client: AdminClient) -> None:
    rollout = client.call("GetRollout", releases_pb2.RolloutRef(id=args.id), releases_pb2.Rollout)
    if args.json:
        print_json(views.rollout_json(rollout))
        return
    print_fields(views.rollout_fields(rollout, now()))
    print_line("")
    print_table(views.STAGE_COLUMNS, views.stage_rows(rollout))


def _move(method: str, verb: str) -> Command:
    def run(args: argparse.Namespace, client: AdminClient) -> None:
        request = releases_pb2.RolloutRef(id=args.id, reason=args.reason)
        rollout = client.call(method, request, releases_pb2.Rollout)
        if args.json:
            print_json(views.rollout_json(rollout))
            return
        reason = f": {rollout.reason}" if rollout.reason else ""
        print_line(f"rollout {rollout.id} is {rollout.state}{reason}")

    return run


__all__ = ["percent", "register", "stage_list", "success_percent"]
