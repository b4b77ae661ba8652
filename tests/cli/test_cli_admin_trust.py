"""How `fedota admin` trusts the coordinator: the CA pinned in the token, or --ca-cert."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_harness import Coordinator, Run
from cli_pki import ServerPki
from fake_admin import FakeAdmin, serving

from fedota.trust import API_KIND, new_token


def test_the_token_pin_is_enough(run: Run, coordinator: Coordinator) -> None:
    token = coordinator.api_token
    result = run("admin", "--coordinator", coordinator.address, "--token", token, "cohorts", "list")

    assert result.code == 0, result.err
    assert len(coordinator.fake.calls("ListCohorts")) == 1


def test_a_token_pinning_another_ca_is_never_sent(
    run: Run, coordinator: Coordinator, other_pki: ServerPki
) -> None:
    token = new_token(API_KIND, other_pki.ca_pem)

    address = coordinator.address
    result = run("admin", "--coordinator", address, "--token", str(token), "cohorts", "list")

    assert result.code == 3
    assert result.err == (
        f"fedota: error: {coordinator.address} is not the coordinator this token was made for: "
        f"no certificate in its chain has SHA-256 {token.ca_sha256[:16]}…\n"
    )
    assert coordinator.fake.authorizations == []


def test_a_leaf_not_issued_by_the_pinned_ca_is_refused(
    run: Run, pki: ServerPki, other_pki: ServerPki
) -> None:
    # An impostor replays the real CA certificate in its chain, behind a leaf of its own.
    token = str(new_token(API_KIND, pki.ca_pem))
    impostor = FakeAdmin(api_token=token, ca_pem=pki.ca_pem)
    chain = other_pki.leaf_pem + pki.ca_pem
    with serving(impostor, other_pki.leaf_key_pem, chain) as port:
        address = f"127.0.0.1:{port}"
        result = run("admin", "--coordinator", address, "--token", token, "cohorts", "list")

    assert result.code == 3
    assert "not issued by the pinned CA" in result.err
    assert impostor.authorizations == []


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_ca_file_replaces_the_pin(
    run: Run, coordinator: Coordinator, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    args = ["admin", "--coordinator", coordinator.address, "--token", coordinator.api_token]
    if how == "flag":
        args += ["--ca-cert", str(coordinator.ca_path)]
    else:
        monkeypatch.setenv("FEDOTA_CA_CERT", str(coordinator.ca_path))

    result = run(*args, "cohorts", "list")

    assert result.code == 0, result.err


def test_a_ca_file_of_another_fleet_fails_the_handshake(
    run: Run, coordinator: Coordinator, other_pki: ServerPki, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(other_pki.ca_pem)

    result = run(
        "admin",
        "--coordinator",
        coordinator.address,
        "--token",
        coordinator.api_token,
        "--ca-cert",
        str(other_ca),
        "cohorts",
        "list",
    )

    assert result.code == 3
    assert result.err.startswith(
        f"fedota: error: coordinator at {coordinator.address} failed TLS verification "
        "(CERTIFICATE_VERIFY_FAILED"
    )
    assert result.err.count("\n") == 1
    assert coordinator.fake.authorizations == []


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "No such file or directory"), (b"not a certificate", "not a PEM certificate")],
)
def test_an_unusable_ca_file(
    run: Run, coordinator: Coordinator, tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)

    result = run(
        "admin",
        "--coordinator",
        coordinator.address,
        "--token",
        coordinator.api_token,
        "--ca-cert",
        str(path),
        "cohorts",
        "list",
    )

    assert result.code == 2
    assert result.err == f"fedota: error: --ca-cert {path}: {message}\n"
