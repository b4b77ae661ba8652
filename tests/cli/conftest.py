"""Fixtures for the operator CLI: a fake Admin service over real TLS and a way to run the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_harness import Coordinator, Result, Run
from cli_pki import ServerPki, make_pki
from fake_admin import FakeAdmin, serving

from fedota.cli.main import main
from fedota.trust import API_KIND, new_token


@pytest.fixture(scope="session")
def pki() -> ServerPki:
    return make_pki()


@pytest.fixture(scope="session")
def other_pki() -> ServerPki:
    """A second, unrelated fleet CA."""
    return make_pki("some other fleet CA")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The operator's own settings must not leak into the tests; a fixed width keeps tables whole.
    for name in ("FEDOTA_COORDINATOR", "FEDOTA_TOKEN", "FEDOTA_CA_CERT", "COLUMNS", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def coordinator(pki: ServerPki, tmp_path: Path) -> Iterator[Coordinator]:
    api_token = str(new_token(API_KIND, pki.ca_pem))
    fake = FakeAdmin(api_token=api_token, ca_pem=pki.ca_pem)
    ca_path = tmp_path / "fleet-ca.pem"
    ca_path.write_bytes(pki.ca_pem)
    with serving(fake, pki.leaf_key_pem, pki.chain_pem) as port:
        yield Coordinator(fake, f"127.0.0.1:{port}", api_token, ca_path, pki)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """Run `fedota ARGS...` in this process; return its exit code, stdout and stderr."""

    def run_cli(*args: str) -> Result:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's own usage errors
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run_cli


@pytest.fixture
def admin(run: Run, coordinator: Coordinator) -> Run:
    """Run `fedota admin --coordinator ... --token ... ARGS...` against the fake coordinator."""

    def run_admin(*args: str) -> Result:
        connection = ("--coordinator", coordinator.address, "--token", coordinator.api_token)
        return run("admin", *connection, *args)

    return run_admin


@pytest.fixture
def admin_of(run: Run, real: object) -> Run:
    """`fedota admin ARGS...` against the module's real coordinator (its `real` fixture), with
    the coordinator's first admin token."""
    token = real.admin_token  # type: ignore[attr-defined]
    port = real.public.port  # type: ignore[attr-defined]
    assert token is not None

    def run_admin(*args: str) -> Result:
        return run("admin", "--coordinator", f"127.0.0.1:{port}", "--token", token, *args)

    return run_admin
