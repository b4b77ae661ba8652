"""The runner's decisions: `judge` over a table of run states (pure), and the runner's passes
against an in-memory Control API and real storage (SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from campaign_world import World

from fedota.server import audit
from fedota.server.campaigns import (
    Action,
    CampaignRunner,
    CampaignSpec,
    CampaignStateError,
    RunnerSettings,
    create_campaign,
    get_campaign,
    judge,
    store,
)
from fedota.server.campaigns.lease import Lease, LeaseState
from fedota.server.campaigns.link import CAMPAIGN_KEY, RESUME_KEY
from fedota.server.federation import FlowerApp, RunLogs, RunNotFound, RunStatus
from fedota.server.federation.errors import ControlUnavailable

SETTINGS = RunnerSettings(poll_interval=1, lease_timeout=10, start_timeout=60, max_resumes=1)
RUNNING = RunStatus(7, "running", "", "")


def _judge(status, lease, age=5.0, recovering=False, resumes=0, restarted=False):  # type: ignore[no-untyped-def]
    return judge(
        7,
        status,
        lease,
        age,
        SETTINGS,
        recovering=recovering,
        resumes=resumes,
        superlink_restarted=restarted,
    )


@pytest.mark.parametrize(
    ("status", "lease", "age", "action", "reason", "stop"),
    [
        (RUNNING, LeaseState(7, 1, 2.0), 100.0, Action.WAIT, "", False),
        (RUNNING, None, 30.0, Action.WAIT, "", False),  # the ServerApp is still starting
        (RUNNING, None, 61.0, Action.FAIL, "did not start within 60s", True),
        (RUNNING, LeaseState(6, 1, 1.0), 61.0, Action.FAIL, "did not start", True),
        (RUNNING, LeaseState(7, 1, 11.0), 20.0, Action.FAIL, "no sign of life for 11s", True),
        (None, None, 1.0, Action.FAIL, "unknown to the SuperLink", False),
        (RunStatus(7, "finished", "failed", "boom"), None, 1.0, Action.FAIL, "failed: boom", False),
        (RunStatus(7, "finished", "stopped", ""), None, 1.0, Action.FAIL, "7 stopped", False),
        (
            RunStatus(7, "finished", "completed", ""),
            None,
            1.0,
            Action.FAIL,
            "ended without finishing",
            False,
        ),
    ],
)
def test_judge(status, lease, age, action, reason, stop) -> None:  # type: ignore[no-untyped-def]
    decision = _judge(status, lease, age)
    assert (decision.action, decision.stop_run) == (action, stop)
    assert reason in decision.reason


def test_a_superlink_restart_fails_a_live_run() -> None:
    decision = _judge(RUNNING, LeaseState(7, 1, 1.0), restarted=True)
    assert decision.action is Action.FAIL and decision.stop_run
    assert "SuperLink restarted" in decision.reason


def test_a_dead_run_found_at_recovery_is_resumed_while_resumes_remain() -> None:
    dead = LeaseState(7, 1, 30.0)
    assert _judge(RUNNING, dead, recovering=True).action is Action.RESUME
    assert _judge(RUNNING, LeaseState(7, 1, 1.0), recovering=True).action is Action.WAIT
    spent = _judge(RUNNING, dead, recovering=True, resumes=1)
    assert spent.action is Action.FAIL and "resumed 1 time(s) already" in spent.reason


@dataclass
class FakeControl:
    """The Control API calls the runner makes, in memory; `down` makes every call fail."""

    runs: dict[int, RunStatus] = field(default_factory=dict)
    started: list[dict[str, Any]] = field(default_factory=list)
    stopped: list[int] = field(default_factory=list)
    down: bool = False
    late_logs: dict[int, str] = field(default_factory=dict)  # lines a run logs after its first
    ids: Any = field(default_factory=lambda: itertools.count(2**63 + 5))

    def __call__(self) -> FakeControl:
        return self

    def __enter__(self) -> FakeControl:
        if self.down:
            raise ControlUnavailable("connection refused")
        return self

    def __exit__(self, *_exc: object) -> None:
        pass

    def start_run(self, app: FlowerApp, config: dict[str, Any]) -> int:
        run_id = next(self.ids)
        self.started.append(config)
        self.runs[run_id] = RunStatus(run_id, "running", "", "")
        return run_id

    def run_status(self, run_id: int) -> RunStatus:
        if run_id not in self.runs:
            raise RunNotFound("run status", 200, 16, "no run")
        return self.runs[run_id]

    def stop_run(self, run_id: int) -> None:
        self.stopped.append(run_id)
        self.runs[run_id] = RunStatus(run_id, "finished", "stopped", "")

    def run_logs(self, run_id: int, after: float, wait: float) -> RunLogs:
        if after == 0:
            return RunLogs(f"log of {run_id}\n", after + 1, False)
        return RunLogs(self.late_logs.pop(run_id, ""), after + 1, False)


@pytest.fixture
def setup(world: World, tmp_path: Path):  # type: ignore[no-untyped-def]
    control = FakeControl()
    clock = [0.0]

    def runner() -> CampaignRunner:
        return CampaignRunner(
            world.database,
            control,  # type: ignore[arg-type]
            FlowerApp(b"fab"),
            tmp_path / "coordinator.json",
            tmp_path / "leases",
            tmp_path / "logs",
            SETTINGS,
            clock=lambda: clock[0],
        )

    campaign_id = create_campaign(
        world.database,
        name="tune",
        base_version_id=world.base_version_id,
        spec=CampaignSpec(rounds=2, clients_per_round=1, min_clients=1),
        actor=audit.Actor.system(),
    )
    return control, clock, runner, campaign_id, tmp_path


def test_a_failed_run_fails_its_campaign_with_the_reason(setup) -> None:  # type: ignore[no-untyped-def]
    control, _clock, make, campaign_id, tmp_path = setup
    runner = make()
    run_id = runner.start_campaign(campaign_id)
    assert control.started == [
        {CAMPAIGN_KEY: campaign_id, "coordinator-file": str(tmp_path / "coordinator.json"),
         RESUME_KEY: False}
    ]  # fmt: skip
    assert runner.poll_once()[campaign_id].action is Action.WAIT
    control.runs[run_id] = RunStatus(run_id, "finished", "failed", "ServerApp exited with 1")
    assert runner.poll_once()[campaign_id].action is Action.FAIL
    view = get_campaign(runner._database, campaign_id)
    assert view.state == "failed" and "ServerApp exited with 1" in view.error
    assert view.flower_run_id == run_id  # a run id above 2**63 survives the signed column
    assert runner.following() == set()
    assert (tmp_path / "logs" / f"{campaign_id}.log").read_text() == f"log of {run_id}\n"
    with pytest.raises(CampaignStateError, match="only a pending campaign"):
        runner.start_campaign(campaign_id)


def test_a_silent_serverapp_is_stopped_and_its_campaign_failed(setup) -> None:  # type: ignore[no-untyped-def]
    control, clock, make, campaign_id, tmp_path = setup
    runner = make()
    run_id = runner.start_campaign(campaign_id)
    lease = Lease(tmp_path / "leases", campaign_id, run_id, interval=3600)
    lease.start()
    try:
        assert runner.poll_once()[campaign_id].action is Action.WAIT
        clock[0] = 100.0
        path = tmp_path / "leases" / f"{campaign_id}.json"
        os.utime(path, (path.stat().st_mtime - 30, path.stat().st_mtime - 30))
        decision = runner.poll_once()[campaign_id]
    finally:
        lease.stop()
    assert decision.action is Action.FAIL and "no sign of life" in decision.reason
    assert control.stopped == [run_id]


def test_recovery_resumes_a_dead_run_once_then_fails(setup) -> None:  # type: ignore[no-untyped-def]
    control, _clock, make, campaign_id, _tmp = setup
    first = make().start_campaign(campaign_id)
    control.runs.pop(first)  # the SuperLink lost the run with the coordinator
    runner = make()  # a new coordinator
    assert runner.recover() == [campaign_id]
    assert runner.poll_once()[campaign_id].action is Action.RESUME
    second = max(control.runs)
    assert control.started[-1][RESUME_KEY] is True
    assert get_campaign(runner._database, campaign_id).flower_run_id == second
    control.runs[second] = RunStatus(second, "finished", "failed", "killed")
    runner = make()
    runner.recover()
    decision = runner.poll_once()[campaign_id]
    assert decision.action is Action.FAIL and "resumed 1 time(s) already" in decision.reason
    assert get_campaign(runner._database, campaign_id).state == "failed"


def test_an_inherited_run_found_alive_is_still_resumed_when_it_fails(setup) -> None:  # type: ignore[no-untyped-def]
    """A ServerApp can outlive its killed coordinator's SuperLink for a while, renewing its
    lease, and then fail on the restarted one: the restart caused it, so the campaign goes on."""
    control, clock, make, campaign_id, tmp_path = setup
    inherited = make().start_campaign(campaign_id)
    runner = make()  # a new coordinator
    lease = Lease(tmp_path / "leases", campaign_id, inherited, interval=3600)
    lease.start()
    try:
        assert runner.recover() == [campaign_id]
        assert runner.poll_once()[campaign_id].action is Action.WAIT  # alive, so followed
        clock[0] += 10.0
        assert runner.poll_once()[campaign_id].action is Action.WAIT
        control.runs[inherited] = RunStatus(inherited, "finished", "failed", "unknown error")
        decision = runner.poll_once()[campaign_id]
    finally:
        lease.stop()
    assert decision.action is Action.RESUME and "unknown error" in decision.reason
    resumed = max(control.runs)
    assert resumed != inherited and control.started[-1][RESUME_KEY] is True
    # A run this coordinator started is its own: its failure fails the campaign.
    control.runs[resumed] = RunStatus(resumed, "finished", "failed", "ServerApp exited with 1")
    assert runner.poll_once()[campaign_id].action is Action.FAIL
    assert get_campaign(runner._database, campaign_id).state == "failed"


def test_an_unreachable_superlink_changes_nothing(setup) -> None:  # type: ignore[no-untyped-def]
    control, _clock, make, campaign_id, _tmp = setup
    runner = make()
    runner.start_campaign(campaign_id)
    control.down = True
    assert runner.poll_once() == {}
    assert get_campaign(runner._database, campaign_id).state == "running"


def test_stop_cancels_the_campaign_and_its_run(setup, world: World) -> None:  # type: ignore[no-untyped-def]
    control, _clock, make, campaign_id, _tmp = setup
    runner = make()
    run_id = runner.start_campaign(campaign_id)
    assert runner.stop_campaign(campaign_id, audit.Actor.system())
    assert control.stopped == [run_id]
    view = get_campaign(world.database, campaign_id)
    assert (view.state, view.error) == ("cancelled", "stopped by an operator")
    assert not runner.stop_campaign(campaign_id, audit.Actor.system())


def test_an_ended_campaigns_last_log_lines_are_kept_until_its_run_finishes(setup) -> None:  # type: ignore[no-untyped-def]
    control, _clock, make, campaign_id, tmp_path = setup
    runner = make()
    run_id = runner.start_campaign(campaign_id)
    runner.poll_once()
    # The ServerApp ends the campaign itself (here: it fails it) and logs on a little longer.
    store.fail_campaign(runner._database, campaign_id, "the loss diverged", run_id=run_id)
    runner.poll_once()
    assert runner.following() == set()  # no longer judged...
    control.late_logs[run_id] = f"campaign {campaign_id} completed\n"  # ...but still logging
    runner.poll_once()
    log_file = tmp_path / "logs" / f"{campaign_id}.log"
    assert log_file.read_text().endswith(f"campaign {campaign_id} completed\n")
    assert control.stopped == []
    control.runs[run_id] = RunStatus(run_id, "finished", "completed", "")
    control.late_logs[run_id] = "the ServerApp exits\n"
    runner.poll_once()  # the status says finished before the last read: nothing after it
    assert log_file.read_text().endswith("the ServerApp exits\n")
    assert runner.poll_once() == {}


def test_a_run_that_never_finishes_is_drained_for_a_bounded_time(setup) -> None:  # type: ignore[no-untyped-def]
    _control, clock, make, campaign_id, _tmp = setup
    runner = make()
    run_id = runner.start_campaign(campaign_id)
    store.fail_campaign(runner._database, campaign_id, "the loss diverged", run_id=run_id)
    runner.poll_once()
    assert campaign_id in runner.poll_once()
    clock[0] += SETTINGS.drain_timeout + 1
    runner.poll_once()
    assert runner.poll_once() == {}


def test_a_restarted_coordinator_goes_on_with_the_log_where_the_last_one_stopped(setup) -> None:  # type: ignore[no-untyped-def]
    control, _clock, make, campaign_id, tmp_path = setup
    run_id = make().start_campaign(campaign_id)
    first = make()
    first.recover()
    first.poll_once()
    control.late_logs[run_id] = "round 1 stored\n"
    first.poll_once()
    second = make()  # the coordinator restarted; the SuperLink kept the run
    second.recover()
    assert second.poll_once()[campaign_id].action is Action.WAIT
    log_file = tmp_path / "logs" / f"{campaign_id}.log"
    assert log_file.read_text() == f"log of {run_id}\nround 1 stored\n"
