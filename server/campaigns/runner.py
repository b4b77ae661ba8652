"""The coordinator's side of a campaign's Flower runs: start, follow, fail or resume.

    runner = CampaignRunner(database, superlink.control, fedota_app(), link_path, lease_dir,
                            log_dir, superlink_restarts=lambda: superlink.state.restarts)
    runner.recover()                 # at start: campaigns left running by a previous coordinator
    runner.start()                   # follow every campaign on a thread
    runner.start_campaign(cid)       # an operator's `campaigns start`
    runner.stop_campaign(cid, actor) # an operator's `campaigns stop`

A run reports its rounds itself (the ServerApp writes to storage); the runner watches what the
ServerApp cannot report: its own death. Each pass reads the run's status from the Control API
and the ServerApp's lease (`lease`), appends the run's log to `LOG_DIR/<campaign>.log` (how
far, in `<campaign>.log-position.json`, so a restarted coordinator goes on from there), and
`judge` (pure) decides: wait, or the run is dead. A dead run of a campaign this runner started
fails the campaign with the reason (a failed or stopped run, a ServerApp silent past its lease,
a SuperLink restart); a dead run found at `recover()`, left by a coordinator that stopped, is
resumed by a new run from the last completed round (at most `max_resumes` times), or failed.
Completed rounds are never lost: they are in storage the moment the ServerApp recorded them.
Once a campaign ends, its run's log is still read until Flower reports the run finished (at
most `drain_timeout` seconds): the ServerApp's last lines arrive after it recorded the end.
"""

from __future__ import annotations

import enum
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fedota.server import audit
from fedota.server.campaigns import store
from fedota.server.campaigns.errors import CampaignStateError
from fedota.server.campaigns.lease import LeaseState, read_lease
from fedota.server.campaigns.link import CAMPAIGN_KEY, LINK_KEY, RESUME_KEY
from fedota.server.federation.control import ControlClient, FlowerApp, RunStatus
from fedota.server.federation.errors import ControlRefused, ControlUnavailable, RunNotFound
from fedota.storage.db import Database
from fedota.storage.models import CampaignState, TrainingCampaign

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunnerSettings:
    """How the runner watches runs.

    Attributes:
        poll_interval: seconds between passes.
        lease_timeout: a ServerApp whose lease is older than this is dead.
        start_timeout: a run whose ServerApp took no lease this long after it started is dead.
        max_resumes: new runs a campaign may get after coordinator restarts.
        log_wait: seconds of log silence that end one read of a run's log.
        drain_timeout: seconds an ended campaign's run log is still read, waiting for Flower
            to report the run finished.
    """

    poll_interval: float = 5.0
    lease_timeout: float = 30.0
    start_timeout: float = 180.0
    max_resumes: int = 3
    log_wait: float = 0.2
    drain_timeout: float = 60.0

    def __post_init__(self) -> None:
        for name in (
            "poll_interval",
            "lease_timeout",
            "start_timeout",
            "log_wait",
            "drain_timeout",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_resumes < 0:
            raise ValueError(f"max_resumes must be >= 0, got {self.max_resumes}")


class Action(enum.Enum):
    WAIT = "wait"
    FAIL = "fail"
    RESUME = "resume"


@dataclass(frozen=True)
class Decision:
    """What to do with a running campaign's run, and why; `stop_run` when Flower still
    believes the dead run alive."""

    action: Action
    reason: str = ""
    stop_run: bool = False


def judge(
    run_id: int,
    status: RunStatus | None,
    lease: LeaseState | None,
    run_age: float,
    settings: RunnerSettings,
    *,
    recovering: bool,
    resumes: int,
    superlink_restarted: bool = False,
) -> Decision:
    """The fate of run `run_id` of a campaign that storage says is running (pure).

    `status` None: the SuperLink does not know the run. `run_age`: seconds since the runner
    started or found the run. `recovering`: the run was left by a coordinator that stopped.
    """
    reason, stop = _death(run_id, status, lease, run_age, settings, superlink_restarted)
    if reason is None:
        return Decision(Action.WAIT)
    if recovering and resumes < settings.max_resumes:
        return Decision(Action.RESUME, reason, stop)
    if recovering:
        reason += f"; the campaign was resumed {resumes} time(s) already"
    return Decision(Action.FAIL, reason, stop)


def _death(
    run_id: int,
    status: RunStatus | None,
    lease: LeaseState | None,
    run_age: float,
    settings: RunnerSettings,
    superlink_restarted: bool,
) -> tuple[str | None, bool]:
    if status is None:
        return f"Flower run {run_id} is unknown to the SuperLink", False
    if status.finished:
        if status.completed:
            return f"Flower run {run_id} ended without finishing the campaign", False
        details = f": {status.details}" if status.details else ""
        return f"Flower run {run_id} {status.sub_status or 'ended'}{details}", False
    if superlink_restarted:
        return f"the SuperLink restarted during Flower run {run_id}", True
    if lease is not None and lease.run_id == run_id:
        if lease.age > settings.lease_timeout:
            return (
                f"the ServerApp of Flower run {run_id} gave no sign of life for "
                f"{lease.age:.0f}s (killed?)"
            ), True
        return None, False
    if run_age > settings.start_timeout:
        return (
            f"the ServerApp of Flower run {run_id} did not start within "
            f"{settings.start_timeout:.0f}s ({status.status})"
        ), True
    return None, False


@dataclass
class _Followed:
    run_id: int
    since: float
    # Started by a coordinator that stopped: however it dies, even long after this one found
    # its ServerApp alive (it may outlive its SuperLink for a while and fail on the new one),
    # the restart may be the cause, so it is resumed while resumes remain.
    inherited: bool
    restarts_at_start: int
    log_after: float = 0.0
    ended_at: float | None = None  # when the campaign ended; its log is drained since


class CampaignRunner:
    """Starts campaigns' runs and follows them until their campaigns end.

    `control` opens a Control API client; `link_path` is the coordinator file the ServerApp
    reads (`CoordinatorLink.write`); `lease_dir` where ServerApps keep their leases; `log_dir`
    where each campaign's run logs are appended; `superlink_restarts` counts SuperLink
    restarts (e.g. `lambda: superlink.state.restarts`).
    """

    def __init__(
        self,
        database: Database,
        control: Callable[[], ControlClient],
        app: FlowerApp,
        link_path: Path,
        lease_dir: Path,
        log_dir: Path,
        settings: RunnerSettings | None = None,
        *,
        superlink_restarts: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or RunnerSettings()
        self._database = database
        self._control = control
        self._app = app
        self._link_path = link_path
        self._lease_dir = lease_dir
        self._log_dir = log_dir
        self._restarts = superlink_restarts or (lambda: 0)
        self._clock = clock
        self._lock = threading.Lock()
        self._followed: dict[str, _Followed] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- operator actions ---------------------------------------------------------------------

    def start_campaign(self, campaign_id: str) -> int:
        """Start a pending campaign's Flower run and follow it; the run id.

        Raises:
            CampaignNotFound, CampaignStateError: the campaign is not pending.
            ControlUnavailable, ControlRefused: the SuperLink did not start the run (the
                campaign stays pending).
        """
        with self._database.session() as session:
            campaign = session.get(TrainingCampaign, campaign_id)
            if campaign is not None and campaign.state != CampaignState.PENDING:
                raise CampaignStateError(
                    f"campaign {campaign_id} is {campaign.state.value}; only a pending "
                    "campaign can start"
                )
        run_id = self._start_run(campaign_id, resume=False)
        try:
            store.attach_run(self._database, campaign_id, run_id)
        except Exception:
            self._stop_run(run_id)
            raise
        self._follow(campaign_id, run_id, recovering=False)
        log.info("campaign %s started as Flower run %d", campaign_id, run_id)
        return run_id

    def stop_campaign(self, campaign_id: str, actor: audit.Actor) -> bool:
        """Cancel a campaign (its completed rounds stay) and stop its run; whether it changed.

        Raises:
            CampaignNotFound.
        """
        with self._database.session() as session:
            campaign = session.get(TrainingCampaign, campaign_id)
            run_id = None if campaign is None else store.flower_run_id(campaign)
        changed = store.fail_campaign(
            self._database, campaign_id, "stopped by an operator", cancel=True, actor=actor
        )
        if changed and run_id is not None:
            self._stop_run(run_id)
        with self._lock:
            entry = self._followed.get(campaign_id)
        if entry is not None:
            self._unfollow(campaign_id, entry)
        return changed

    def recover(self) -> list[str]:
        """Follow every campaign storage says is running that this runner does not follow yet
        (left by a coordinator that stopped); the next pass adopts, resumes or fails each."""
        found = []
        for campaign_id, run_id in store.running_campaigns(self._database):
            with self._lock:
                if campaign_id in self._followed:
                    continue
            self._follow(campaign_id, run_id or 0, recovering=True)
            found.append(campaign_id)
        if found:
            log.info("following campaigns left running: %s", ", ".join(found))
        return found

    # -- following ----------------------------------------------------------------------------

    def start(self) -> None:
        """Follow on a thread, a pass every `poll_interval` seconds, until `stop()`.

        Raises:
            RuntimeError: already started.
        """
        if self._thread is not None:
            raise RuntimeError("the campaign runner is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="campaign-runner", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following (runs go on; a later runner's `recover()` finds them)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def poll_once(self) -> dict[str, Decision]:
        """One pass over the followed campaigns; what was decided for each."""
        with self._lock:
            followed = dict(self._followed)
        decisions: dict[str, Decision] = {}
        for campaign_id, entry in followed.items():
            try:
                decisions[campaign_id] = self._pass(campaign_id, entry)
            except ControlUnavailable as exc:
                log.info("campaign %s: the SuperLink does not answer: %s", campaign_id, exc)
            except Exception:  # one campaign's trouble must not stop the others'
                log.exception("campaign %s: following its run failed", campaign_id)
        return decisions

    def following(self) -> set[str]:
        """Campaigns whose runs are followed (not those whose ended runs' logs are drained)."""
        with self._lock:
            return {cid for cid, entry in self._followed.items() if entry.ended_at is None}

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.settings.poll_interval)

    def _pass(self, campaign_id: str, entry: _Followed) -> Decision:
        with self._database.session() as session:
            campaign = session.get(TrainingCampaign, campaign_id)
            state = None if campaign is None else campaign.state
            resumes = 0 if campaign is None else int(campaign.config.get("resumes", 0))
            current_run = None if campaign is None else store.flower_run_id(campaign)
        if entry.ended_at is not None:
            return self._drain(campaign_id, entry)
        self._read_logs(campaign_id, entry)
        if state != CampaignState.RUNNING or current_run != entry.run_id:
            self._unfollow(campaign_id, entry)
            return Decision(Action.WAIT, f"campaign is {state.value if state else 'gone'}")
        status = self._status(entry.run_id)
        lease = read_lease(self._lease_dir, campaign_id)
        followed_for = self._clock() - entry.since
        decision = judge(
            entry.run_id,
            status,
            lease,
            followed_for,
            self.settings,
            recovering=entry.inherited,
            resumes=resumes,
            superlink_restarted=self._restarts() != entry.restarts_at_start,
        )
        if decision.action is Action.WAIT:
            return decision
        if decision.stop_run:
            self._stop_run(entry.run_id)
        if decision.action is Action.RESUME:
            self._resume(campaign_id, entry, decision.reason)
        else:
            log.warning("campaign %s failed: %s", campaign_id, decision.reason)
            store.fail_campaign(self._database, campaign_id, decision.reason, run_id=entry.run_id)
            self._unfollow(campaign_id, entry)
        return decision

    def _resume(self, campaign_id: str, entry: _Followed, reason: str) -> None:
        point = store.resume_point(self._database, campaign_id)
        log.warning(
            "campaign %s: %s; resuming after round %d", campaign_id, reason, point.completed
        )
        try:
            run_id = self._start_run(campaign_id, resume=True)
        except (ControlUnavailable, ControlRefused) as exc:
            store.fail_campaign(
                self._database,
                campaign_id,
                f"{reason}; a new run could not start: {exc}",
                run_id=entry.run_id,
            )
            self._unfollow(campaign_id, entry)
            return
        try:
            store.attach_run(self._database, campaign_id, run_id, resume=True)
        except CampaignStateError as exc:
            # An operator stopped (or something failed) the campaign meanwhile: the run just
            # started must not go on training unattended.
            log.info("campaign %s: %s; stopping the new run %d", campaign_id, exc, run_id)
            self._stop_run(run_id)
            self._unfollow(campaign_id, entry)
            return
        with self._lock:
            self._followed[campaign_id] = _Followed(run_id, self._clock(), False, self._restarts())

    def _follow(self, campaign_id: str, run_id: int, *, recovering: bool) -> None:
        entry = _Followed(run_id, self._clock(), recovering, self._restarts())
        if recovering:  # a previous coordinator copied the run's log up to here
            entry.log_after = self._log_position(campaign_id, run_id)
        with self._lock:
            self._followed[campaign_id] = entry

    def _unfollow(self, campaign_id: str, entry: _Followed) -> None:
        """Stop judging the run; its log is drained by the next passes."""
        with self._lock:
            if self._followed.get(campaign_id) is entry and entry.ended_at is None:
                entry.ended_at = self._clock()

    def _drain(self, campaign_id: str, entry: _Followed) -> Decision:
        """Copy what the ended campaign's run still logs; forget it once Flower says the run
        finished (the status is asked first so that the read after it gets the last lines)."""
        try:
            status = self._status(entry.run_id)
        except ControlUnavailable:
            status = None
        self._read_logs(campaign_id, entry)
        assert entry.ended_at is not None
        late = self._clock() - entry.ended_at > self.settings.drain_timeout
        if status is None or status.finished or late:
            with self._lock:
                if self._followed.get(campaign_id) is entry:
                    del self._followed[campaign_id]
        return Decision(Action.WAIT, "campaign ended; reading its run's last log lines")

    def _start_run(self, campaign_id: str, *, resume: bool) -> int:
        config = {CAMPAIGN_KEY: campaign_id, LINK_KEY: str(self._link_path), RESUME_KEY: resume}
        with self._control() as control:
            return control.start_run(self._app, config)

    def _stop_run(self, run_id: int) -> None:
        try:
            with self._control() as control:
                control.stop_run(run_id)
        except (ControlUnavailable, ControlRefused) as exc:
            log.info("stopping Flower run %d: %s", run_id, exc)

    def _status(self, run_id: int) -> RunStatus | None:
        if run_id == 0:
            return None
        try:
            with self._control() as control:
                return control.run_status(run_id)
        except RunNotFound:
            return None

    def _read_logs(self, campaign_id: str, entry: _Followed) -> None:
        if entry.run_id == 0:
            return
        try:
            with self._control() as control:
                logs = control.run_logs(entry.run_id, entry.log_after, self.settings.log_wait)
        except (ControlUnavailable, ControlRefused):
            return
        if logs.text:
            self._log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(self._log_dir / f"{campaign_id}.log", "a", encoding="utf-8") as handle:
                handle.write(logs.text)
            position = {"run_id": entry.run_id, "after": logs.latest_timestamp}
            self._position_path(campaign_id).write_text(json.dumps(position), encoding="utf-8")
        entry.log_after = logs.latest_timestamp

    def _position_path(self, campaign_id: str) -> Path:
        return self._log_dir / f"{campaign_id}.log-position.json"

    def _log_position(self, campaign_id: str, run_id: int) -> float:
        """How far the campaign's log holds run `run_id`'s log (0.0: none of it, or unknown)."""
        try:
            position = json.loads(self._position_path(campaign_id).read_text(encoding="utf-8"))
            if position["run_id"] == run_id:
                return float(position["after"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return 0.0


__all__ = ["Action", "CampaignRunner", "Decision", "RunnerSettings", "judge"]
