"""Campaigns with secure aggregation: Flower's SecAgg+ (its workflow stages on the server, its
`secaggplus_mod` in the devices' ClientApp) between the round and the devices.

In one process: the real round logic and storage, Flower's real SecAgg+ code on both sides,
and a grid that hands each message to the real ClientApp `train` handler of the device's state
directory (a node keeps its Flower context across messages, as a SuperNode does). On Flower's
deployment engine: a SuperLink, three SuperNodes and the CampaignRunner. And the refusals at
`campaigns start`.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from campaign_world import DIGITS_SETTINGS, World, prepare_device
from flower_support import tasks_of
from flower_world import DeviceSetup, FlowerWorld, flower_world
from flwr.app import Context, Message, RecordDict
from flwr.common import parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.compat.common import recorddict_compat as compat
from flwr.supercore.task_identity import TaskIdentity
from memory_fleet import MemoryFleet
from sqlalchemy import select

from fedota.client.federation.client_app import local_secure_train, train
from fedota.ml.lora import make_trainable, trainable_state
from fedota.protos.v1 import campaigns_pb2
from fedota.server import audit
from fedota.server.aggregation import DpParams
from fedota.server.campaigns import (
    CampaignSpec,
    RunnerSettings,
    attach_run,
    create_campaign,
    get_campaign,
    resume_point,
)
from fedota.server.campaigns.messages import campaign_message
from fedota.server.campaigns.operator import start_campaign
from fedota.server.campaigns.run import CampaignFailure, CampaignRun
from fedota.server.campaigns.secure import SecureParams, SecureResult
from fedota.server.campaigns.weights import get_arrays, load_base_model
from fedota.server.errors import FailedPrecondition
from fedota.server.federation.secure_round import run_secure_round
from fedota.storage.models import (
    DeviceState,
    ModelArtifact,
    TrainingCampaign,
    TrainingRound,
    Variant,
)

SETTINGS = DIGITS_SETTINGS


@pytest.fixture(autouse=True)
def _serverapp_identity() -> Iterator[None]:
    """Flower stamps new messages with the process's run and node, as in a ServerApp."""
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 7, 0, 1
    yield
    TaskIdentity.run_id = TaskIdentity.node_id = TaskIdentity.task_id = None  # type: ignore[assignment]


class MemoryGrid:
    """What SecAgg+ uses of Flower's grid, in memory: each pushed message is answered at once
    by the device's ClientApp `train` handler with that node's persistent context."""

    def __init__(
        self, devices: Mapping[int, Path], on_push: Callable[[str], None] | None = None
    ) -> None:
        self._on_push = on_push
        self._contexts = {
            node: Context(7, node, {"state-dir": str(path)}, RecordDict(), {})
            for node, path in devices.items()
        }
        self._replies: dict[str, Message] = {}
        self.sent: list[Message] = []
        self.replies: list[Message] = []

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        batch = list(messages)
        if self._on_push is not None and batch:
            configs = batch[0].content.config_records[RECORD_KEY_CONFIGS]
            self._on_push(str(configs.get(Key.STAGE, "")))
        for message in batch:
            message.metadata.__dict__["_message_id"] = ident = uuid.uuid4().hex
            self.sent.append(message)
            context = self._contexts[message.metadata.dst_node_id]
            # A copy, as a real grid delivers: SecAgg+'s mod changes the content it is given.
            reply = train(copy.deepcopy(message), context)
            reply.metadata.__dict__["_src_node_id"] = message.metadata.dst_node_id
            self._replies[ident] = reply
            self.replies.append(reply)
            ids.append(ident)
        return ids

    def pull_messages(self, ids: Iterable[str]) -> list[Message]:
        return [self._replies.pop(i) for i in list(ids) if i in self._replies]


@dataclass
class SecureMemoryFleet(MemoryFleet):
    """MemoryFleet with SecAgg+ rounds over a MemoryGrid (one per round)."""

    grids: list[MemoryGrid] = field(default_factory=list)
    results: list[SecureResult] = field(default_factory=list)
    on_push: Callable[[str], None] | None = None

    def secure_exchange(
        self,
        contents: Mapping[int, RecordDict],
        params: SecureParams,
        timeout: float,
        still_eligible: Callable[[], set[int]],
    ) -> SecureResult:
        names = {self.node_id(d): d for d in self.devices}
        grid = MemoryGrid({node: self.devices[names[node]] for node in contents}, self.on_push)
        self.grids.append(grid)
        result = run_secure_round(
            grid,  # type: ignore[arg-type]
            7,
            contents,
            params,
            timeout,
            still_eligible,
            poll=0.0,
        )
        self.results.append(result)
        return result


def _devices(world: World, tmp_path: Path, names: list[str]) -> dict[str, Path]:
    devices = {}
    for index, name in enumerate(names):
        world.add_device(name, "a")
        devices[name] = tmp_path / "devices" / name
        prepare_device(devices[name], index)
    return devices


def _run(world: World, fleet: MemoryFleet, spec: CampaignSpec) -> str:
    campaign_id = create_campaign(
        world.database,
        name="secure",
        base_version_id=world.base_version_id,
        spec=spec,
        actor=audit.Actor.system(),
    )
    attach_run(world.database, campaign_id, 7)
    CampaignRun(world.database, world.blobs, fleet, campaign_id, 7, world.work_dir).run()
    return campaign_id


def _collect_stage(grid: MemoryGrid) -> list[Message]:
    stage = Stage.COLLECT_MASKED_VECTORS
    return [
        m for m in grid.sent if m.content.config_records[RECORD_KEY_CONFIGS].get(Key.STAGE) == stage
    ]


def _plain_mean(devices: Mapping[int, Path], messages: list[Message]) -> dict[str, np.ndarray]:
    """What a server seeing every update would compute: each device's update recomputed from
    the content it was sent (training is seeded), weighted by what it claims."""
    total, weight = None, 0.0
    for message in messages:
        content = RecordDict({k: v for k, v in message.content.items() if k != RECORD_KEY_CONFIGS})
        fitres = compat.recorddict_to_fitres(
            local_secure_train(devices[message.metadata.dst_node_id], content), True
        )
        update = [a.astype(np.float64) for a in parameters_to_ndarrays(fitres.parameters)]
        scaled = [fitres.num_examples * a for a in update]
        total = scaled if total is None else [t + s for t, s in zip(total, scaled, strict=True)]
        weight += fitres.num_examples
    assert total is not None
    names = str(messages[0].content.config_records["fitins.config"]["tensor-names"]).split(",")
    return {name: t / weight for name, t in zip(names, total, strict=True)}


def _secure_spec(clients: int, min_clients: int, **changes: Any) -> CampaignSpec:
    """One secure round, no evaluation, SETTINGS unless `changes` say otherwise."""
    fields: dict[str, Any] = {
        "rounds": 1,
        "clients_per_round": clients,
        "min_clients": min_clients,
        "evaluate": "none",
        "settings": SETTINGS,
        "secure_aggregation": True,
    }
    return CampaignSpec(**(fields | changes))


@pytest.mark.timeout(180)
def test_the_server_learns_only_the_weighted_mean_and_steps_the_model_with_it(
    world: World, tmp_path: Path
) -> None:
    devices = _devices(world, tmp_path, ["d0", "d1", "d2"])
    fleet = SecureMemoryFleet(devices)
    spec = _secure_spec(3, 2)
    campaign_id = _run(world, fleet, spec)

    view = get_campaign(world.database, campaign_id)
    assert view.state == "completed", view.error
    (row,) = view.rounds
    assert (row.selected, row.accepted, row.dropped) == (3, 3, ())
    assert row.metrics["secure_aggregation"] is True and row.metrics["train_loss"] > 0
    assert campaign_message(view).settings.secure_aggregation  # what `campaigns show` gets
    (grid,) = fleet.grids
    (result,) = fleet.results
    assert result.mean is not None and not result.failure
    # No reply carried a device's update: array records are emptied by the mod, and what
    # came back at the masked stage are integers modulo 2**32.
    for reply in grid.replies:
        assert all(len(record) == 0 for record in reply.content.array_records.values())
    by_node = {fleet.node_id(d): p for d, p in devices.items()}
    collected = _collect_stage(grid)
    assert len(collected) == 3
    expected = _plain_mean(by_node, collected)
    assert set(result.mean) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(result.mean[name], value, atol=1e-5)
    assert max(np.abs(v).max() for v in expected.values()) > 1e-3  # the updates are not zero
    # The stored round is the start plus that mean (FedAvg, server learning rate 1).
    key = resume_point(world.database, campaign_id).trainable_key
    assert key is not None
    arrays = get_arrays(world.blobs, key)
    names = list(expected)
    sent = parameters_to_ndarrays(
        compat.recorddict_to_fitins(collected[0].content, True).parameters
    )
    for name, before in zip(names, sent, strict=True):
        np.testing.assert_allclose(arrays[name], before + expected[name], atol=1e-5)
    assert row.uplink_bytes > 3 * 8 * sum(a.size for a in sent)  # int64 masked vectors


@pytest.mark.timeout(180)
def test_a_device_dropping_mid_protocol_above_the_threshold_leaves_the_round_complete(
    world: World, tmp_path: Path
) -> None:
    devices = _devices(world, tmp_path, ["d0", "d1", "empty"])
    (devices["empty"] / "examples.db").unlink()  # it drops when asked for its masked update
    fleet = SecureMemoryFleet(devices)
    spec = _secure_spec(3, 2)
    campaign_id = _run(world, fleet, spec)

    view = get_campaign(world.database, campaign_id)
    assert view.state == "completed", view.error
    (row,) = view.rounds
    assert (row.selected, row.accepted) == (3, 2)
    (dropped,) = row.dropped
    assert dropped[0] == "empty"
    assert "dropped out of secure aggregation at 'collect masked vectors'" in dropped[1]
    assert "example store" in dropped[1]
    (result,) = fleet.results
    by_node = {fleet.node_id(d): p for d, p in devices.items()}
    collected = [
        m
        for m in _collect_stage(fleet.grids[0])
        if m.metadata.dst_node_id != fleet.node_id("empty")
    ]
    expected = _plain_mean(by_node, collected)
    assert result.mean is not None
    for name, value in expected.items():  # the dropped device's masks were rebuilt away
        np.testing.assert_allclose(result.mean[name], value, atol=1e-5)


@pytest.mark.timeout(180)
def test_a_device_revoked_before_masking_is_left_out_of_the_sum(
    world: World, tmp_path: Path
) -> None:
    devices = _devices(world, tmp_path, ["d0", "d1", "d2"])

    def revoke(stage: str) -> None:
        if stage == Stage.SHARE_KEYS:  # it has shared its keys, not yet its masked update
            world.set_state("d2", DeviceState.REVOKED)

    fleet = SecureMemoryFleet(devices, on_push=revoke)
    spec = _secure_spec(3, 2)
    campaign_id = _run(world, fleet, spec)

    (row,) = get_campaign(world.database, campaign_id).rounds
    assert row.accepted == 2
    assert row.dropped == (
        ("d2", "the device was revoked during the round; it was left out before masking"),
    )
    collected = _collect_stage(fleet.grids[0])
    assert fleet.node_id("d2") not in {m.metadata.dst_node_id for m in collected}
    expected = _plain_mean({fleet.node_id(d): p for d, p in devices.items()}, collected)
    mean = fleet.results[0].mean
    assert mean is not None
    for name, value in expected.items():
        np.testing.assert_allclose(mean[name], value, atol=1e-5)


@pytest.mark.timeout(180)
def test_too_many_dropouts_fail_the_round_with_the_reason(world: World, tmp_path: Path) -> None:
    devices = _devices(world, tmp_path, ["d0", "e1", "e2"])
    for name in ("e1", "e2"):
        (devices[name] / "examples.db").unlink()
    fleet = SecureMemoryFleet(devices)
    spec = _secure_spec(3, 2)
    with pytest.raises(CampaignFailure) as failure:
        _run(world, fleet, spec)

    reason = str(failure.value)
    assert "round 1: secure aggregation stopped at 'collect masked vectors'" in reason
    assert "1 of 3 devices still take part, SecAgg+ needs 2" in reason
    assert "e1: dropped out of secure aggregation" in reason
    with world.database.session() as session:
        assert session.query(TrainingRound).count() == 0  # nothing stored for the round


@pytest.mark.timeout(180)
def test_client_side_dp_works_with_secure_aggregation(world: World, tmp_path: Path) -> None:
    devices = _devices(world, tmp_path, ["d0", "d1"])
    fleet = SecureMemoryFleet(devices)
    dp = dataclasses.replace(SETTINGS, dp=DpParams(clip=1.0, noise_multiplier=0.1))
    spec = _secure_spec(2, 2, settings=dp)
    campaign_id = _run(world, fleet, spec)

    view = get_campaign(world.database, campaign_id)
    assert view.state == "completed", view.error
    assert view.rounds[0].accepted == 2 and view.rounds[0].metrics["dp_epsilon"] > 0
    (result,) = fleet.results
    assert all(n.weight == 1.0 for n in result.nodes.values())  # DP: every device alike


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"strategy": "krum"}, "strategy krum needs every device's update"),
        ({"strategy": "trimmed-mean"}, "strategy trimmed-mean needs every device's update"),
        ({"uplink": "topk:0.01"}, "uplink topk:0.01 is refused (masked vectors are dense)"),
        ({"min_clients": 1}, "min_clients must be at least 2 (got 1)"),
    ],
)
def test_settings_secure_aggregation_cannot_serve_are_refused_at_start(
    world: World, settings: dict[str, object], message: str
) -> None:
    values: dict[str, object] = {"rounds": 1, "clients_per_round": 3, "min_clients": 2}
    request = campaigns_pb2.StartCampaignRequest(
        model="digits@v1",
        settings=campaigns_pb2.CampaignSettings(
            **(values | settings),
            secure_aggregation=True,  # type: ignore[arg-type]
        ),
    )
    with pytest.raises(FailedPrecondition) as refused:
        start_campaign(world.database, None, audit.Actor.system(), request)
    assert str(refused.value).startswith("secure_aggregation: ")
    assert message in str(refused.value)
    with world.database.session() as session:
        assert session.query(TrainingCampaign).count() == 0


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlowerWorld]:
    """Four devices in cohort `a`: three honest ones and `e0`, whose example store is gone (it
    drops at the masked stage)."""
    devices = [DeviceSetup(name, "a") for name in ("d0", "d1", "d2")]
    devices.append(DeviceSetup("e0", "a", alter=lambda state: (state / "examples.db").unlink()))
    with flower_world(tmp_path_factory, ["a"], devices) as world:
        yield world


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_a_secure_campaign_on_flower_survives_a_dropout_and_moves_the_model(
    federation: FlowerWorld, tmp_path: Path
) -> None:
    world = federation.world
    spec = _secure_spec(4, 3, cohort_id=world.cohorts["a"])
    campaign_id = create_campaign(
        world.database,
        name="secure",
        base_version_id=world.base_version_id,
        spec=spec,
        actor=audit.Actor.system(),
    )
    runner = federation.runner(
        RunnerSettings(poll_interval=1.0, lease_timeout=8.0, start_timeout=90.0, max_resumes=0)
    )
    run_id = runner.start_campaign(campaign_id)
    deadline = time.monotonic() + 200
    view = get_campaign(world.database, campaign_id)
    while view.state in ("pending", "running"):
        assert time.monotonic() < deadline, f"campaign {campaign_id} did not finish"
        runner.poll_once()
        time.sleep(1.0)
        view = get_campaign(world.database, campaign_id)

    assert view.state == "completed", view.error
    (row,) = view.rounds
    assert (row.selected, row.accepted) == (4, 3)
    (dropped,) = row.dropped
    assert dropped[0] == "e0" and "at 'collect masked vectors'" in dropped[1]
    assert row.metrics["secure_aggregation"] is True
    # Every device was asked through SecAgg+'s stages (one train message each), e0 dropped
    # at the third, and the uplink is what masked int64 vectors cost, not an int8 update.
    tasks = {
        name: tasks_of(node).count(f"run={run_id} train\n")
        for name, node in federation.nodes.items()
    }
    assert tasks == {"d0": 4, "d1": 4, "d2": 4, "e0": 3}
    trainable = load_base_model(world.blobs, _fp32_blob(world, world.base_version_id), tmp_path)
    make_trainable(trainable.module, SETTINGS.trainable)
    numel = sum(t.numel() for t in trainable_state(trainable.module).values())
    assert row.uplink_bytes > 3 * 8 * numel
    base = load_base_model(world.blobs, _fp32_blob(world, world.base_version_id), tmp_path)
    after = load_base_model(world.blobs, _fp32_blob(world, row.version_id), tmp_path)
    before_state, after_state = base.module.state_dict(), after.module.state_dict()
    assert before_state.keys() == after_state.keys()
    assert max(float((after_state[k] - before_state[k]).abs().max()) for k in before_state) > 1e-4


def _fp32_blob(world: World, version_id: str) -> str:
    with world.database.session() as session:
        return session.scalars(
            select(ModelArtifact.blob_sha256).where(
                ModelArtifact.version_id == version_id, ModelArtifact.variant == Variant.FP32
            )
        ).one()
