"""An operator's `campaigns start`: check the request, store the campaign, start its run.

campaign_id = start_campaign(database, runner, actor, request)
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from fedota.ml.architectures import build_model
from fedota.ml.lora import LayerSelection
from fedota.protos.v1 import campaigns_pb2
from fedota.server import audit, validation
from fedota.server.campaigns.messages import request_spec
from fedota.server.campaigns.runner import CampaignRunner
from fedota.server.campaigns.store import create_campaign, fail_campaign
from fedota.server.campaigns.views import get_campaign
from fedota.server.cohorts import default_fleet, find_cohort
from fedota.server.errors import FailedPrecondition, InvalidArgument
from fedota.server.federation.errors import ControlRefused, ControlUnavailable
from fedota.server.registry.refs import find_version, format_ref, parse_ref
from fedota.storage.db import Database
from fedota.storage.models import ModelFamily

NO_FEDERATION = "this coordinator runs no federation (started with --no-federation)"
_CAMPAIGN_ID = re.compile(r"cmp_[0-9a-f]{1,32}")
_MAX_ID_CHARS = 40


class NoFederation(FailedPrecondition):
    """The coordinator runs no SuperLink, so no campaign can start or stop."""

    def __init__(self) -> None:
        super().__init__(NO_FEDERATION)


class RunNotStarted(FailedPrecondition):
    """The SuperLink did not start the campaign's Flower run; the campaign is failed."""


def checked_id(field: str, value: str) -> str:
    """Raises:
    InvalidArgument: empty, too long, or not `cmp_<hex>`.
    """
    validation.text(field, value, _MAX_ID_CHARS, required=True)
    if not _CAMPAIGN_ID.fullmatch(value):
        raise InvalidArgument(field, f"{value!r} is not a campaign id of the form cmp_<hex>")
    return value


def start_campaign(
    database: Database,
    runner: CampaignRunner | None,
    actor: audit.Actor,
    request: campaigns_pb2.StartCampaignRequest,
) -> str:
    """Create the campaign the request describes and start its Flower run; its id.

    Raises:
        InvalidArgument: a malformed model reference, name or option (named), or a layer
            pattern that matches no layer of the model.
        FailedPrecondition: secure aggregation asked for with settings it cannot serve (a
            robust strategy, a topk uplink, min_clients below 2).
        NoFederation: `runner` is None (checked after the request's own form).
        NotFound: no such model version (or no fp32 artifact for it), or no such cohort.
        RunNotStarted: the SuperLink refused or did not answer (the campaign is failed with
            the reason, so it never lingers as pending).
    """
    family, number = parse_ref("model", request.model)
    spec_without_cohort = request_spec(request.settings, None)
    if runner is None:
        raise NoFederation()
    with database.session() as session:
        version = find_version(session, "model", request.model)
        version_id = version.id
        family_row = session.get(ModelFamily, version.family_id)
        if family_row is not None and isinstance(
            spec_without_cohort.settings.trainable, LayerSelection
        ):
            _check_layers(
                spec_without_cohort.settings.trainable,
                family_row.architecture,
                dict(family_row.architecture_config),
            )
        cohort_id = None
        if request.settings.cohort:
            cohort_id = find_cohort(session, default_fleet(session), request.settings.cohort).id
    spec = spec_without_cohort if cohort_id is None else request_spec(request.settings, cohort_id)
    campaign_id = create_campaign(
        database,
        name=request.name or f"train {format_ref(family, number)}",
        base_version_id=version_id,
        spec=spec,
        actor=actor,
    )
    try:
        runner.start_campaign(campaign_id)
    except (ControlUnavailable, ControlRefused) as exc:
        reason = f"the federation's SuperLink did not start the run: {exc}"
        fail_campaign(database, campaign_id, reason)
        raise RunNotStarted(f"campaign {campaign_id} failed: {reason}") from None
    return campaign_id


def _check_layers(selection: LayerSelection, architecture: str, config: Any) -> None:
    """Raises:
    InvalidArgument: a pattern matches no layer of the model (devices would all refuse).
    """
    names = [name for name, _ in build_model(architecture, config).named_modules() if name]
    for pattern in selection.patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise InvalidArgument(
                "trainable", f"no layer of the model matches {pattern!r}; its layers: {shown}"
            )


def stop_campaign(
    database: Database, runner: CampaignRunner | None, actor: audit.Actor, campaign_id: str
) -> None:
    """Cancel a pending or running campaign and stop its run.

    Raises:
        NoFederation, CampaignNotFound, FailedPrecondition: the campaign already ended.
    """
    if runner is None:
        raise NoFederation()
    view = get_campaign(database, campaign_id)
    if view.state not in ("pending", "running") or not runner.stop_campaign(campaign_id, actor):
        state = get_campaign(database, campaign_id).state
        raise FailedPrecondition(f"campaign {campaign_id} already ended ({state})")


__all__ = [
    "NO_FEDERATION",
    "NoFederation",
    "RunNotStarted",
    "checked_id",
    "start_campaign",
    "stop_campaign",
]
