"""What fedota's signed TUF targets are: their paths and the `custom` fields the targets role signs.

Shared by the coordinator, which writes them into targets metadata, and the device, which reads
them back after python-tuf verified the signatures; one definition, so the two never drift.

Target paths (TUF `targetpath`; with consistent snapshots the served file is
`<dir>/<sha256>.<basename>`):

    artifacts/<family>/<version>/<variant>.safetensors   (`.bin` for the mcu-int8 flash export)
    patches/<family>/<variant>/<base_content_sha256>-<target_content_sha256>.patch

`custom` is `{"fedota": {...}}`: for an artifact its family, version, variant and canonical
content hash (what the device checks its slot against after applying); for a patch the content
hashes it goes from and to, and the artifact path it produces. Each path must agree with its
fields, so a signed entry cannot describe one model under another model's name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

VARIANTS = ("fp32", "int8", "int4", "mcu-int8")
# Lower-case letters, digits, '.', '_' and '-', starting with a letter or digit: one path segment.
FAMILY_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ARTIFACT_PATH = re.compile(
    r"artifacts/(?P<family>[^/]+)/(?P<version>[1-9][0-9]{0,9})/(?P<variant>[^/.]+)"
    r"\.(?P<suffix>safetensors|bin)"
)
CUSTOM_KEY = "fedota"
MAX_VERSION = 2**31 - 1


class TargetInfoError(ValueError):
    """A target path or its `custom` fields break the contract; the message names the field."""


@dataclass(frozen=True)
class ArtifactTarget:
    """A full model artifact: one variant of one version of a family."""

    family: str
    version: int
    variant: str
    content_sha256: str

    def __post_init__(self) -> None:
        _check_family(self.family)
        if (
            isinstance(self.version, bool)
            or not isinstance(self.version, int)
            or not 1 <= self.version <= MAX_VERSION
        ):
            raise TargetInfoError(
                f"version must be an integer in 1..{MAX_VERSION}, got {self.version!r}"
            )
        _check_variant(self.variant)
        _check_sha256("content_sha256", self.content_sha256)

    @property
    def path(self) -> str:
        return artifact_path(self.family, self.version, self.variant)

    def custom(self) -> dict[str, Any]:
        """The `custom` field of its TargetFile (a new dict each call)."""
        return {
            CUSTOM_KEY: {
                "kind": "artifact",
                "family": self.family,
                "version": self.version,
                "variant": self.variant,
                "content_sha256": self.content_sha256,
            }
        }


@dataclass(frozen=True)
class PatchTarget:
    """A differential patch from one artifact's content to another's (same family and variant)."""

    family: str
    variant: str
    base_content_sha256: str
    target_content_sha256: str
    target_path: str

    def __post_init__(self) -> None:
        _check_family(self.family)
        _check_variant(self.variant)
        _check_sha256("base_content_sha256", self.base_content_sha256)
        _check_sha256("target_content_sha256", self.target_content_sha256)
        if self.base_content_sha256 == self.target_content_sha256:
            raise TargetInfoError("a patch must go from one content hash to another, got the same")
        path = self.target_path
        match = _ARTIFACT_PATH.fullmatch(path) if isinstance(path, str) else None
        if (
            match is None
            or (match["family"], match["variant"]) != (self.family, self.variant)
            or match["suffix"] != artifact_suffix(self.variant)
        ):
            raise TargetInfoError(
                f"target_path must be an artifact path of family {self.family!r} and variant "
                f"{self.variant!r}, got {self.target_path!r}"
            )

    @property
    def path(self) -> str:
        return (
            f"patches/{self.family}/{self.variant}/"
            f"{self.base_content_sha256}-{self.target_content_sha256}.patch"
        )

    def custom(self) -> dict[str, Any]:
        """The `custom` field of its TargetFile (a new dict each call)."""
        return {
            CUSTOM_KEY: {
                "kind": "patch",
                "family": self.family,
                "variant": self.variant,
                "base_content_sha256": self.base_content_sha256,
                "target_content_sha256": self.target_content_sha256,
                "target_path": self.target_path,
            }
        }


FedotaTarget = ArtifactTarget | PatchTarget


def parse_target(path: str, custom: object) -> FedotaTarget:
    """Read a signed target's `custom` fields and check them against its path.

    Raises:
        TargetInfoError: `custom` is not `{"fedota": {...}}` of a known kind with every field
            valid, or the path is not the one those fields name.
    """
    if not isinstance(custom, Mapping) or not isinstance(custom.get(CUSTOM_KEY), Mapping):
        raise TargetInfoError(f"target {path!r}: custom must hold a {CUSTOM_KEY!r} object")
    fields: Mapping[str, Any] = custom[CUSTOM_KEY]
    kind = fields.get("kind")
    target: FedotaTarget
    if kind == "artifact":
        target = ArtifactTarget(
            family=_field(fields, "family", str),
            version=_field(fields, "version", int),
            variant=_field(fields, "variant", str),
            content_sha256=_field(fields, "content_sha256", str),
        )
    elif kind == "patch":
        target = PatchTarget(
            family=_field(fields, "family", str),
            variant=_field(fields, "variant", str),
            base_content_sha256=_field(fields, "base_content_sha256", str),
            target_content_sha256=_field(fields, "target_content_sha256", str),
            target_path=_field(fields, "target_path", str),
        )
    else:
        raise TargetInfoError(f"target {path!r}: kind must be 'artifact' or 'patch', got {kind!r}")
    if target.path != path:
        raise TargetInfoError(f"target {path!r}: its fields name the path {target.path!r}")
    return target


def artifact_path(family: str, version: int, variant: str) -> str:
    """`artifacts/<family>/<version>/<variant>.<suffix>` (no checks: see ArtifactTarget)."""
    return f"artifacts/{family}/{version}/{variant}.{artifact_suffix(variant)}"


def artifact_suffix(variant: str) -> str:
    """`bin` for the mcu-int8 flash export, `safetensors` for every other variant."""
    return "bin" if variant == "mcu-int8" else "safetensors"


def _field(fields: Mapping[str, Any], name: str, kind: type) -> Any:
    value = fields.get(name)
    # bool is an int to Python but never a version number.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TargetInfoError(f"{name} must be a {kind.__name__}, got {value!r}")
    return value


def _check_family(family: object) -> None:
    if not isinstance(family, str) or FAMILY_NAME.fullmatch(family) is None:
        raise TargetInfoError(
            f"family must be 1 to 63 of a-z, 0-9, '.', '_', '-' starting with a letter or digit, "
            f"got {family!r}"
        )


def _check_variant(variant: object) -> None:
    if variant not in VARIANTS:
        raise TargetInfoError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")


def _check_sha256(name: str, value: object) -> None:
    if not isinstance(value, str) or _SHA256.fullmatch(value) is None:
        raise TargetInfoError(f"{name} must be 64 lower-case hex digits, got {value!r}")


__all__ = [
    "FAMILY_NAME",
    "VARIANTS",
    "ArtifactTarget",
    "FedotaTarget",
    "PatchTarget",
    "TargetInfoError",
    "artifact_path",
    "artifact_suffix",
    "parse_target",
]
