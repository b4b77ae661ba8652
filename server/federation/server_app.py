"""fedota's ServerApp: one Flower run of a training campaign, reported to the coordinator.

Campaign run config (set by `fedota.server.campaigns.runner`): `campaign-id`,
`coordinator-file` (the absolute path of the coordinator's private link file, see
`fedota.server.campaigns.link`: the database URL and the blob store, never in the run config
itself) and `resume` (whether the run may continue a campaign that has completed rounds). A run
without a `campaign-id` is a federation check: `num-server-rounds` rounds of a query to at
least `min-nodes` online nodes, each answering whether it could train (in the run's log).

The rounds themselves are `fedota.server.campaigns.run.CampaignRun`; this module adapts
Flower's grid to its `FleetLink`, keeps the campaign's lease alive, and turns every ending into
the campaign's state: completed, or failed with one line saying why.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from fedota.server.campaigns import store
from fedota.server.campaigns.errors import CampaignStateError, StaleRun
from fedota.server.campaigns.lease import Lease
from fedota.server.campaigns.link import (
    CAMPAIGN_KEY,
    LINK_KEY,
    RESUME_KEY,
    CoordinatorLink,
    LinkError,
)
from fedota.server.campaigns.run import CampaignFailure, CampaignRun, Reply
from fedota.server.campaigns.secure import SecureParams, SecureResult
from fedota.server.federation.secure_round import run_secure_round, send_and_receive
from fedota.storage.db import Database
from fedota.storage.local_blobs import LocalBlobStore

log = logging.getLogger("fedota.campaign")

ONLINE = "online"
POLL_INTERVAL = 1.0
# How long the run waits for the runner to hand it the campaign (it does right after the
# Control API returned the run id, so this only covers a slow coordinator).
CLAIM_WAIT = 60.0

app = ServerApp()


class GridFleet:
    """`FleetLink` over Flower's grid: online registered nodes, messages out and back with a
    deadline, polled every second (Flower's own send_and_receive sleeps 3 s between pulls),
    and SecAgg+ rounds (`secure_round`)."""

    def __init__(self, grid: Grid, run_id: int = 0, poll_interval: float = POLL_INTERVAL) -> None:
        self._grid = grid
        self._run_id = run_id
        self._poll = poll_interval

    def online_nodes(self) -> dict[str, int]:
        return {
            node.name: int(node.node_id)
            for node in self._grid.get_nodes()
            if node.name and node.status == ONLINE
        }

    def exchange(
        self, kind: str, contents: Mapping[int, RecordDict], timeout: float
    ) -> dict[int, Reply]:
        messages = [
            Message(content=content, dst_node_id=node, message_type=kind, ttl=timeout)
            for node, content in contents.items()
        ]
        destinations = {m.object_id: m.metadata.dst_node_id for m in messages}
        replies: dict[int, Reply] = {}
        for message in send_and_receive(self._grid, messages, timeout, self._poll):
            asked = message.metadata.reply_to_message_id
            node = destinations.get(asked, message.metadata.src_node_id)
            if message.has_error():
                error = message.error
                replies[node] = Reply(error=error.reason or f"error code {error.code}")
            else:
                replies[node] = Reply(content=message.content)
        return replies

    def secure_exchange(
        self,
        contents: Mapping[int, RecordDict],
        params: SecureParams,
        timeout: float,
        still_eligible: Callable[[], set[int]],
    ) -> SecureResult:
        return run_secure_round(
            self._grid, self._run_id, contents, params, timeout, still_eligible, self._poll
        )

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the campaign the run config names; every ending is reported to the coordinator."""
    _log_to_stdout()
    run_id = int(context.run_id)
    config = context.run_config
    campaign_id = str(config.get(CAMPAIGN_KEY, ""))
    link_path = str(config.get(LINK_KEY, ""))
    if not campaign_id:
        _federation_check(GridFleet(grid), config)
        return
    if not link_path:
        _say(f"campaign {campaign_id}: the run config lacks {LINK_KEY}")
        return
    try:
        link = CoordinatorLink.read(link_path)
    except LinkError as exc:
        _say(f"campaign {campaign_id}: {exc}")
        return
    database = Database(link.database_url)
    lease = Lease(Path(link.lease_dir), campaign_id, run_id, link.lease_interval)
    try:
        lease.start()
        _run(database, link, grid, campaign_id, run_id, bool(config.get(RESUME_KEY, False)))
    finally:
        lease.stop()
        database.dispose()


def _federation_check(fleet: GridFleet, config: Mapping[str, object]) -> None:
    """A run without a campaign: `num-server-rounds` rounds of a query to at least `min-nodes`
    online nodes, each saying whether it could train (model, examples, or the problem)."""
    rounds = int(config.get("num-server-rounds", 1))  # type: ignore[call-overload]
    min_nodes = int(config.get("min-nodes", 1))  # type: ignore[call-overload]
    timeout = float(config.get("round-timeout", 120))  # type: ignore[arg-type]
    for number in range(1, rounds + 1):
        deadline = time.monotonic() + timeout
        nodes = fleet.online_nodes()
        while len(nodes) < min_nodes and time.monotonic() < deadline:
            fleet.wait(POLL_INTERVAL)
            nodes = fleet.online_nodes()
        if len(nodes) < min_nodes:
            _say(f"federation check: {len(nodes)} of {min_nodes} nodes online after {timeout:g}s")
            return
        content = RecordDict({"config": ConfigRecord({"server-round": number})})
        replies = fleet.exchange("query", {node: content for node in nodes.values()}, timeout)
        for name, node in sorted(nodes.items()):
            _say(f"federation check round {number}: {name}: {_status_line(replies.get(node))}")
    _say(f"federation check: {rounds} round(s) done")


def _status_line(reply: Reply | None) -> str:
    if reply is None:
        return "no answer"
    if reply.content is None:
        return f"error: {reply.error}"
    status = reply.content.config_records.get("status", ConfigRecord())
    metrics = reply.content.metric_records.get("metrics", {})
    line = f"{status.get('model') or 'no model'}, {metrics.get('examples', 0)} examples"
    problem = status.get("problem")
    return f"{line} ({problem})" if problem else line


def _run(
    database: Database,
    link: CoordinatorLink,
    grid: Grid,
    campaign_id: str,
    run_id: int,
    resume: bool,
) -> None:
    if not _wait_for_claim(database, campaign_id, run_id):
        return
    blobs = LocalBlobStore(Path(link.blob_root))
    work_dir = Path(link.work_dir)
    campaign = CampaignRun(
        database, blobs, GridFleet(grid, run_id), campaign_id, run_id, work_dir, resume=resume
    )
    try:
        version_id = campaign.run()
    except CampaignFailure as exc:
        _fail(database, campaign_id, run_id, str(exc))
    except (StaleRun, CampaignStateError) as exc:
        _say(f"campaign {campaign_id}: run {run_id} stops: {exc}")
    except Exception as exc:
        log.exception("campaign %s: the ServerApp failed", campaign_id)
        _fail(database, campaign_id, run_id, f"the ServerApp failed: {type(exc).__name__}: {exc}")
    else:
        _say(f"campaign {campaign_id} completed: version {version_id}")


def _wait_for_claim(database: Database, campaign_id: str, run_id: int) -> bool:
    deadline = time.monotonic() + CLAIM_WAIT
    while True:
        try:
            store.claim(database, campaign_id, run_id)
            return True
        except StaleRun as exc:
            if time.monotonic() >= deadline:
                _say(f"campaign {campaign_id}: {exc}; run {run_id} does nothing")
                return False
        except CampaignStateError as exc:
            _say(f"campaign {campaign_id}: {exc}; run {run_id} does nothing")
            return False
        except Exception as exc:  # e.g. the database is unreachable: nothing to report to
            _say(f"campaign {campaign_id}: cannot read the campaign: {exc}")
            return False
        time.sleep(POLL_INTERVAL)


def _fail(database: Database, campaign_id: str, run_id: int, reason: str) -> None:
    _say(f"campaign {campaign_id} failed: {reason}")
    try:
        store.fail_campaign(database, campaign_id, reason, run_id=run_id)
    except Exception as exc:  # the runner fails it from the run's status instead
        _say(f"campaign {campaign_id}: cannot record the failure: {exc}")


def _say(line: str) -> None:
    print(f"fedota: {line}", flush=True)


def _log_to_stdout() -> None:
    logger = logging.getLogger("fedota")
    if not any(getattr(h, "_fedota", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("fedota: %(message)s"))
        handler._fedota = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


__all__ = ["GridFleet", "app"]
