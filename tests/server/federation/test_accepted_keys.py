"""The reconciler's view of the fleet: accepted devices' keys, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric import ec
from flower_support import public_pem

from fedota.server.federation import accepted_device_keys, plan
from fedota.storage import models as m
from fedota.storage.db import Database
from fedota.storage.models.fleet import DeviceState
from fedota.storage.types import new_id


def test_only_accepted_devices_are_read(database: Database) -> None:
    keys = {state: public_pem(ec.generate_private_key(ec.SECP256R1())) for state in DeviceState}
    with database.transaction() as session:
        fleet = m.Fleet(id=new_id("flt"), name="f")
        cohort = m.Cohort(id=new_id("coh"), fleet_id=fleet.id, name="c")
        session.add_all([fleet, cohort])
        ids = {}
        for state, pem in keys.items():
            device = m.Device(
                id=new_id("dev"),
                fleet_id=fleet.id,
                cohort_id=cohort.id,
                state=state,
                hardware_class="cpu-small",
                public_key_sha256=hashlib.sha256(pem).hexdigest(),
                public_key_pem=pem.decode(),
            )
            session.add(device)
            ids[state] = device.id
    accepted = accepted_device_keys(database)
    assert accepted == {ids[DeviceState.ACCEPTED]: keys[DeviceState.ACCEPTED]}
    assert [r.device_id for r in plan(accepted, []).to_register] == [ids[DeviceState.ACCEPTED]]
