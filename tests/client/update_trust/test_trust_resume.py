"""A cut target download resumes from its offset and still yields only the verified target."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tuf_simulator import Coordinator

from fedota.client.update import (
    HashMismatch,
    RepositoryUnavailable,
    TrustedUpdates,
    partial_path,
)

WEIGHTS = os.urandom(5000)


@pytest.fixture
def spec_path(publisher: Coordinator) -> str:
    return publisher.add_artifact(WEIGHTS).path


def _served(publisher: Coordinator, path: str) -> str:
    return f"targets/{publisher.repository.targets()[path].served_path}"


@pytest.mark.parametrize("resumable", [True, False], ids=["from-offset", "refetch-and-skip"])
def test_a_cut_stream_resumes_from_its_offset(
    publisher: Coordinator,
    device: TrustedUpdates,
    spec_path: str,
    tmp_path: Path,
    resumable: bool,
) -> None:
    served = _served(publisher, spec_path)
    publisher.server.cut_after[served] = 2500
    publisher.server.resumable = resumable
    dest = tmp_path / "model.safetensors"

    with pytest.raises(RepositoryUnavailable, match="ConnectionResetError"):
        device.download(spec_path, dest)
    assert not dest.exists()
    assert partial_path(dest).read_bytes() == WEIGHTS[:2500]
    assert partial_path(dest).stat().st_mode & 0o777 == 0o600

    seen: list[tuple[int, int]] = []
    device.download(spec_path, dest, progress=lambda done, total: seen.append((done, total)))

    assert dest.read_bytes() == WEIGHTS
    assert not partial_path(dest).exists()
    assert seen[0][0] > 2500 and seen[-1] == (len(WEIGHTS), len(WEIGHTS))
    second = 2500 if resumable else 0
    assert publisher.server.target_requests() == [(served, 0), (served, second)]


def test_a_resumed_download_over_a_bad_prefix_is_refused_then_restarts(
    publisher: Coordinator, device: TrustedUpdates, spec_path: str, tmp_path: Path
) -> None:
    dest = tmp_path / "model.safetensors"
    partial_path(dest).write_bytes(b"\0" * 1000)  # left by an earlier, lying server

    with pytest.raises(HashMismatch):
        device.download(spec_path, dest)
    assert not dest.exists()
    assert not partial_path(dest).exists()

    device.download(spec_path, dest)
    assert dest.read_bytes() == WEIGHTS


def test_a_part_file_longer_than_signed_is_discarded(
    publisher: Coordinator, device: TrustedUpdates, spec_path: str, tmp_path: Path
) -> None:
    dest = tmp_path / "model.safetensors"
    partial_path(dest).write_bytes(WEIGHTS + b"more")

    device.download(spec_path, dest)

    assert dest.read_bytes() == WEIGHTS
    assert publisher.server.target_requests() == [(_served(publisher, spec_path), 0)]


def test_a_complete_part_file_is_verified_and_moved_without_a_download(
    publisher: Coordinator, device: TrustedUpdates, spec_path: str, tmp_path: Path
) -> None:
    dest = tmp_path / "model.safetensors"
    partial_path(dest).write_bytes(WEIGHTS)  # a crash came between the last byte and the rename

    device.download(spec_path, dest)

    assert dest.read_bytes() == WEIGHTS
    assert publisher.server.target_requests() == []


def test_a_target_missing_on_the_server_is_a_retryable_failure(
    publisher: Coordinator, device: TrustedUpdates, spec_path: str, tmp_path: Path
) -> None:
    del publisher.server.files[_served(publisher, spec_path)]

    with pytest.raises(RepositoryUnavailable) as caught:
        device.download(spec_path, tmp_path / "model.safetensors")

    assert caught.value.missing
