"""Device credential rows: recording an issued certificate, and who owns a public key."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fedota.server.pki import certificate_der_sha256
from fedota.storage.models import Device, DeviceCredential
from fedota.storage.types import new_id


def new_credential(
    device_id: str, certificate: x509.Certificate, key_sha256: str
) -> DeviceCredential:
    """The row recording a certificate issued to `device_id` (validity as in the certificate)."""
    return DeviceCredential(
        id=new_id("crd"),
        device_id=device_id,
        serial=f"{certificate.serial_number:x}",
        certificate_sha256=certificate_der_sha256(certificate),
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
        public_key_sha256=key_sha256,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
    )


def key_owner(session: Session, key_sha256: str) -> str | None:
    """The device that holds, or once held, this public key."""
    current = session.scalars(
        select(Device.id).where(Device.public_key_sha256 == key_sha256)
    ).first()
    if current is not None:
        return current
    return session.scalars(
        select(DeviceCredential.device_id).where(DeviceCredential.public_key_sha256 == key_sha256)
    ).first()


def retire_credentials(
    session: Session, device_id: str, now: dt.datetime, *, keep: str, older_only: bool
) -> list[str]:
    """Revoke the device's other live credentials; returns the serials revoked.

    A renewal keeps the certificate it was made with (`older_only=False` retires only what
    earlier renewals issued and the device never used), and the first call made with the new
    certificate retires the ones before it (`older_only=True`). So a renewal reply lost on the
    way never locks a device out, and a replaced certificate still stops working.
    """
    kept = session.get_one(DeviceCredential, keep)
    condition = [
        DeviceCredential.device_id == device_id,
        DeviceCredential.revoked_at.is_(None),
        DeviceCredential.id != keep,
    ]
    if older_only:
        condition.append(DeviceCredential.created_at < kept.created_at)
    serials = list(session.scalars(select(DeviceCredential.serial).where(*condition)))
    if serials:
        session.execute(
            update(DeviceCredential)
            .where(*condition)
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
    return serials
