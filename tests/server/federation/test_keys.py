"""The device key in Flower's forms: PEM -> OpenSSH line -> Flower's own loaders."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from flwr.supercore.primitives.asymmetric import bytes_to_public_key, uses_nist_ec_curve

from fedota.client.keys import generate_key
from fedota.client.keys import openssh_public_line as device_openssh_line
from fedota.server.federation.keys import (
    UnsupportedKey,
    canonical_pem,
    load_node_public_key,
    openssh_public_line,
)


def _pem(key: object) -> bytes:
    return key.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()])
def test_pem_to_openssh_line_is_read_back_by_flower(curve: ec.EllipticCurve) -> None:
    key = ec.generate_private_key(curve)
    line = openssh_public_line(_pem(key), comment="dev-1")
    assert line.startswith(f"ecdsa-sha2-nistp{key.curve.key_size}") and line.endswith(" dev-1")
    # What `flwr supernode register KEY.pub` does with the file.
    loaded = serialization.load_ssh_public_key(line.encode())
    assert isinstance(loaded, ec.EllipticCurvePublicKey) and uses_nist_ec_curve(loaded)
    # The Control API form round-trips to the same key.
    assert canonical_pem(line.encode()) == _pem(key)
    assert bytes_to_public_key(canonical_pem(line.encode())).public_numbers() == (
        key.public_key().public_numbers()
    )


def test_server_line_matches_the_device_line() -> None:
    key = generate_key()
    device_line = device_openssh_line(key).decode().split()
    assert openssh_public_line(_pem(key)).split() == device_line[:2]


@pytest.mark.parametrize(
    ("key", "rule"),
    [
        (ed25519.Ed25519PrivateKey.generate(), "EC key"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "EC key"),
        (ec.generate_private_key(ec.SECP256K1()), "NIST curve"),
    ],
    ids=["ed25519", "rsa", "secp256k1"],
)
def test_keys_flower_cannot_use_are_refused(key: object, rule: str) -> None:
    with pytest.raises(UnsupportedKey, match=rule):
        openssh_public_line(_pem(key))


@pytest.mark.parametrize("data", [b"", b"not a key", b"-----BEGIN PUBLIC KEY-----\nAAAA\n"])
def test_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(UnsupportedKey):
        load_node_public_key(data)
