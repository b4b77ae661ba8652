"""`fedota admin campaigns`: federated training campaigns on the coordinator's Flower federation."""

from __future__ import annotations

import argparse
import math
from typing import Any

from fedota.cli import _campaign_views as views
from fedota.cli._admin_base import command, group, now, positive_float, positive_int
from fedota.cli._admin_client import AdminClient
from fedota.cli.errors import CliError
from fedota.cli.output import print_fields, print_json, print_line, print_table
from fedota.protos.v1 import campaigns_pb2

# The coordinator's own list (fedota.server.aggregation.STRATEGIES); here to fail before a call.
STRATEGIES = ("fedavg", "fedprox", "fedadam", "trimmed-mean", "krum")
EVALUATE_MODES = ("every-round", "final", "none")


def register(groups: Any) -> None:
    """Add the campaigns group to `fedota admin`."""
    campaigns = group(groups, "campaigns", "train a model version on the fleet (federated)")
    start = command(campaigns, "start", "start a training campaign on a model version", _start)
    start.add_argument("--model", required=True, metavar="FAMILY@vN", help="the version to train")
    start.add_argument("--rounds", required=True, type=positive_int, metavar="N")
    start.add_argument(
        "--clients-per-round",
        required=True,
        type=positive_int,
        metavar="K",
        help="devices asked to train each round",
    )
    start.add_argument(
        "--min-clients",
        required=True,
        type=positive_int,
        metavar="M",
        help="accepted updates a round needs (at most K)",
    )
    start.add_argument("--strategy", required=True, choices=STRATEGIES)
    start.add_argument("--cohort", default="", help="only this cohort's devices (default: all)")
    start.add_argument(
        "--local-epochs", type=positive_int, default=1, metavar="E", help="default: 1"
    )
    start.add_argument(
        "--dp-clip", type=_positive, metavar="C", help="client-side DP: L2 clip of an update"
    )
    start.add_argument(
        "--dp-noise", type=_positive, metavar="SIGMA", help="client-side DP: noise multiplier"
    )
    start.add_argument(
        "--max-update-norm",
        type=_positive,
        metavar="N",
        help="reject updates whose L2 norm exceeds N; with --secure-aggregation devices clip "
        "to it (default: no bound; with DP the one its clip and noise imply; with secure "
        "aggregation alone 10)",
    )
    start.add_argument(
        "--secure-aggregation",
        action="store_true",
        help="Flower's SecAgg+: the coordinator learns only the mean of each round's updates "
        "(strategies fedavg, fedprox, fedadam; uplink none or int8; --min-clients 2 or more)",
    )
    start.add_argument(
        "--trainable",
        default="lora:4",
        metavar="lora:RANK|layers:PATTERN[,PATTERN...]",
        help="what trains on the frozen quantized model: LoRA adapters of that rank on every "
        "linear layer, or those layers' own weights (fnmatch over module names; default: lora:4)",
    )
    start.add_argument(
        "--uplink",
        default="none",
        metavar="int8|topk:F|topk:F+int8|none",
        help="update compression on the uplink: int8 values, the top fraction F of values "
        "(e.g. topk:0.05), or both (default: none)",
    )
    start.add_argument(
        "--evaluate",
        choices=EVALUATE_MODES,
        default="every-round",
        help="when devices score the new model on their held-out data (default: every-round)",
    )
    start.add_argument(
        "--round-timeout",
        type=positive_float,
        metavar="SECONDS",
        help="how long a round waits for replies (default: 300)",
    )
    start.add_argument(
        "--node-wait",
        type=positive_float,
        metavar="SECONDS",
        help="how long a round waits for M devices to be online (default: 300)",
    )
    start.add_argument("--name", default="", help="shown in listings (default: train FAMILY@vN)")
    command(campaigns, "list", "list campaigns, newest first", _list)
    show = command(
        campaigns, "show", "show a campaign and its rounds: who took part, who was refused", _show
    )
    show.add_argument("id", metavar="ID", help="campaign id (from `campaigns list`)")
    stop = command(
        campaigns, "stop", "cancel a campaign (completed rounds and versions stay)", _stop
    )
    stop.add_argument("id", metavar="ID", help="campaign id")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def start_request(args: argparse.Namespace) -> campaigns_pb2.StartCampaignRequest:
    """The request `campaigns start` sends.

    Raises:
        CliError: only one of --dp-clip and --dp-noise, or --min-clients above
            --clients-per-round (exit 2).
    """
    if (args.dp_clip is None) != (args.dp_noise is None):
        raise CliError("--dp-clip and --dp-noise go together: give both or neither")
    if args.min_clients > args.clients_per_round:
        raise CliError(
            f"--min-clients ({args.min_clients}) cannot exceed --clients-per-round "
            f"({args.clients_per_round})"
        )
    settings = campaigns_pb2.CampaignSettings(
        rounds=args.rounds,
        clients_per_round=args.clients_per_round,
        min_clients=args.min_clients,
        strategy=args.strategy,
        cohort=args.cohort,
        local_epochs=args.local_epochs,
        dp_clip=args.dp_clip or 0.0,
        dp_noise=args.dp_noise or 0.0,
        max_update_norm=args.max_update_norm or 0.0,
        secure_aggregation=args.secure_aggregation,
        uplink=args.uplink,
        trainable=args.trainable,
        evaluate=args.evaluate,
        round_timeout_seconds=args.round_timeout or 0.0,
        node_wait_seconds=args.node_wait or 0.0,
    )
    return campaigns_pb2.StartCampaignRequest(model=args.model, settings=settings, name=args.name)


def _start(args: argparse.Namespace, client: AdminClient) -> None:
    campaign = client.call("StartCampaign", start_request(args), campaigns_pb2.Campaign)
    if args.json:
        print_json(views.campaign_json(campaign))
        return
    print_line(
        f"campaign {campaign.id} trains {campaign.model} for {campaign.rounds_total} round(s): "
        f"{campaign.state}"
    )
    print_line(f"Follow it: fedota admin campaigns show {campaign.id}")


def _list(args: argparse.Namespace, client: AdminClient) -> None:
    response = client.call(
        "ListCampaigns",
        campaigns_pb2.ListCampaignsRequest(),
        campaigns_pb2.ListCampaignsResponse,
    )
    if args.json:
        print_json([views.campaign_json(c) for c in response.campaigns])
        return
    moment = now()
    rows = [views.campaign_row(c, moment) for c in response.campaigns]
    print_table(views.CAMPAIGN_COLUMNS, rows, empty="no campaigns")


def _show(args: argparse.Namespace, client: AdminClient) -> None:
    ref = campaigns_pb2.CampaignRef(id=args.id)
    campaign = client.call("GetCampaign", ref, campaigns_pb2.Campaign)
    if args.json:
        print_json(views.campaign_json(campaign))
        return
    print_fields(views.campaign_fields(campaign, now()))
    print_line("")
    print_table(views.ROUND_COLUMNS, views.round_rows(campaign), empty="no completed rounds yet")
    for line in views.refusal_lines(campaign):
        print_line(line)


def _stop(args: argparse.Namespace, client: AdminClient) -> None:
    ref = campaigns_pb2.CampaignRef(id=args.id)
    campaign = client.call("StopCampaign", ref, campaigns_pb2.Campaign)
    if args.json:
        print_json(views.campaign_json(campaign))
        return
    reason = f": {campaign.reason}" if campaign.reason else ""
    print_line(f"campaign {campaign.id} is {campaign.state}{reason} ({views.progress(campaign)})")


__all__ = ["register", "start_request"]
