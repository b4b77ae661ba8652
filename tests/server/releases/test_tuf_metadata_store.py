"""The repository in the database and blob store: one transaction per publication, keys sealed,
concurrent publishers serialised by the (role, version) constraint. SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from fedota.server.releases import (
    ROLES,
    ConcurrentPublish,
    CoordinatorSecret,
    MetadataStore,
    RepositoryAlreadyInitialized,
    RepositoryCorrupt,
    RepositoryNotInitialized,
    TargetSpec,
    TufRepository,
    WrongCoordinatorSecret,
    artifact_target,
    generate_signer,
)
from fedota.storage.db import Database
from fedota.storage.local_blobs import LocalBlobStore
from fedota.storage.models import AuditEvent, SigningKey, TufMetadata

NOW = dt.datetime.now(dt.UTC)


def _artifact(version: int) -> TargetSpec:
    data = f"weights v{version}".encode()
    return artifact_target(
        "digits",
        version,
        "int8",
        hashlib.sha256(b"content" + data).hexdigest(),
        length=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _files(repository: TufRepository) -> dict[str, bytes]:
    return {role: repository.metadata(role).data for role in ROLES}


def test_nothing_to_load_before_initialisation(store: MetadataStore) -> None:
    with pytest.raises(RepositoryNotInitialized):
        store.load()
    assert store.read("timestamp") is None


def test_an_initialised_repository_loads_back_byte_for_byte(
    store: MetadataStore, database: Database
) -> None:
    created = store.initialize(NOW)

    loaded = store.load()

    assert _files(loaded) == _files(created)
    for role in ROLES:
        assert loaded.signer(role).public_key == created.signer(role).public_key
    with database.session() as session:
        keys = session.scalars(select(SigningKey)).all()
        assert sorted(key.role for key in keys) == sorted(ROLES)
        assert all(key.retired_at is None for key in keys)
        events = session.scalars(select(AuditEvent.action)).all()
        assert events == ["tuf.initialize"]
    with pytest.raises(RepositoryAlreadyInitialized):
        store.initialize(NOW)
    assert _files(store.load_or_initialize(NOW)) == _files(created)


def test_published_files_are_served_by_name(store: MetadataStore) -> None:
    store.initialize(NOW)
    published = store.update(lambda repo: repo.update_targets(NOW, add=[_artifact(1)]))

    assert [(md.role, md.version) for md in published.metadata] == [
        ("targets", 2),
        ("snapshot", 2),
        ("timestamp", 2),
    ]
    assert store.read_file("timestamp.json") == published.metadata[2].data
    assert store.read_file("2.targets.json") == published.metadata[0].data
    assert store.read_file("1.targets.json") is not None
    assert store.read_file("1.root.json") == store.read("root", 1)
    for name in ("2.root.json", "3.snapshot.json", "1.timestamp.json", "../x", "root.json"):
        assert store.read_file(name) is None
    assert store.latest_version("targets") == 2


def test_a_key_rotation_stores_the_new_key_and_retires_the_old(
    store: MetadataStore, database: Database
) -> None:
    old = store.initialize(NOW).signer("timestamp").public_key.keyid
    new_key = generate_signer()

    store.update(lambda repo: repo.rotate_key("timestamp", new_key, NOW))

    loaded = store.load()
    assert loaded.signer("timestamp").public_key.keyid == new_key.public_key.keyid
    payload = b"x"
    new_key.public_key.verify_signature(loaded.signer("timestamp").sign(payload), payload)
    with database.session() as session:
        retired = session.scalars(select(SigningKey).where(SigningKey.keyid == old)).one()
        assert retired.retired_at is not None
        versions = dict(
            session.execute(
                select(TufMetadata.role, func.max(TufMetadata.version)).group_by(TufMetadata.role)
            ).all()
        )
    assert versions == {"root": 2, "targets": 1, "snapshot": 1, "timestamp": 2}


def test_the_loser_of_a_race_stores_nothing_and_wins_on_retry(
    store: MetadataStore, database: Database
) -> None:
    store.initialize(NOW)
    stale = store.load()
    store.update(lambda repo: repo.update_targets(NOW, add=[_artifact(1)]))
    with database.session() as session:
        rows_before = session.scalar(select(func.count()).select_from(TufMetadata))

    with pytest.raises(ConcurrentPublish, match="reload the repository") as caught:
        store.publish(stale.rotate_key("targets", generate_signer(), NOW))

    assert (caught.value.role, caught.value.version) == ("targets", 2)
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(TufMetadata)) == rows_before
        assert session.scalar(select(func.count()).select_from(SigningKey)) == len(ROLES)
    # `update` reloads the fresh state, so the same change now lands after the other one.
    store.update(lambda repo: repo.rotate_key("targets", generate_signer(), NOW))
    assert "artifacts/digits/1/int8.safetensors" in store.load().targets()


def test_update_retries_after_a_lost_race(store: MetadataStore) -> None:
    store.initialize(NOW)
    calls = 0

    def change(repo: TufRepository):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 1:  # another replica publishes between our load and our publish
            store.publish(repo.bump_timestamp(NOW))
        return repo.update_targets(NOW, add=[_artifact(1)])

    published = store.update(change)

    assert calls == 2
    assert published.metadata[-1].version == 3
    assert list(store.load().targets()) == ["artifacts/digits/1/int8.safetensors"]


def test_concurrent_publishers_all_land_with_contiguous_versions(
    store: MetadataStore, database: Database
) -> None:
    store.initialize(NOW)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def publish(version: int) -> None:
        try:
            start.wait(timeout=30)
            store.update(
                lambda repo: repo.update_targets(NOW, add=[_artifact(version)]), attempts=20
            )
        except BaseException as e:  # reported below, with the thread's own error
            errors.append(e)

    threads = [threading.Thread(target=publish, args=(v,)) for v in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors
    assert sorted(store.load().targets()) == [
        f"artifacts/digits/{v}/int8.safetensors" for v in range(1, 5)
    ]
    with database.session() as session:
        versions = session.scalars(
            select(TufMetadata.version).where(TufMetadata.role == "timestamp")
        ).all()
    assert sorted(versions) == list(range(1, 6))


def test_a_store_with_another_secret_cannot_load(
    store: MetadataStore, database: Database, blobs: LocalBlobStore, tmp_path: Path
) -> None:
    store.initialize(NOW)
    (tmp_path / "elsewhere").mkdir()
    other = MetadataStore(database, blobs, CoordinatorSecret.load_or_create(tmp_path / "elsewhere"))

    with pytest.raises(WrongCoordinatorSecret):
        other.load()


def test_a_changed_metadata_blob_is_corruption(store: MetadataStore, blobs: LocalBlobStore) -> None:
    created = store.initialize(NOW)
    path = blobs.path_of(created.metadata("snapshot").sha256)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b'"version":1', b'"version":7'))

    with pytest.raises(RepositoryCorrupt, match="snapshot v1"):
        store.load()


def test_a_missing_signing_key_is_corruption(store: MetadataStore, database: Database) -> None:
    created = store.initialize(NOW)
    with database.transaction() as session:
        session.execute(
            SigningKey.__table__.delete().where(
                SigningKey.keyid == created.signer("snapshot").public_key.keyid
            )
        )

    with pytest.raises(RepositoryCorrupt, match="snapshot key"):
        store.load()


def test_work_joined_to_the_publication_commits_or_rolls_back_with_it(
    store: MetadataStore, database: Database
) -> None:
    store.initialize(NOW)

    def fail(session, publication):  # type: ignore[no-untyped-def]
        raise RuntimeError("the release row could not be written")

    with pytest.raises(RuntimeError):
        store.update(lambda repo: repo.bump_timestamp(NOW), also=fail)

    assert store.latest_version("timestamp") == 1
