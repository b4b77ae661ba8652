"""What every service call needs: the database, the CA, the limits, the blob store, the ports."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from fedota.server.campaigns.runner import CampaignRunner
from fedota.server.config import Limits
from fedota.server.pki import FleetCA, PublicKey, issue_device_certificate
from fedota.server.releases import MetadataStore
from fedota.storage.blobs import BlobStore
from fedota.storage.db import Database
from fedota.storage.types import utcnow


@dataclass(frozen=True)
class Runtime:
    """Shared by every call of one coordinator; immutable once serving."""

    database: Database
    ca: FleetCA
    limits: Limits
    device_port: int
    # Weights, patches and signed metadata, by SHA-256.
    blobs: BlobStore
    # Scratch space for uploads and builds (inside the data directory, same file system).
    work_dir: Path
    # The signed TUF update metadata (keys sealed at rest).
    tuf: MetadataStore
    clock: Callable[[], dt.datetime] = field(default=utcnow)
    # The federation's SuperLink port accepted devices are told to dial; 0 when none runs.
    federation_port: int = 0
    # Starts and stops training campaigns' Flower runs; None without a federation.
    campaigns: CampaignRunner | None = None

    def issue_certificate(
        self, public_key: PublicKey, device_id: str, now: dt.datetime
    ) -> x509.Certificate:
        """A device certificate for the configured lifetime, never past the CA's own expiry."""
        not_after = min(
            now + self.limits.certificate_lifetime, self.ca.certificate.not_valid_after_utc
        )
        return issue_device_certificate(
            self.ca, public_key, device_id, now - self.limits.certificate_backdate, not_after
        )

    def renewal_due(
        self, not_before: dt.datetime, not_after: dt.datetime, now: dt.datetime
    ) -> bool:
        """Whether a certificate has passed the renewal point of its lifetime."""
        return now >= not_before + (not_after - not_before) * self.limits.renew_fraction
