"""Signing keys at rest: sealed under the coordinator secret, and every way that can go wrong."""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner

from fedota.server.releases import (
    SECRET_FILE,
    CoordinatorSecret,
    CoordinatorSecretError,
    SealedKey,
    SealedKeyTampered,
    WrongCoordinatorSecret,
    generate_signer,
)


@pytest.fixture
def secret(tmp_path: Path) -> CoordinatorSecret:
    return CoordinatorSecret.load_or_create(tmp_path)


@pytest.fixture
def signer() -> CryptoSigner:
    return generate_signer()


@pytest.fixture
def sealed(secret: CoordinatorSecret, signer: CryptoSigner) -> SealedKey:
    return secret.seal("targets", signer)


def test_a_sealed_key_unseals_to_a_signer_of_the_same_key(
    secret: CoordinatorSecret, signer: CryptoSigner, sealed: SealedKey
) -> None:
    unsealed = secret.unseal(sealed)

    payload = b"signed metadata"
    signer.public_key.verify_signature(unsealed.sign(payload), payload)
    assert unsealed.public_key == signer.public_key
    assert (sealed.role, sealed.keyid) == ("targets", signer.public_key.keyid)


def test_the_stored_form_holds_no_private_key_bytes(
    signer: CryptoSigner, sealed: SealedKey
) -> None:
    private = load_pem_private_key(signer.private_bytes, None)
    assert isinstance(private, Ed25519PrivateKey)
    raw = private.private_bytes_raw()
    stored = sealed.encrypted_private_key.encode()
    assert raw not in stored
    assert base64.b64encode(raw) not in stored
    assert raw.hex().encode() not in stored
    assert b"PRIVATE KEY" not in stored


def test_each_seal_uses_a_fresh_nonce(secret: CoordinatorSecret, signer: CryptoSigner) -> None:
    first = json.loads(secret.seal("root", signer).encrypted_private_key)
    second = json.loads(secret.seal("root", signer).encrypted_private_key)
    assert first["nonce"] != second["nonce"]
    assert first["ciphertext"] != second["ciphertext"]


def test_another_secret_is_named_as_the_wrong_secret(sealed: SealedKey, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    other = CoordinatorSecret.load_or_create(tmp_path / "other")

    with pytest.raises(WrongCoordinatorSecret, match=f"use the {SECRET_FILE}") as caught:
        other.unseal(sealed)

    assert caught.value.keyid == sealed.keyid


def _flip(text: str) -> str:
    data = bytearray(base64.b64decode(text))
    data[len(data) // 2] ^= 1
    return base64.b64encode(bytes(data)).decode()


def _edit_envelope(sealed: SealedKey, field: str, value: object) -> SealedKey:
    envelope = json.loads(sealed.encrypted_private_key)
    envelope[field] = value(envelope[field]) if callable(value) else value
    return replace(sealed, encrypted_private_key=json.dumps(envelope))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: _edit_envelope(s, "ciphertext", _flip),
        lambda s: _edit_envelope(s, "nonce", _flip),
        lambda s: _edit_envelope(s, "ciphertext", "not base64!"),
        lambda s: _edit_envelope(s, "format", "something-else"),
        lambda s: replace(s, encrypted_private_key="{"),
        lambda s: replace(s, role="root"),
        lambda s: replace(s, keyid="0" * 64),
        lambda s: replace(s, public_key={**s.public_key, "keyval": {"public": "00" * 32}}),
        lambda s: replace(s, public_key={"keytype": "ed25519"}),
    ],
    ids=[
        "ciphertext",
        "nonce",
        "ciphertext-encoding",
        "format",
        "envelope",
        "moved-to-another-role",
        "moved-to-another-keyid",
        "public-key-swapped",
        "public-key-broken",
    ],
)
def test_a_sealed_key_changed_at_rest_is_refused(
    secret: CoordinatorSecret, sealed: SealedKey, tamper: object
) -> None:
    changed = tamper(sealed)  # type: ignore[operator]

    with pytest.raises(SealedKeyTampered, match="changed at rest"):
        secret.unseal(changed)


def test_the_secret_file_is_created_private_and_loaded_again(tmp_path: Path) -> None:
    created = CoordinatorSecret.load_or_create(tmp_path)
    path = tmp_path / SECRET_FILE

    assert path.stat().st_mode & 0o777 == 0o600
    assert len(path.read_bytes()) == 32
    assert CoordinatorSecret.load(path).check_value == created.check_value
    assert CoordinatorSecret.load_or_create(tmp_path).check_value == created.check_value
    assert path.read_bytes().hex() not in repr(created)
    assert [p.name for p in tmp_path.iterdir()] == [SECRET_FILE]


def test_create_never_replaces_an_existing_secret(tmp_path: Path) -> None:
    CoordinatorSecret.create(tmp_path / SECRET_FILE)
    before = (tmp_path / SECRET_FILE).read_bytes()

    with pytest.raises(CoordinatorSecretError, match="already exists"):
        CoordinatorSecret.create(tmp_path / SECRET_FILE)

    assert (tmp_path / SECRET_FILE).read_bytes() == before


def _create_in(directory: str, start: Any, results: Any) -> None:
    start.wait(timeout=30)
    results.put(CoordinatorSecret.load_or_create(Path(directory)).check_value)


def test_processes_racing_to_create_the_secret_end_with_one(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    results, start = context.Queue(), context.Barrier(4)
    workers = [
        context.Process(target=_create_in, args=(str(tmp_path), start, results)) for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    try:
        checks = {results.get(timeout=60) for _ in workers}
    finally:
        for worker in workers:
            worker.join(timeout=60)
            if worker.is_alive():
                worker.kill()

    assert checks == {CoordinatorSecret.load(tmp_path / SECRET_FILE).check_value}


@pytest.mark.parametrize(
    ("content", "mode", "message"),
    [
        (os.urandom(32), 0o644, "must be 0600"),
        (os.urandom(31), 0o600, "must hold 32 bytes"),
        (None, None, "is missing"),
    ],
    ids=["readable-by-others", "short", "missing"],
)
def test_an_unusable_secret_file_is_refused(
    tmp_path: Path, content: bytes | None, mode: int | None, message: str
) -> None:
    path = tmp_path / SECRET_FILE
    if content is not None and mode is not None:
        path.write_bytes(content)
        path.chmod(mode)

    with pytest.raises(CoordinatorSecretError, match=message):
        CoordinatorSecret.load(path)
