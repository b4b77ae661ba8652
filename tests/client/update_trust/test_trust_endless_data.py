"""Endless-data attacks: no file is read past its signed length or the device's cap.

Ported from python-tuf's test_updater_top_level_update.py (max_metadata_lengths) and the
endless-data attack of the TUF specification: a metadata file or target that keeps coming.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from tuf_simulator import Coordinator, SimulatedRepository, disk_state

from fedota.client.update import (
    OversizedData,
    RepositoryUnavailable,
    TrustConfig,
    TrustedUpdates,
    repository_path,
)

WEIGHTS = b"w" * 3000


class EndlessRepository(SimulatedRepository):
    """Serves `endless` paths as a stream that never stops (of `pattern` chunks)."""

    def __init__(self, base: SimulatedRepository, endless: str, pattern: bytes) -> None:
        super().__init__(files=base.files)
        self.endless = endless
        self.pattern = pattern
        self.chunks_sent = 0

    def _serve(self, url: str, offset: int) -> Iterator[bytes]:
        if repository_path(url) != self.endless:
            return super()._serve(url, offset)
        return self._forever()

    def _forever(self) -> Iterator[bytes]:
        for _ in itertools.count():
            self.chunks_sent += 1
            yield self.pattern


@pytest.mark.parametrize(
    ("path", "cap"),
    [
        ("metadata/2.root.json", "root_max_bytes"),
        ("metadata/timestamp.json", "timestamp_max_bytes"),
    ],
)
def test_unsized_metadata_beyond_the_device_cap_is_refused(
    publisher: Coordinator, update_dir: Path, path: str, cap: str
) -> None:
    config = TrustConfig(**{cap: 4096})
    publisher.server.serve(path, b" " * 4097)
    device = TrustedUpdates(
        update_dir, publisher.server, trust_root=publisher.first_root, config=config
    )

    with pytest.raises(OversizedData, match="more than the 4096 allowed"):
        device.refresh()

    assert {name for name in disk_state(device.metadata_dir) if "/" not in name} == {"root.json"}


@pytest.mark.parametrize("role", ["snapshot", "targets"])
def test_metadata_longer_than_its_signed_length_is_refused(
    publisher: Coordinator, device: TrustedUpdates, role: str
) -> None:
    signed = publisher.latest(role)
    # Trailing whitespace keeps it valid JSON with valid signatures: only the length betrays it.
    publisher.server.serve(f"metadata/{signed.filename}", signed.data + b" " * 64)

    with pytest.raises(OversizedData, match=f"more than the {signed.length} allowed"):
        device.refresh()

    assert not (device.metadata_dir / f"{role}.json").exists()


def test_a_target_longer_than_signed_is_cut_off_and_discarded(
    publisher: Coordinator, device: TrustedUpdates, tmp_path: Path
) -> None:
    spec = publisher.add_artifact(WEIGHTS)
    publisher.server.add_target(spec, WEIGHTS + b"and a payload appended")
    dest = tmp_path / "model.safetensors"

    with pytest.raises(OversizedData, match=f"signed {len(WEIGHTS)}"):
        device.download(spec.path, dest)

    assert not dest.exists()
    assert not dest.with_name(dest.name + ".part").exists()


def test_an_endless_target_stream_stops_at_the_signed_length(
    publisher: Coordinator, update_dir: Path, tmp_path: Path
) -> None:
    spec = publisher.add_artifact(WEIGHTS)
    endless = EndlessRepository(
        publisher.server, f"targets/{spec.served_path}", pattern=b"x" * 1000
    )
    device = TrustedUpdates(update_dir, endless, trust_root=publisher.first_root)
    dest = tmp_path / "model.safetensors"

    with pytest.raises(OversizedData):
        device.download(spec.path, dest)

    assert endless.chunks_sent == len(WEIGHTS) // 1000 + 1
    assert not dest.exists()
    assert not dest.with_name(dest.name + ".part").exists()


def test_an_endless_timestamp_stream_stops_at_the_cap(
    publisher: Coordinator, update_dir: Path
) -> None:
    endless = EndlessRepository(publisher.server, "metadata/timestamp.json", pattern=b" " * 1024)
    device = TrustedUpdates(update_dir, endless, trust_root=publisher.first_root)

    with pytest.raises(OversizedData):
        device.refresh()

    assert endless.chunks_sent == TrustConfig().timestamp_max_bytes // 1024 + 1


def test_a_stream_of_empty_chunks_is_a_failed_transfer(
    publisher: Coordinator, update_dir: Path
) -> None:
    endless = EndlessRepository(publisher.server, "metadata/timestamp.json", pattern=b"")
    device = TrustedUpdates(update_dir, endless, trust_root=publisher.first_root)

    with pytest.raises(RepositoryUnavailable, match="empty chunks"):
        device.refresh()

    assert endless.chunks_sent == 65


def test_a_signed_length_beyond_the_device_cap_is_not_downloaded(
    publisher: Coordinator, update_dir: Path, tmp_path: Path
) -> None:
    spec = publisher.add_artifact(WEIGHTS)
    device = TrustedUpdates(
        update_dir,
        publisher.server,
        trust_root=publisher.first_root,
        config=TrustConfig(max_target_bytes=len(WEIGHTS) - 1),
    )

    with pytest.raises(OversizedData, match="cap of"):
        device.download(spec.path, tmp_path / "model.safetensors")

    assert publisher.server.target_requests() == []
