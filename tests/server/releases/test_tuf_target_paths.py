"""The target contract both sides share: paths, custom fields, and what the device refuses."""

from __future__ import annotations

import hashlib

import pytest

from fedota.server.releases import (
    InvalidTarget,
    TargetSpec,
    artifact_target,
    parse_served_path,
    patch_target,
    served_path,
)
from fedota.update_targets import ArtifactTarget, PatchTarget, TargetInfoError, parse_target

A = "a" * 64
B = "b" * 64
BLOB = hashlib.sha256(b"bytes").hexdigest()


def test_artifact_and_patch_paths_and_custom_fields() -> None:
    artifact = artifact_target("digits", 2, "int8", B, length=10, sha256=BLOB)
    patch = patch_target(A, artifact.info, length=3, sha256=BLOB)  # type: ignore[arg-type]

    assert artifact.path == "artifacts/digits/2/int8.safetensors"
    assert patch.path == f"patches/digits/int8/{A}-{B}.patch"
    assert patch.info.custom() == {
        "fedota": {
            "kind": "patch",
            "family": "digits",
            "variant": "int8",
            "base_content_sha256": A,
            "target_content_sha256": B,
            "target_path": "artifacts/digits/2/int8.safetensors",
        }
    }
    for spec in (artifact, patch):
        target_file = spec.target_file()
        assert target_file.hashes == {"sha256": BLOB}
        assert TargetSpec.from_target_file(target_file) == spec
        assert parse_target(spec.path, target_file.custom) == spec.info


def test_the_mcu_variant_ships_its_flash_export() -> None:
    assert ArtifactTarget("digits", 1, "mcu-int8", A).path == "artifacts/digits/1/mcu-int8.bin"


def test_served_names_carry_the_hash_and_parse_back() -> None:
    spec = artifact_target("digits", 2, "fp32", B, length=1, sha256=BLOB)

    assert spec.served_path == f"artifacts/digits/2/{BLOB}.fp32.safetensors"
    assert served_path("top", BLOB) == f"{BLOB}.top"
    assert parse_served_path(spec.served_path) == (spec.path, BLOB)
    with pytest.raises(InvalidTarget):
        parse_served_path("artifacts/digits/2/fp32.safetensors")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"family": "Digits"}, "family"),
        ({"family": "../etc"}, "family"),
        ({"version": 0}, "version"),
        ({"version": True}, "version"),
        ({"version": "2"}, "version"),
        ({"variant": "int2"}, "variant"),
        ({"content_sha256": "A" * 64}, "content_sha256"),
        ({"kind": "script"}, "kind"),
    ],
)
def test_invalid_artifact_fields_are_refused(fields: dict[str, object], message: str) -> None:
    custom = {
        "fedota": {
            "kind": "artifact",
            "family": "digits",
            "version": 2,
            "variant": "int8",
            "content_sha256": B,
            **fields,
        }
    }
    with pytest.raises(TargetInfoError, match=message):
        parse_target("artifacts/digits/2/int8.safetensors", custom)


@pytest.mark.parametrize(
    ("path", "custom"),
    [
        ("artifacts/digits/3/int8.safetensors", None),
        ("artifacts/digits/2/int8.bin", None),
        ("artifacts/digits/2/int8.safetensors", {"other": {}}),
        ("artifacts/digits/2/int8.safetensors", "not a mapping"),
    ],
)
def test_a_path_that_is_not_the_one_the_fields_name_is_refused(path: str, custom: object) -> None:
    good = ArtifactTarget("digits", 2, "int8", B).custom()
    with pytest.raises(TargetInfoError):
        parse_target(path, good if custom is None else custom)


def test_a_patch_must_produce_an_artifact_of_its_family_and_variant() -> None:
    with pytest.raises(TargetInfoError, match="target_path"):
        PatchTarget("digits", "int8", A, B, "artifacts/other/2/int8.safetensors")
    with pytest.raises(TargetInfoError, match="same"):
        PatchTarget("digits", "int8", A, A, "artifacts/digits/2/int8.safetensors")


@pytest.mark.parametrize(
    ("length", "sha256", "message"),
    [(-1, BLOB, "length"), (True, BLOB, "length"), (1, "x", "sha256"), (2**51, BLOB, "length")],
)
def test_a_spec_needs_a_sane_length_and_a_sha256(length: int, sha256: str, message: str) -> None:
    with pytest.raises(InvalidTarget, match=message):
        artifact_target("digits", 1, "fp32", A, length=length, sha256=sha256)
