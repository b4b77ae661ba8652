"""The key reconciler's plan: a table of fleets and SuperLink states (pure, no processes)."""

from __future__ import annotations

import functools

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from fedota.server.federation.control import Node
from fedota.server.federation.nodes import Plan, Registration, plan


@functools.cache
def key(name: str) -> bytes:
    """A stable P-256 public key PEM per name, for the table below."""
    private = ec.generate_private_key(ec.SECP256R1())
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def ssh(name: str) -> bytes:
    loaded = serialization.load_pem_public_key(key(name))
    return loaded.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)


def node(node_id: int, name: str, key_of: str, status: str = "online") -> Node:
    return Node(node_id, name, key(key_of), status)


ED25519 = (
    ed25519.Ed25519PrivateKey.generate()
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
)

CASES = {
    "nothing to do": ({}, [], Plan()),
    "accepted while the SuperLink was down": (
        {"d1": key("d1"), "d2": key("d2")},
        [node(1, "d1", "d1")],
        Plan(to_register=(Registration("d2", key("d2")),)),
    ),
    "revoked while the SuperLink was down": (
        {"d1": key("d1")},
        [node(1, "d1", "d1"), node(2, "d2", "d2", "offline")],
        Plan(to_unregister=(node(2, "d2", "d2", "offline"),)),
    ),
    "in sync, any live status": (
        {"d1": key("d1"), "d2": key("d2")},
        [node(1, "d1", "d1", "registered"), node(2, "d2", "d2", "offline")],
        Plan(),
    ),
    "OpenSSH and PEM name the same key": (
        {"d1": ssh("d1")},
        [node(1, "d1", "d1")],
        Plan(),
    ),
    "a node nobody accepted (registered by hand)": (
        {},
        [node(7, "intruder", "x")],
        Plan(to_unregister=(node(7, "intruder", "x"),)),
    ),
    "right name, wrong key": (
        {"d1": key("d1")},
        [node(1, "d1", "other")],
        Plan(to_unregister=(node(1, "d1", "other"),), to_register=(Registration("d1", key("d1")),)),
    ),
    "unregistered nodes are history, not changes": (
        {},
        [node(1, "d1", "d1", "unregistered")],
        Plan(),
    ),
    "a key unregistered before cannot come back": (
        {"d1": key("d1")},
        [node(1, "d1", "d1", "unregistered")],
        Plan(blocked=(("d1", "its key was unregistered from the SuperLink before"),)),
    ),
    "an unusable key is reported, others proceed": (
        {"bad": ED25519, "d1": key("d1")},
        [],
        Plan(
            to_register=(Registration("d1", key("d1")),),
            blocked=(("bad", "its key cannot join Flower: Flower needs an EC key on a NIST "
                      "curve, not Ed25519PublicKey"),),
        ),
    ),
    "two nodes for one device: the lower id stays": (
        {"d1": key("d1")},
        [node(5, "d1", "d1"), node(3, "d1", "d1")],
        Plan(to_unregister=(node(5, "d1", "d1"),)),
    ),
}  # fmt: skip


@pytest.mark.parametrize(("accepted", "registered", "expected"), CASES.values(), ids=CASES.keys())
def test_plan(accepted: dict[str, bytes], registered: list[Node], expected: Plan) -> None:
    assert plan(accepted, registered) == expected


def test_plan_leaves_its_inputs_alone() -> None:
    accepted = {"d1": key("d1")}
    registered = [node(2, "d2", "d2")]
    plan(accepted, registered)
    assert accepted == {"d1": key("d1")} and registered == [node(2, "d2", "d2")]


def test_applying_the_plan_reaches_a_fixed_point() -> None:
    accepted = {"d1": key("d1"), "d2": key("d2")}
    registered = [node(1, "d1", "other"), node(2, "x", "x")]
    first = plan(accepted, registered)
    gone = {n.node_id for n in first.to_unregister}
    after = [n for n in registered if n.node_id not in gone] + [
        Node(10 + i, r.device_id, r.public_key_pem, "registered")
        for i, r in enumerate(first.to_register)
    ]
    assert plan(accepted, after).empty
