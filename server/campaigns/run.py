"""One Flower run of a campaign, from its resume point to its end, over a narrow fleet seam.

    CampaignRun(database, blobs, fleet, campaign_id, run_id, work_dir).run()

Each round: pick the online devices that are accepted in the campaign's cohort (at least
`min_clients`, at most `clients_per_round`, sampled with a seed of campaign and round), send
them the round plan and the current trainable arrays, offer every reply to the aggregation
`Round` (each rejection recorded with its reason; a device that answers with an error, not at
all, or was revoked meanwhile is recorded as dropped), step the model, have the devices
evaluate the new aggregate on their own data, and store the round with its version in one
transaction. The round completes when at least `min_clients` updates were accepted; otherwise
the campaign fails with the reason. With secure aggregation the training step is Flower's
SecAgg+ instead (`FleetLink.secure_exchange`, see `fedota.server.campaigns.secure`): the server
sees no single update, validates the unmasked mean and steps the model with it. The grid is
reached only through `FleetLink` (the ServerApp adapts Flower's grid to it), so this module
holds no Flower transport code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from flwr.app import ConfigRecord, RecordDict

from fedota.ml.lora import load_trainable_state, make_trainable, trainable_state
from fedota.server.aggregation import (
    ModelSpec,
    NotEnoughUpdates,
    Round,
    TrainingSettings,
    campaign_epsilon,
)
from fedota.server.aggregation.records import ARRAYS_KEY, METRICS_KEY, arrays_to_record
from fedota.server.aggregation.records import offer_reply as offer_to_round
from fedota.server.campaigns import secure, store, weights
from fedota.server.campaigns.spec import CampaignSpec
from fedota.storage.blobs import BlobStore
from fedota.storage.db import Database
from fedota.storage.models import ParticipationStatus
from fedota.storage.types import utcnow

log = logging.getLogger(__name__)

CONFIG_KEY = "config"
# Added to the round plan's record: devices key their uplink residual by campaign.
CAMPAIGN_ID_KEY = "campaign-id"
ROUND_KEY = "server-round"
# The model the campaign trains: devices running another one refuse the round.
FAMILY_KEY = "model-family"
VERSION_KEY = "model-version"
TRAIN, EVALUATE = "train", "evaluate"
# Device metrics kept per participation (and averaged per round, weighted by examples).
TRAIN_METRICS = ("train-loss", "train-accuracy", "peak-memory-bytes", "update-norm", "steps")
EVAL_METRICS = ("eval-loss", "eval-accuracy")


@dataclass(frozen=True)
class Reply:
    """A device's answer: its content, or the error it reported."""

    content: RecordDict | None = None
    error: str = ""


class FleetLink(Protocol):
    """What a campaign run needs of Flower's grid."""

    def online_nodes(self) -> dict[str, int]:
        """Node name (device id) -> node id of every node that is online and registered."""
        ...

    def exchange(
        self, kind: str, contents: Mapping[int, RecordDict], timeout: float
    ) -> dict[int, Reply]:
        """Send each node its content as a `kind` message; the replies that came in time."""
        ...

    def secure_exchange(
        self,
        contents: Mapping[int, RecordDict],
        params: secure.SecureParams,
        timeout: float,
        still_eligible: Callable[[], set[int]],
    ) -> secure.SecureResult:
        """Run SecAgg+ with the nodes, each given its train content (`timeout` per stage);
        `still_eligible` says which nodes may still send their masked update."""
        ...

    def wait(self, seconds: float) -> None:
        """Sleep between two looks at the nodes (a fake fleet skips it)."""
        ...


@dataclass(frozen=True)
class _Stepped:
    """A round's training step: the next arrays and strategy state, and uplink bytes used."""

    arrays: dict[str, np.ndarray]
    state: dict[str, Any] | None
    uplink_bytes: int


class CampaignFailure(Exception):
    """The campaign cannot go on; the message is the reason stored with it."""


class CampaignRun:
    """Runs the rounds its campaign has left, reporting each to storage."""

    def __init__(
        self,
        database: Database,
        blobs: BlobStore,
        fleet: FleetLink,
        campaign_id: str,
        run_id: int,
        work_dir: Path,
        *,
        resume: bool = True,
    ) -> None:
        self._database = database
        self._blobs = blobs
        self._fleet = fleet
        self._campaign_id = campaign_id
        self._run_id = run_id
        self._work_dir = work_dir
        self._resume = resume
        self._model_keys: dict[str, str | int] = {}

    def run(self) -> str:
        """Run to the end; the campaign's final version id.

        Raises:
            CampaignFailure: the campaign cannot continue (it is not marked failed here: the
                caller does that, so it also covers errors raised from elsewhere).
            StaleRun, CampaignStateError: the campaign moved to another run or state.
        """
        plan = store.claim(self._database, self._campaign_id, self._run_id)
        spec = plan.spec
        if plan.resume.completed and not self._resume:
            raise CampaignFailure(
                f"the campaign has {plan.resume.completed} completed rounds and this run was "
                "not started as a resume"
            )
        try:
            base = weights.load_base_model(self._blobs, plan.base_blob_key, self._work_dir)
        except Exception as exc:  # any unreadable base ends the campaign with the reason
            raise CampaignFailure(f"cannot load the base version's weights: {exc}") from exc
        settings = spec.settings
        model = base.module
        make_trainable(model, settings.trainable)
        state: dict[str, Any] | None = None
        if plan.resume.trainable_key is not None:
            load_trainable_state(model, weights.get_arrays(self._blobs, plan.resume.trainable_key))
            state = weights.get_strategy_state(self._blobs, plan.resume.strategy_state_key)
            log.info("campaign %s resumes after round %d", plan.campaign_id, plan.resume.completed)
        arrays = {name: t.numpy() for name, t in trainable_state(model).items()}
        self._model_keys = {FAMILY_KEY: plan.family_name, VERSION_KEY: plan.base_number}
        for number in range(plan.resume.completed + 1, spec.rounds + 1):
            arrays, state = self._round(spec, number, arrays, state, model, base)
        return store.finish_campaign(self._database, self._campaign_id, self._run_id)

    def _round(
        self,
        spec: CampaignSpec,
        number: int,
        arrays: dict[str, np.ndarray],
        state: dict[str, Any] | None,
        model: Any,
        base: weights.BaseModel,
    ) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
        started = utcnow()
        settings = spec.settings
        eligible = store.eligible_devices(self._database, spec.cohort_id)
        nodes = self._wait_for_nodes(spec, number, eligible)
        selected = _sample(nodes, spec.clients_per_round, f"{self._campaign_id}/{number}")
        log.info("round %d: training on %s", number, ", ".join(sorted(selected)))
        content = self._train_content(settings, spec.seed, number, arrays)
        train = self._train_secure if spec.secure_aggregation else self._train_plain
        parts, outcome = train(spec, number, selected, content, arrays, state)
        load_trainable_state(model, outcome.arrays)
        if spec.evaluates(number):
            answered = [d for d, p in parts.items() if p.status is not ParticipationStatus.FAILED]
            parts = self._evaluate(spec, number, outcome.arrays, answered, selected, parts)
        checkpoint = weights.store_merged(self._blobs, model, base, self._work_dir)
        metrics = _round_metrics(parts.values(), outcome.uplink_bytes)
        if spec.secure_aggregation:
            metrics["secure_aggregation"] = True
        if settings.dp is not None:
            spent = campaign_epsilon(
                settings.dp,
                rounds=number,
                clients_per_round=spec.clients_per_round,
                eligible_devices=max(len(eligible), spec.clients_per_round),
            )
            metrics |= {"dp_epsilon": spent.epsilon, "dp_delta": spent.delta}
        record = store.RoundRecord(
            number=number,
            started_at=started,
            participations=list(parts.values()),
            metrics=metrics,
            trainable_key=weights.put_arrays(self._blobs, outcome.arrays),
            strategy_state_key=weights.put_strategy_state(self._blobs, outcome.state),
            checkpoint=checkpoint,
            version_metrics={
                k: metrics[k] for k in ("eval_loss", "eval_accuracy", "train_loss") if k in metrics
            },
        )
        version_id = store.record_round(self._database, self._campaign_id, self._run_id, record)
        log.info("round %d stored as version %s: %s", number, version_id, _summary(parts.values()))
        return outcome.arrays, outcome.state

    def _train_plain(
        self,
        spec: CampaignSpec,
        number: int,
        selected: Mapping[str, int],
        content: RecordDict,
        arrays: dict[str, np.ndarray],
        state: dict[str, Any] | None,
    ) -> tuple[dict[str, store.Participation], _Stepped]:
        """Every device's update to the server, each judged on its own, then aggregated."""
        settings = spec.settings
        replies = self._fleet.exchange(
            TRAIN, {selected[d]: content for d in selected}, spec.round_timeout
        )
        still_accepted = store.eligible_devices(self._database, spec.cohort_id)
        round_ = Round(
            settings.build_strategy(),
            arrays,
            settings.update_limits(ModelSpec.of(arrays)),
            weight_by_examples=settings.weight_by_examples,
        )
        parts: dict[str, store.Participation] = {}
        for device_id in sorted(selected):
            reply = replies.get(selected[device_id])
            parts[device_id] = _judge(round_, device_id, reply, device_id in still_accepted, spec)
        _check_accepted(spec, number, parts)
        try:
            outcome = round_.finish(state)
        except NotEnoughUpdates as exc:
            raise CampaignFailure(f"round {number}: {exc}") from None
        return parts, _Stepped(outcome.arrays, outcome.state, outcome.uplink_bytes)

    def _train_secure(
        self,
        spec: CampaignSpec,
        number: int,
        selected: Mapping[str, int],
        content: RecordDict,
        arrays: dict[str, np.ndarray],
        state: dict[str, Any] | None,
    ) -> tuple[dict[str, store.Participation], _Stepped]:
        """SecAgg+: the devices' masked updates are summed and only their mean is unmasked;
        the mean is validated (it is all the server sees) and steps the model."""
        settings = spec.settings
        model = ModelSpec.of(arrays)
        bound = spec.secure_bound(model)
        params = secure.SecureParams.for_round(len(selected), bound, settings.weight_by_examples)
        config = ConfigRecord(
            {
                **content.config_records[CONFIG_KEY],
                secure.BOUND_KEY: bound,
                secure.WEIGHT_CAP_KEY: params.weight_cap,
                secure.NAMES_KEY: ",".join(arrays),
            }
        )
        secured = RecordDict({ARRAYS_KEY: content.array_records[ARRAYS_KEY], CONFIG_KEY: config})
        cohort = spec.cohort_id
        result = self._fleet.secure_exchange(
            {selected[d]: secured for d in selected},
            params,
            spec.round_timeout,
            lambda: _nodes_of(selected, store.eligible_devices(self._database, cohort)),
        )
        parts = {
            device_id: secure.participation(
                device_id, result.nodes.get(node), spec.round_timeout, TRAIN_METRICS
            )
            for device_id, node in sorted(selected.items())
        }
        if result.mean is None:
            raise CampaignFailure(
                f"round {number}: {result.failure or 'secure aggregation failed'} "
                f"({_summary(parts.values())})"
            )
        revoked = set(selected) - store.eligible_devices(self._database, cohort)
        included = sorted(d for d in revoked if parts[d].status is ParticipationStatus.ACCEPTED)
        if included:
            raise CampaignFailure(
                f"round {number}: {', '.join(included)} was revoked while its masked update "
                "was already in the secure sum, which cannot be taken apart"
            )
        _check_accepted(spec, number, parts)
        mean = {name: np.asarray(a, dtype=np.float32) for name, a in result.mean.items()}
        problem = secure.unusable(mean, model, params)
        if problem is not None:
            raise CampaignFailure(f"round {number}: the secure aggregate is unusable ({problem})")
        new_arrays, new_state = settings.build_strategy().step(arrays, mean, state)
        uplink = sum(p.uplink_bytes for p in parts.values())
        return parts, _Stepped(new_arrays, new_state, uplink)

    def _wait_for_nodes(
        self, spec: CampaignSpec, number: int, eligible: set[str]
    ) -> dict[str, int]:
        waited = 0.0
        step = 1.0
        while True:
            online = self._fleet.online_nodes()
            nodes = {name: node for name, node in online.items() if name in eligible}
            if len(nodes) >= spec.min_clients:
                return nodes
            if waited >= spec.node_wait:
                raise CampaignFailure(
                    f"round {number}: {len(nodes)} accepted device(s) of the cohort are online "
                    f"after {spec.node_wait:g}s, the campaign needs {spec.min_clients}"
                )
            self._fleet.wait(step)
            waited += step

    def _train_content(
        self, settings: TrainingSettings, seed: int, number: int, arrays: Mapping[str, np.ndarray]
    ) -> RecordDict:
        plan = settings.round_plan()
        # A new local shuffle each round, the same on a re-run of the round.
        finetune = dataclasses.replace(plan.finetune, seed=seed * 1000 + number)
        record = dataclasses.replace(plan, finetune=finetune).to_record()
        config = ConfigRecord({**record, **self._round_keys(number)})
        return RecordDict({ARRAYS_KEY: arrays_to_record(arrays), CONFIG_KEY: config})

    def _round_keys(self, number: int) -> dict[str, str | int]:
        return {CAMPAIGN_ID_KEY: self._campaign_id, ROUND_KEY: number, **self._model_keys}

    def _evaluate(
        self,
        spec: CampaignSpec,
        number: int,
        arrays: Mapping[str, np.ndarray],
        devices: Sequence[str],
        nodes: Mapping[str, int],
        parts: dict[str, store.Participation],
    ) -> dict[str, store.Participation]:
        plan = spec.settings.round_plan().to_record()
        config = ConfigRecord({**plan, **self._round_keys(number)})
        content = RecordDict({ARRAYS_KEY: arrays_to_record(arrays), CONFIG_KEY: config})
        replies = self._fleet.exchange(
            EVALUATE, {nodes[d]: content for d in devices}, spec.round_timeout
        )
        updated = dict(parts)
        for device_id in devices:
            reply = replies.get(nodes[device_id])
            found = _metrics_of(reply, EVAL_METRICS) if reply is not None else {}
            if not found:
                continue
            part = parts[device_id]
            metrics = {**part.metrics, **found}
            if "num-examples" in (numbers := _metrics_of(reply, ("num-examples",))):
                metrics["eval-examples"] = numbers["num-examples"]
            updated[device_id] = dataclasses.replace(part, metrics=metrics)
        return updated


def _judge(
    round_: Round, device_id: str, reply: Reply | None, accepted: bool, spec: CampaignSpec
) -> store.Participation:
    if reply is None:
        return store.Participation(
            device_id,
            ParticipationStatus.FAILED,
            reason=f"no reply within {spec.round_timeout:g}s",
        )
    if reply.content is None:
        return store.Participation(
            device_id, ParticipationStatus.FAILED, reason=f"the device answered: {reply.error}"
        )
    metrics = _metrics_of(reply, TRAIN_METRICS)
    examples = int(_metrics_of(reply, ("num-examples",)).get("num-examples", 0))
    uplink = _payload_size(reply.content)
    if not accepted:
        return store.Participation(
            device_id,
            ParticipationStatus.FAILED,
            examples,
            uplink,
            "the device was revoked during the round; its update was not used",
            metrics,
        )
    verdict = offer_to_round(round_, device_id, reply.content)
    if verdict.accepted:
        return store.Participation(
            device_id, ParticipationStatus.ACCEPTED, examples, uplink, "", metrics
        )
    assert verdict.reason is not None
    return store.Participation(
        device_id,
        ParticipationStatus.REJECTED,
        examples,
        uplink,
        f"{verdict.reason.value}: {verdict.detail}",
        metrics,
    )


def _nodes_of(selected: Mapping[str, int], devices: set[str]) -> set[int]:
    return {node for device_id, node in selected.items() if device_id in devices}


def _check_accepted(
    spec: CampaignSpec, number: int, parts: Mapping[str, store.Participation]
) -> None:
    accepted = [p for p in parts.values() if p.status is ParticipationStatus.ACCEPTED]
    if len(accepted) < spec.min_clients:
        raise CampaignFailure(
            f"round {number}: {len(accepted)} update(s) accepted, the campaign needs "
            f"{spec.min_clients} ({_summary(parts.values())})"
        )


def _metrics_of(reply: Reply | None, keys: Sequence[str]) -> dict[str, float]:
    if reply is None or reply.content is None:
        return {}
    record = reply.content.metric_records.get(METRICS_KEY)
    if record is None:
        return {}
    found: dict[str, float] = {}
    for key in keys:
        value = record.get(key)
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if numeric and math.isfinite(float(value)):  # type: ignore[arg-type]
            found[key] = float(value)  # type: ignore[arg-type]
    return found


def _payload_size(content: RecordDict) -> int:
    record = content.array_records.get(ARRAYS_KEY)
    if record is None:
        return 0
    return sum(int(np.prod(a.shape)) * _itemsize(a.dtype) for a in record.values())


def _itemsize(dtype: str) -> int:
    try:
        return int(np.dtype(dtype).itemsize)
    except TypeError:
        return 0


def _sample(nodes: Mapping[str, int], count: int, seed: str) -> dict[str, int]:
    """`count` of the nodes (all when fewer), the same choice for the same seed and nodes."""
    names = sorted(nodes)
    if len(names) <= count:
        return dict(nodes)
    rng = random.Random(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big"))
    return {name: nodes[name] for name in sorted(rng.sample(names, count))}


def _round_metrics(parts_in: Iterable[store.Participation], uplink_bytes: int) -> dict[str, Any]:
    parts = list(parts_in)
    accepted = [p for p in parts if p.status is ParticipationStatus.ACCEPTED]
    metrics: dict[str, Any] = {
        "selected": len(parts),
        "accepted": len(accepted),
        "rejected": sum(p.status is ParticipationStatus.REJECTED for p in parts),
        "dropped": sum(p.status is ParticipationStatus.FAILED for p in parts),
        "uplink_bytes": sum(p.uplink_bytes for p in parts),
        "accepted_uplink_bytes": uplink_bytes,
        "examples": sum(p.examples for p in accepted),
    }
    for key, weight_key in (
        ("train-loss", "examples"),
        ("train-accuracy", "examples"),
        ("eval-loss", "eval-examples"),
        ("eval-accuracy", "eval-examples"),
    ):
        mean = _weighted(accepted if key.startswith("train") else parts, key, weight_key)
        if mean is not None:
            metrics[key.replace("-", "_")] = mean
    peaks = [p.metrics["peak-memory-bytes"] for p in accepted if "peak-memory-bytes" in p.metrics]
    if peaks:
        metrics["peak_memory_bytes"] = max(peaks)
    return metrics


def _weighted(parts: Sequence[store.Participation], key: str, weight_key: str) -> float | None:
    total = weight = 0.0
    for part in parts:
        if key not in part.metrics:
            continue
        w = part.examples if weight_key == "examples" else part.metrics.get(weight_key, 1.0)
        total += part.metrics[key] * max(w, 1.0)
        weight += max(w, 1.0)
    return total / weight if weight else None


def _summary(parts_in: Iterable[store.Participation]) -> str:
    parts = list(parts_in)
    counts = {s: sum(p.status is s for p in parts) for s in ParticipationStatus}
    text = (
        f"{counts[ParticipationStatus.ACCEPTED]} accepted, "
        f"{counts[ParticipationStatus.REJECTED]} rejected, "
        f"{counts[ParticipationStatus.FAILED]} dropped"
    )
    reasons = [f"{p.device_id}: {p.reason}" for p in parts if p.reason]
    return text + (f"; {'; '.join(reasons[:3])}" if reasons else "")


__all__ = ["CampaignFailure", "CampaignRun", "FleetLink", "Reply"]
