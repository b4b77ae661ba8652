"""Campaigns on Flower's deployment engine: a real SuperLink (TLS, SuperNode authentication),
one SuperNode per device with a daemon-like state directory, runs started and followed by the
CampaignRunner, the ServerApp and ClientApp of fedota's Flower App.

The tests of this module share the SuperLink and the devices and run in file order (the
revocation in the second leaves three devices in cohort `a` for the third).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from campaign_world import DIGITS_SETTINGS, held_out_accuracy
from flower_support import tasks_of
from flower_world import DeviceSetup, FlowerWorld, flower_world
from sqlalchemy import select

from fedota.client.federation import FederationState, SuperNode
from fedota.flower_process import Launch, process_tree
from fedota.server import audit
from fedota.server.campaigns import (
    CampaignRunner,
    CampaignSpec,
    RunnerSettings,
    create_campaign,
    get_campaign,
    resume_point,
)
from fedota.server.campaigns.views import CampaignView
from fedota.server.campaigns.weights import load_base_model
from fedota.server.federation import SuperLink
from fedota.storage.models import DeviceState, ModelArtifact, ModelVersion, Variant

pytestmark = pytest.mark.e2e

HOSTILE_PATH = Path(__file__).resolve().parent / "hostile"
HONEST = ("d0", "d1", "d2", "d3")
SETTINGS = DIGITS_SETTINGS
RUNNER = RunnerSettings(poll_interval=1.0, lease_timeout=8.0, start_timeout=90.0, max_resumes=1)


class HostileSuperNode(SuperNode):
    """A device whose software is modified: its ClientApp processes load `hostile/`."""

    def _launch(self) -> Launch:
        launch = super()._launch()
        path = os.pathsep.join(p for p in (str(HOSTILE_PATH), launch.env.get("PYTHONPATH")) if p)
        return dataclasses.replace(launch, env={**launch.env, "PYTHONPATH": path})


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlowerWorld]:
    devices = [DeviceSetup(name, "a") for name in HONEST]
    devices.append(DeviceSetup("h0", "b", HostileSuperNode))
    with flower_world(tmp_path_factory, ["a", "b"], devices) as world:
        yield world


def _create(federation: FlowerWorld, spec: CampaignSpec) -> str:
    return create_campaign(
        federation.world.database,
        name="digits-tune",
        base_version_id=federation.world.base_version_id,
        spec=spec,
        actor=audit.Actor.system(),
    )


def _wait_until_finished(
    federation: FlowerWorld, runner: CampaignRunner, campaign_id: str, timeout: float
) -> CampaignView:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runner.poll_once()
        view = get_campaign(federation.world.database, campaign_id)
        if view.state not in ("pending", "running"):
            return view
        time.sleep(1.0)
    log = federation.data_dir / "campaigns" / "logs" / f"{campaign_id}.log"
    raise AssertionError(
        f"campaign {campaign_id} did not finish in {timeout}s; its log:\n"
        + (log.read_text() if log.exists() else "(none)")
    )


def _drained_log(
    federation: FlowerWorld, runner: CampaignRunner, campaign_id: str, timeout: float = 60.0
) -> str:
    """The campaign's run log once the runner has copied its last lines (the run finished)."""
    deadline = time.monotonic() + timeout
    while campaign_id in runner.poll_once() and time.monotonic() < deadline:
        time.sleep(0.5)
    return (federation.data_dir / "campaigns" / "logs" / f"{campaign_id}.log").read_text()


def _accuracy(federation: FlowerWorld, version_id: str, work: Path) -> float:
    with federation.world.database.session() as session:
        blob = session.scalars(
            select(ModelArtifact.blob_sha256).where(
                ModelArtifact.version_id == version_id, ModelArtifact.variant == Variant.FP32
            )
        ).one()
    return held_out_accuracy(load_base_model(federation.world.blobs, blob, work).module)


def _train_tasks(node: SuperNode, run_id: int) -> int:
    return tasks_of(node).count(f"run={run_id} train\n")


@pytest.mark.timeout(240)
def test_a_three_round_campaign_of_four_devices_beats_the_base(
    federation: FlowerWorld, tmp_path: Path
) -> None:
    cohort = federation.world.cohorts["a"]
    spec = CampaignSpec(
        rounds=3,
        clients_per_round=4,
        min_clients=3,
        cohort_id=cohort,
        evaluate="final",
        settings=SETTINGS,
    )
    campaign_id = _create(federation, spec)
    runner = federation.runner(RUNNER)
    run_id = runner.start_campaign(campaign_id)
    view = _wait_until_finished(federation, runner, campaign_id, 200)

    assert view.state == "completed", view.error
    assert [(r.number, r.selected, r.accepted) for r in view.rounds] == [
        (n, 4, 4) for n in (1, 2, 3)
    ]
    assert all(r.uplink_bytes > 0 and r.metrics["train_loss"] > 0 for r in view.rounds)
    assert 0 < view.rounds[-1].metrics["eval_accuracy"] <= 1  # the devices' own evaluation
    with federation.world.database.session() as session:
        chain = {v.id: v for v in session.scalars(select(ModelVersion))}
    versions = [r.version_id for r in view.rounds]
    parents = [chain[v].parent_id for v in versions]
    assert parents == [federation.world.base_version_id, *versions[:2]]
    assert all(chain[v].campaign_id == campaign_id for v in versions)
    before = _accuracy(federation, federation.world.base_version_id, tmp_path)
    after = _accuracy(federation, versions[-1], tmp_path)
    assert after > before + 0.02, (before, after)
    for name in HONEST:
        assert _train_tasks(federation.nodes[name], run_id) == 3
    assert _train_tasks(federation.nodes["h0"], run_id) == 0  # another cohort
    assert f"campaign {campaign_id} completed" in _drained_log(federation, runner, campaign_id)


@pytest.mark.timeout(240)
def test_bad_updates_are_rejected_and_a_revoked_device_gets_no_more_work(
    federation: FlowerWorld,
) -> None:
    spec = CampaignSpec(
        rounds=2, clients_per_round=5, min_clients=2, evaluate="none", settings=SETTINGS
    )
    campaign_id = _create(federation, spec)
    runner = federation.runner(RUNNER)
    run_id = runner.start_campaign(campaign_id)
    revoked = federation.nodes["d3"]
    deadline = time.monotonic() + 120
    while _train_tasks(revoked, run_id) == 0:  # round 1 has given d3 its work
        assert time.monotonic() < deadline, "d3 was never asked to train"
        runner.poll_once()
        time.sleep(0.2)
    federation.world.set_state("d3", DeviceState.REVOKED)
    assert len(federation.reconciler.run_once().unregistered) == 1
    view = _wait_until_finished(federation, runner, campaign_id, 200)

    assert view.state == "completed", view.error
    first, second = view.rounds
    assert dict(first.rejected)["h0"].startswith("not-finite:")
    assert dict(second.rejected)["h0"].startswith("norm-too-large:")
    assert first.selected == 5 and second.selected == 4
    assert "d3" not in dict(second.dropped) and second.accepted == 3
    assert _train_tasks(revoked, run_id) == 1
    status = revoked.wait_for(FederationState.NOT_REGISTERED, timeout=60)
    assert status.state is FederationState.NOT_REGISTERED


def _serverapp_pids(superlink: SuperLink) -> list[int]:
    assert superlink.pid is not None
    pids = []
    for pid in process_tree(superlink.pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(part.endswith(b"flwr-serverapp") for part in argv[:2]):
            pids.append(pid)
    return pids


@pytest.mark.timeout(300)
def test_kill9_of_the_serverapp_keeps_completed_rounds_and_the_campaign_resumes(
    federation: FlowerWorld,
) -> None:
    spec = CampaignSpec(
        rounds=2,
        clients_per_round=2,
        min_clients=2,
        cohort_id=federation.world.cohorts["a"],
        evaluate="none",
        settings=SETTINGS,
    )
    database = federation.world.database
    campaign_id = _create(federation, spec)
    first_runner = federation.runner(RUNNER)
    first_run = first_runner.start_campaign(campaign_id)
    deadline = time.monotonic() + 120
    while resume_point(database, campaign_id).completed < 1:
        assert time.monotonic() < deadline, "round 1 was never recorded"
        time.sleep(0.3)
    # The coordinator dies (its runner with it) and the ServerApp is killed.
    pids = _serverapp_pids(federation.superlink)
    assert pids, "no ServerApp process under the SuperLink"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    kept = get_campaign(database, campaign_id).rounds
    assert kept and kept[0].number == 1

    # A new coordinator's runner finds the campaign, sees the ServerApp silent, resumes it.
    runner = federation.runner(RUNNER)
    assert runner.recover() == [campaign_id]
    view = _wait_until_finished(federation, runner, campaign_id, 240)
    assert view.state == "completed", view.error
    assert view.config["resumes"] == 1
    assert [r.number for r in view.rounds] == [1, 2]
    assert view.rounds[: len(kept)] == kept
    new_run = view.rounds[-1].metrics["flower_run_id"]
    assert new_run != first_run and view.flower_run_id == new_run
    assert view.rounds[0].metrics["flower_run_id"] == first_run
    with database.session() as session:
        chain = {v.id: v for v in session.scalars(select(ModelVersion))}
    versions = [r.version_id for r in view.rounds]
    assert [chain[v].parent_id for v in versions] == [federation.world.base_version_id, versions[0]]
    with federation.superlink.control() as control:
        assert control.run_status(first_run).finished
