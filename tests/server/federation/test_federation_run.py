"""A SuperLink with TLS and SuperNode authentication, devices' SuperNodes, runs through the
Control API: registered keys train, unregistered keys are refused, a revoked node gets no work.

The tests of this module share one SuperLink and run in file order (each builds on the last).
"""

from __future__ import annotations

import ssl

import httpx
import pytest
from flower_support import follow_run, public_pem, tasks_of, wait_state

from fedota.client.federation import FederationState
from fedota.server.federation import (
    ControlForbidden,
    KeyInUse,
    KeyReconciler,
    RunNotFound,
    SuperLink,
    fedota_app,
)
from fedota.server.federation.control import ControlClient

pytestmark = pytest.mark.e2e

STATE: dict[str, object] = {}


@pytest.mark.timeout(60)
def test_the_control_api_needs_the_coordinators_token(superlink: SuperLink) -> None:
    ca = superlink.ca_path.read_bytes()
    with (
        ControlClient(superlink.dial_address, ca, b"not-the-token") as intruder,
        pytest.raises(ControlForbidden, match="control token"),
    ):
        intruder.list_nodes()
    # Without any header, straight over HTTPS: refused before Flower sees it.
    answer = httpx.post(
        f"https://{superlink.dial_address}/v1/control/register-node",
        content=b"",
        verify=ssl.create_default_context(cafile=str(superlink.ca_path)),
    )
    assert answer.status_code == 403


@pytest.mark.timeout(120)
def test_two_registered_nodes_complete_a_run(superlink: SuperLink, supernodes) -> None:  # type: ignore[no-untyped-def]
    first, first_key = supernodes("dev-a")
    second, second_key = supernodes("dev-b")
    with superlink.control() as control:
        ids = {
            "dev-a": control.register_node(public_pem(first_key), "dev-a"),
            "dev-b": control.register_node(public_pem(second_key), "dev-b"),
        }
        with pytest.raises(KeyInUse):
            control.register_node(public_pem(first_key), "dev-a-again")
        # Registered before it started, the node is refused until then, and restarts.
        wait_state(first, FederationState.RUNNING, 60)
        wait_state(second, FederationState.RUNNING, 60)
        run_id = control.start_run(fedota_app(), {"num-server-rounds": 1, "min-nodes": 2})
        seen = follow_run(control, run_id, 90)
        assert seen[-1].completed, seen
        logs = control.run_logs(run_id)
        assert logs.complete and "1 round(s) done" in logs.text
        names = {n.name: n for n in control.list_nodes()}
    assert {names["dev-a"].node_id, names["dev-b"].node_id} == set(ids.values())
    assert f"run={run_id} query" in tasks_of(first)
    assert f"run={run_id} query" in tasks_of(second)
    STATE.update(first=first, second=second, keys={"dev-a": first_key, "dev-b": second_key})


@pytest.mark.timeout(60)
def test_an_unregistered_key_is_refused(supernodes) -> None:  # type: ignore[no-untyped-def]
    stranger, _key = supernodes("stranger")
    status = stranger.wait_for(FederationState.NOT_REGISTERED, timeout=45)
    assert status.state is FederationState.NOT_REGISTERED
    assert "does not know this device's key" in status.reason


@pytest.mark.timeout(120)
def test_a_revoked_node_gets_no_work_in_the_next_run(superlink: SuperLink) -> None:
    if "first" not in STATE:
        pytest.skip("needs the nodes of test_two_registered_nodes_complete_a_run")
    first, second, keys = STATE["first"], STATE["second"], STATE["keys"]
    # The fleet now accepts dev-a only: the reconciler unregisters dev-b.
    accepted = {"dev-a": public_pem(keys["dev-a"])}  # type: ignore[index]
    reconciler = KeyReconciler(superlink.control, lambda: accepted)
    outcome = reconciler.run_once()
    assert len(outcome.unregistered) == 1 and not outcome.registered and not outcome.errors
    assert reconciler.run_once().unregistered == []  # a fixed point
    with superlink.control() as control:
        run_id = control.start_run(fedota_app(), {"num-server-rounds": 1, "min-nodes": 1})
        seen = follow_run(control, run_id, 90)
        assert seen[-1].completed, seen
        with pytest.raises(RunNotFound):
            control.run_status(run_id + 1 if run_id < 2**63 else 1)
    assert f"run={run_id} query" in tasks_of(first)  # type: ignore[arg-type]
    assert f"run={run_id}" not in tasks_of(second)  # type: ignore[arg-type]
    # The revoked device's SuperNode is told so the next time it connects.
    status = second.wait_for(FederationState.NOT_REGISTERED, timeout=60)  # type: ignore[attr-defined]
    STATE["revoked_status"] = status
