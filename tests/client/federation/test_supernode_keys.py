"""The enrollment key as the SuperNode's OpenSSH key file, read back by Flower's own loader."""

from __future__ import annotations

import argparse
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from flwr.supernode.cli.flower_supernode import _try_setup_client_authentication

from fedota.client.errors import StateError
from fedota.client.federation import write_openssh_private_key
from fedota.client.keys import generate_key, openssh_public_line, private_key_pem


def test_flower_derives_the_devices_public_key_from_the_file(tmp_path: Path) -> None:
    key = generate_key()
    path = tmp_path / "flower" / "supernode.key"
    write_openssh_private_key(path, private_key_pem(key))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # What `flower-supernode --auth-supernode-private-key PATH` does with it.
    args = argparse.Namespace(auth_supernode_private_key=str(path), auth_supernode_public_key=None)
    _private, public = _try_setup_client_authentication(args)
    line = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert line.split() == openssh_public_line(key).split()[:2]


def test_rewriting_the_same_key_changes_nothing_and_a_new_key_replaces_it(tmp_path: Path) -> None:
    path = tmp_path / "supernode.key"
    pem = private_key_pem(generate_key())
    write_openssh_private_key(path, pem)
    before = path.stat().st_ino
    first = path.read_bytes()
    write_openssh_private_key(path, pem)
    assert path.stat().st_ino == before and path.read_bytes() == first
    write_openssh_private_key(path, private_key_pem(generate_key()))
    assert path.read_bytes() != first and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["supernode.key"]


@pytest.mark.parametrize(
    "pem",
    [
        b"not a key",
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    ],
    ids=["garbage", "ed25519"],
)
def test_an_unusable_key_is_a_state_error_and_writes_nothing(tmp_path: Path, pem: bytes) -> None:
    path = tmp_path / "supernode.key"
    with pytest.raises(StateError, match="cannot authenticate a SuperNode"):
        write_openssh_private_key(path, pem)
    assert not path.exists()
