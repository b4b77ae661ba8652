"""The fleet CA on disk, device and server certificates, and CSR checks (no database, no socket)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import stat
from pathlib import Path

import pytest
from coordinator_support import make_csr, new_key
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from fedota.server.csr import parse_device_csr
from fedota.server.errors import InvalidArgument, StartupError
from fedota.server.files import ensure_private_dir, write_atomic
from fedota.server.pki import (
    CA_CERT,
    CA_KEY,
    SERVER_CERT,
    SERVER_KEY,
    create_ca,
    ensure_server_certificate,
    issue_device_certificate,
    load_or_create_ca,
    parse_san,
    public_key_sha256,
)
from fedota.storage.types import utcnow

NOW = utcnow().replace(microsecond=0)
DAY = dt.timedelta(days=1)
SANS = [parse_san("127.0.0.1"), parse_san("localhost")]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_ca_may_sign_end_entity_certificates_only() -> None:
    ca = create_ca("default", 3650 * DAY, NOW)

    certificate = ca.certificate
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    assert certificate.not_valid_after_utc - NOW == 3650 * DAY
    certificate.verify_directly_issued_by(certificate)
    assert isinstance(ca.key.curve, ec.SECP256R1)


def test_the_ca_is_created_once_with_a_private_key(tmp_path: Path) -> None:
    created, was_created = load_or_create_ca(tmp_path, "default", 3650 * DAY, NOW)
    loaded, again = load_or_create_ca(tmp_path, "default", 3650 * DAY, NOW)

    assert (was_created, again) == (True, False)
    assert loaded.sha256 == created.sha256
    assert _mode(tmp_path / CA_KEY) == 0o600
    assert (tmp_path / CA_KEY).read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert sorted(p.name for p in tmp_path.iterdir()) == [CA_CERT, CA_KEY]


@pytest.mark.parametrize("problem", ["key-missing", "cert-missing", "readable-key", "mismatch"])
def test_a_broken_ca_directory_is_refused(tmp_path: Path, problem: str) -> None:
    load_or_create_ca(tmp_path, "default", 3650 * DAY, NOW)
    if problem == "key-missing":
        (tmp_path / CA_KEY).unlink()
    elif problem == "cert-missing":
        (tmp_path / CA_CERT).unlink()
    elif problem == "readable-key":
        os.chmod(tmp_path / CA_KEY, 0o644)
    else:
        other = tmp_path / "other"
        other.mkdir()
        load_or_create_ca(other, "default", 3650 * DAY, NOW)
        (tmp_path / CA_CERT).write_bytes((other / CA_CERT).read_bytes())
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}

    with pytest.raises(StartupError):
        load_or_create_ca(tmp_path, "default", 3650 * DAY, NOW)

    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_a_device_certificate_is_for_client_auth_and_names_the_device() -> None:
    ca = create_ca("default", 3650 * DAY, NOW)
    key = new_key()

    certificate = issue_device_certificate(ca, key.public_key(), "dev_1234", NOW, NOW + 30 * DAY)

    certificate.verify_directly_issued_by(ca.certificate)
    extensions = certificate.extensions
    assert certificate.subject.rfc4514_string() == "CN=dev_1234"
    assert list(extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    usage = extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    assert not extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:fedota:device:dev_1234"]
    assert certificate.not_valid_after_utc - certificate.not_valid_before_utc == 30 * DAY
    assert public_key_sha256(certificate.public_key()) == public_key_sha256(key.public_key())  # type: ignore[arg-type]


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()])
def test_csrs_of_the_allowed_curves_are_accepted(curve: ec.EllipticCurve) -> None:
    key = new_key(curve)

    parsed = parse_device_csr(make_csr(key), 16 * 1024)

    assert parsed.sha256 == public_key_sha256(key.public_key())


@pytest.mark.parametrize(
    ("key", "rule"),
    [
        (rsa.generate_private_key(65537, 2048), "got RSA-2048"),
        (ed25519.Ed25519PrivateKey.generate(), "got Ed25519"),
        (ec.generate_private_key(ec.SECP256K1()), "got EC secp256k1"),
    ],
    ids=["rsa", "ed25519", "secp256k1"],
)
def test_csrs_of_other_keys_are_refused(key: object, rule: str) -> None:
    with pytest.raises(InvalidArgument, match=rule) as raised:
        parse_device_csr(make_csr(key), 16 * 1024)

    assert raised.value.field == "csr_pem"


def test_the_server_certificate_is_kept_until_its_sans_change(tmp_path: Path) -> None:
    ca = create_ca("default", 3650 * DAY, NOW)

    key_pem, chain = ensure_server_certificate(tmp_path, ca, SANS, 365 * DAY, 7 * DAY, NOW)
    again = ensure_server_certificate(tmp_path, ca, list(reversed(SANS)), 365 * DAY, 7 * DAY, NOW)
    more = [*SANS, parse_san("coordinator.example")]
    changed = ensure_server_certificate(tmp_path, ca, more, 365 * DAY, 7 * DAY, NOW)

    assert again == (key_pem, chain)
    assert changed != (key_pem, chain)
    leaf, ca_in_chain = x509.load_pem_x509_certificates(changed[1])
    assert ca_in_chain == ca.certificate
    leaf.verify_directly_issued_by(ca.certificate)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "coordinator.example"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    assert _mode(tmp_path / SERVER_KEY) == 0o600
    assert (tmp_path / SERVER_CERT).read_bytes() == leaf.public_bytes(serialization.Encoding.PEM)


def test_the_server_certificate_is_reissued_a_week_before_expiry(tmp_path: Path) -> None:
    ca = create_ca("default", 3650 * DAY, NOW)
    first = ensure_server_certificate(tmp_path, ca, SANS, 365 * DAY, 7 * DAY, NOW)

    still = ensure_server_certificate(tmp_path, ca, SANS, 365 * DAY, 7 * DAY, NOW + 357 * DAY)
    renewed = ensure_server_certificate(tmp_path, ca, SANS, 365 * DAY, 7 * DAY, NOW + 359 * DAY)

    assert still == first
    assert renewed != first


@pytest.mark.parametrize("text", ["", "two words", "http://x", "a/b"])
def test_a_san_must_be_an_ip_or_dns_name(text: str) -> None:
    with pytest.raises(ValueError, match="neither an IP address nor a DNS name"):
        parse_san(text)


def test_files_are_written_whole_with_their_mode_and_no_leftovers(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    ensure_private_dir(directory)

    write_atomic(directory / "secret", b"s3cret")
    write_atomic(directory / "public", b"hello", 0o644)
    write_atomic(directory / "secret", b"rotated")

    assert _mode(directory) == 0o700
    assert _mode(directory / "secret") == 0o600
    assert _mode(directory / "public") == 0o644
    assert (directory / "secret").read_bytes() == b"rotated"
    assert sorted(p.name for p in directory.iterdir()) == ["public", "secret"]
