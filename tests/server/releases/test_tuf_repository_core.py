"""The coordinator's TUF repository value: versions, chains, rotations, refresh, immutability."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import Metadata, Root, Snapshot, Timestamp

from fedota.server.releases import (
    ROLES,
    InvalidTarget,
    KeyMismatch,
    RepositoryCorrupt,
    TufConfig,
    TufRepository,
    UnknownTarget,
    artifact_target,
    generate_signer,
)

NOW = dt.datetime(2030, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def _signers() -> dict[str, Signer]:
    return {role: generate_signer() for role in ROLES}


def _artifact(version: int, data: bytes = b"weights") -> object:
    return artifact_target(
        "digits",
        version,
        "fp32",
        hashlib.sha256(b"content" + data).hexdigest(),
        length=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


@pytest.fixture
def repo() -> TufRepository:
    return TufRepository.create(_signers(), NOW).repository


def _versions(repository: TufRepository) -> dict[str, int]:
    return {role: repository.metadata(role).version for role in ROLES}


def test_create_signs_version_one_of_every_role_with_its_expiry() -> None:
    signers = _signers()
    publication = TufRepository.create(signers, NOW)

    assert [(md.role, md.version) for md in publication.metadata] == [(role, 1) for role in ROLES]
    assert {key.role for key in publication.new_keys} == set(ROLES)
    config = TufConfig()
    for md in publication.metadata:
        assert md.expires == NOW + config.expiry(md.role)
    root = publication.repository.root()
    assert root.consistent_snapshot is True
    for role in ROLES:
        assert root.roles[role].keyids == [signers[role].public_key.keyid]
        assert root.roles[role].threshold == 1


def test_each_role_names_the_one_below_by_version_length_and_hash(repo: TufRepository) -> None:
    published = repo.update_targets(NOW, add=[_artifact(1)])
    after = published.repository
    timestamp = Metadata.from_bytes(after.metadata("timestamp").data).signed
    snapshot = Metadata.from_bytes(after.metadata("snapshot").data).signed
    assert isinstance(timestamp, Timestamp) and isinstance(snapshot, Snapshot)

    assert timestamp.snapshot_meta.version == after.metadata("snapshot").version
    assert timestamp.snapshot_meta.hashes == {"sha256": after.metadata("snapshot").sha256}
    assert timestamp.snapshot_meta.length == after.metadata("snapshot").length
    targets_meta = snapshot.meta["targets.json"]
    assert targets_meta.version == after.metadata("targets").version == 2
    assert targets_meta.hashes == {"sha256": after.metadata("targets").sha256}


def test_operations_return_a_new_repository_and_leave_the_old_one_as_it_was(
    repo: TufRepository,
) -> None:
    before = {role: repo.metadata(role) for role in ROLES}
    signers = {role: repo.signer(role) for role in ROLES}

    repo.update_targets(NOW, add=[_artifact(1)])
    repo.rotate_key("targets", generate_signer(), NOW)
    repo.refresh_expiring(NOW + dt.timedelta(days=400))

    assert {role: repo.metadata(role) for role in ROLES} == before
    assert {role: repo.signer(role) for role in ROLES} == signers
    assert repo.targets() == {}


def test_versions_only_go_up_by_one_per_publication(repo: TufRepository) -> None:
    first = repo.update_targets(NOW, add=[_artifact(1)]).repository
    second = first.update_targets(NOW, add=[_artifact(2, b"v2")]).repository
    third = second.update_targets(NOW, remove=["artifacts/digits/1/fp32.safetensors"]).repository

    assert _versions(first) == {"root": 1, "targets": 2, "snapshot": 2, "timestamp": 2}
    assert _versions(third) == {"root": 1, "targets": 4, "snapshot": 4, "timestamp": 4}
    assert list(third.targets()) == ["artifacts/digits/2/fp32.safetensors"]


def test_an_update_that_changes_nothing_publishes_nothing(repo: TufRepository) -> None:
    first = repo.update_targets(NOW, add=[_artifact(1)]).repository

    again = first.update_targets(NOW, add=[_artifact(1)])

    assert again.empty and again.repository is first


def test_a_replaced_target_is_a_new_version(repo: TufRepository) -> None:
    first = repo.update_targets(NOW, add=[_artifact(1, b"old")]).repository

    replaced = first.update_targets(NOW, add=[_artifact(1, b"new")]).repository

    assert replaced.targets()["artifacts/digits/1/fp32.safetensors"].length == 3
    assert replaced.metadata("targets").version == 3


def test_target_update_refusals(repo: TufRepository) -> None:
    with pytest.raises(UnknownTarget, match="no signed target"):
        repo.update_targets(NOW, remove=["artifacts/digits/1/fp32.safetensors"])
    with pytest.raises(InvalidTarget, match="two different targets"):
        repo.update_targets(NOW, add=[_artifact(1, b"a"), _artifact(1, b"b")])
    first = repo.update_targets(NOW, add=[_artifact(1)]).repository
    with pytest.raises(InvalidTarget, match="both added and removed"):
        first.update_targets(
            NOW, add=[_artifact(1)], remove=["artifacts/digits/1/fp32.safetensors"]
        )
    with pytest.raises(ValueError, match="naive"):
        repo.update_targets(NOW.replace(tzinfo=None), add=[_artifact(1)])


def test_root_rotation_is_signed_by_the_old_and_the_new_root_key(repo: TufRepository) -> None:
    old_key, new_key = repo.signer("root"), generate_signer()

    published = repo.rotate_key("root", new_key, NOW)

    assert [(md.role, md.version) for md in published.metadata] == [("root", 2)]
    assert published.retired_keyids == (old_key.public_key.keyid,)
    md = Metadata.from_bytes(published.metadata[0].data)
    assert set(md.signatures) == {old_key.public_key.keyid, new_key.public_key.keyid}
    new_root = md.signed
    assert isinstance(new_root, Root)
    # TUF 5.3.4: the threshold of the trusted root (v1) and of the new root (v2) are both met.
    result = new_root.get_root_verification_result(repo.root(), md.signed_bytes, md.signatures)
    assert result.verified
    assert old_key.public_key.keyid not in new_root.keys
    assert published.repository.signer("root") is new_key


@pytest.mark.parametrize(
    ("role", "republished"),
    [
        ("timestamp", ["root", "timestamp"]),
        ("snapshot", ["root", "snapshot", "timestamp"]),
        ("targets", ["root", "targets", "snapshot", "timestamp"]),
    ],
)
def test_a_role_rotation_lists_the_new_key_and_re_signs_the_role(
    repo: TufRepository, role: str, republished: list[str]
) -> None:
    new_key = generate_signer()

    published = repo.rotate_key(role, new_key, NOW)

    assert [md.role for md in published.metadata] == republished
    root_md = Metadata.from_bytes(published.metadata[0].data)
    assert set(root_md.signatures) == {repo.signer("root").public_key.keyid}
    re_signed = next(md for md in published.metadata if md.role == role)
    assert set(Metadata.from_bytes(re_signed.data).signatures) == {new_key.public_key.keyid}


@pytest.mark.parametrize("reuse", ["same", "other-role"])
def test_rotating_to_a_key_in_use_is_refused(repo: TufRepository, reuse: str) -> None:
    key = repo.signer("timestamp") if reuse == "same" else repo.signer("snapshot")

    with pytest.raises(KeyMismatch, match="already signs"):
        repo.rotate_key("timestamp", key, NOW)


def test_only_ed25519_keys_are_accepted() -> None:
    signers = _signers()
    signers["targets"] = CryptoSigner.generate_ecdsa()

    with pytest.raises(KeyMismatch, match="Ed25519"):
        TufRepository.create(signers, NOW)


def test_two_roles_may_not_share_a_key() -> None:
    signers = _signers()
    signers["snapshot"] = signers["timestamp"]

    with pytest.raises(KeyMismatch, match="key of its own"):
        TufRepository.create(signers, NOW)


def test_a_repository_whose_signers_are_not_the_listed_keys_is_refused(
    repo: TufRepository,
) -> None:
    files = {role: repo.metadata(role) for role in ROLES}
    signers = {role: repo.signer(role) for role in ROLES}
    signers["targets"] = generate_signer()

    with pytest.raises(KeyMismatch, match="targets"):
        TufRepository(files, signers)


def test_a_repository_whose_files_do_not_chain_is_refused(repo: TufRepository) -> None:
    later = repo.bump_snapshot(NOW).repository
    files = {role: later.metadata(role) for role in ROLES}
    files["snapshot"] = repo.metadata("snapshot")  # the timestamp names snapshot v2
    signers = {role: repo.signer(role) for role in ROLES}

    with pytest.raises(RepositoryCorrupt, match="snapshot"):
        TufRepository(files, signers)


@pytest.mark.parametrize(
    ("after", "republished"),
    [
        (dt.timedelta(hours=11), []),
        (dt.timedelta(hours=13), ["timestamp"]),
        (dt.timedelta(days=4), ["snapshot", "timestamp"]),
        (dt.timedelta(days=46), ["targets", "snapshot", "timestamp"]),
        (dt.timedelta(days=183), ["root", "targets", "snapshot", "timestamp"]),
    ],
)
def test_refresh_re_signs_what_is_due_and_what_must_name_it(
    repo: TufRepository, after: dt.timedelta, republished: list[str]
) -> None:
    published = repo.refresh_expiring(NOW + after)

    assert [md.role for md in published.metadata] == republished
    for md in published.metadata:
        assert md.version == 2
        assert md.expires == NOW + after + TufConfig().expiry(md.role)


def test_next_refresh_is_half_the_timestamp_lifetime(repo: TufRepository) -> None:
    assert repo.next_refresh_at() == NOW + dt.timedelta(hours=12)
    refreshed = repo.refresh_expiring(repo.next_refresh_at()).repository
    assert refreshed.next_refresh_at() == NOW + dt.timedelta(hours=24)


def test_config_refuses_unsafe_values() -> None:
    with pytest.raises(ValueError, match="timestamp_expiry"):
        TufConfig(timestamp_expiry=dt.timedelta(seconds=10))
    with pytest.raises(ValueError, match="refresh_fraction"):
        TufConfig(refresh_fraction=1.0)
