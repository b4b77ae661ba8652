"""The coordinator's running federation: its supervised SuperLink, the key reconciler and the
campaign runner.

One object for `Coordinator` to start and stop, so the coordinator's start-up reads as one step.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

from fedota.server.campaigns.link import CAMPAIGNS_DIR, CoordinatorLink, lease_dir
from fedota.server.campaigns.runner import CampaignRunner, RunnerSettings
from fedota.server.config import Address
from fedota.server.errors import StartupError
from fedota.server.federation.control import ControlClient
from fedota.server.federation.fab import fedota_app
from fedota.server.federation.nodes import KeyReconciler, accepted_device_keys
from fedota.server.federation.superlink import SuperLink, SuperLinkSettings
from fedota.server.pki import FleetCA
from fedota.storage.db import Database

log = logging.getLogger(__name__)

# How often the registered SuperNode keys are compared with the accepted devices: a device
# accepted (or revoked) is in (or out of) the federation within about this many seconds.
RECONCILE_INTERVAL = 2.0
# Where each campaign's Flower run log is appended, under DATA/campaigns/.
LOGS_DIR = "logs"


@dataclass(frozen=True)
class CampaignStorage:
    """Where the ServerApp finds the coordinator's state (see `CoordinatorLink`)."""

    database_url: str
    blob_root: Path
    work_dir: Path


@dataclass
class Federation:
    """A started SuperLink whose registered keys follow the accepted devices, and the runner
    that starts and follows campaigns' runs on it; `stop()` ends them."""

    superlink: SuperLink
    reconciler: KeyReconciler
    campaigns: CampaignRunner

    @classmethod
    def start(
        cls,
        data_dir: Path,
        ca: FleetCA,
        database: Database,
        listen: Address,
        sans: tuple[str, ...],
        now: dt.datetime,
        storage: CampaignStorage,
        runner_settings: RunnerSettings | None = None,
    ) -> Federation:
        """Start the SuperLink (returns once it answers), the reconciler thread, and the
        campaign runner (which first follows the campaigns a previous coordinator left running).

        Raises:
            StartupError: the SuperLink did not start (`SuperLinkStartError`), or the coordinator
                file or fedota's Flower App is unusable.
        """
        campaigns_dir = Path(data_dir) / CAMPAIGNS_DIR
        try:
            link_path = CoordinatorLink(
                storage.database_url,
                str(storage.blob_root.resolve()),
                str(storage.work_dir.resolve()),
                str(lease_dir(data_dir).resolve()),
            ).write(data_dir)
            app = fedota_app()
        except OSError as exc:
            raise StartupError(f"campaigns: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise StartupError(f"campaigns: fedota's Flower App: {exc}") from exc
        superlink = SuperLink(data_dir, ca, SuperLinkSettings(listen=listen, sans=sans))
        superlink.start(now)
        reconciler = KeyReconciler(
            superlink.control, lambda: accepted_device_keys(database), RECONCILE_INTERVAL
        )
        runner = CampaignRunner(
            database,
            superlink.control,
            app,
            link_path,
            lease_dir(data_dir),
            campaigns_dir / LOGS_DIR,
            runner_settings,
            superlink_restarts=lambda: superlink.state.restarts,
        )
        try:
            reconciler.start()
            runner.recover()
            runner.start()
        except BaseException:
            runner.stop()
            reconciler.stop()
            superlink.stop()
            raise
        log.info("federation: Flower SuperLink on %s", superlink.address)
        return cls(superlink, reconciler, runner)

    @property
    def address(self) -> Address:
        """Where the SuperLink listens (the port resolved)."""
        return self.superlink.address

    def control(self) -> ControlClient:
        """A Control API client for the SuperLink (register nodes, start and follow runs)."""
        return self.superlink.control()

    def stop(self) -> None:
        """Stop following campaigns and the reconciler, then the SuperLink and every process
        under it (runs left unfinished are resumed by the next start's `recover()`)."""
        self.campaigns.stop()
        self.reconciler.stop()
        self.superlink.stop()


__all__ = ["LOGS_DIR", "RECONCILE_INTERVAL", "CampaignStorage", "Federation"]
