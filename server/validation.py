"""Request field checks: each names the field and the rule it broke, before anything is written."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fedota.protos.v1 import device_pb2
from fedota.server.config import Limits
from fedota.server.errors import InvalidArgument

HARDWARE_CLASSES = ("fp32", "int8", "int4", "mcu-int8")
COHORT_NAME = re.compile(r"^[a-z0-9-]{1,63}$")
LABEL_KEY = re.compile(r"^[a-z0-9._/-]+$")
# NUL is refused by PostgreSQL text and JSONB alike; other C0 controls only make logs lie.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_CONTROL_OR_NEWLINE = re.compile(r"[\x00-\x1f\x7f]")
_PROFILE_STRINGS = (
    "cpu_model",
    "os",
    "python_version",
    "torch_version",
    "daemon_version",
)


def text(
    field: str, value: str, max_chars: int, *, required: bool = False, multiline: bool = False
) -> str:
    """A bounded string without control characters (tab and newline only when `multiline`).

    Raises:
        InvalidArgument: empty when `required`, too long, or with control characters.
    """
    if required and not value:
        raise InvalidArgument(field, "is required")
    if len(value) > max_chars:
        raise InvalidArgument(field, f"must be at most {max_chars} characters (got {len(value)})")
    if (_CONTROL if multiline else _CONTROL_OR_NEWLINE).search(value):
        raise InvalidArgument(field, "must not contain control characters")
    return value


def identifier(field: str, value: str, prefix: str, limits: Limits) -> str:
    """An id such as `dev_5f2c9a0d41e8b7c3`.

    Raises:
        InvalidArgument: empty, too long, or not `<prefix>_<hex>`.
    """
    text(field, value, limits.max_id_chars, required=True)
    if not re.fullmatch(rf"{prefix}_[0-9a-f]{{1,32}}", value):
        raise InvalidArgument(field, f"{value!r} is not an id of the form {prefix}_<hex>")
    return value


def cohort_name(field: str, value: str) -> str:
    """Raises:
    InvalidArgument: not 1 to 63 of lower-case letters, digits and '-'.
    """
    if not COHORT_NAME.fullmatch(value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise InvalidArgument(
            field, f"{shown!r} is not a cohort name (1 to 63 of a-z, 0-9 and '-')"
        )
    return value


def labels(field: str, values: Mapping[str, str], limits: Limits) -> dict[str, str]:
    """Label keys of [a-z0-9._/-] up to 63 characters, values up to 255, at most 32 labels.

    Raises:
        InvalidArgument: naming the first offending label.
    """
    if len(values) > limits.max_labels:
        raise InvalidArgument(field, f"at most {limits.max_labels} labels (got {len(values)})")
    checked: dict[str, str] = {}
    for key in sorted(values):
        if not key or len(key) > limits.max_label_key_chars or not LABEL_KEY.fullmatch(key):
            shown = key if len(key) <= 80 else key[:77] + "..."
            raise InvalidArgument(
                field,
                f"label key {shown!r} must be 1 to {limits.max_label_key_chars} of a-z, 0-9, '.', "
                "'_', '/' and '-'",
            )
        checked[key] = text(f"{field}[{key}]", values[key], limits.max_label_value_chars)
    return checked


def hardware_profile(profile: device_pb2.HardwareProfile, limits: Limits) -> dict[str, Any]:
    """The profile as stored; `hardware_class` must be one the registry builds variants for.

    Raises:
        InvalidArgument: unknown hardware class, or a string field too long or with controls.
    """
    if profile.hardware_class not in HARDWARE_CLASSES:
        raise InvalidArgument(
            "hardware.hardware_class",
            f"must be one of {', '.join(HARDWARE_CLASSES)} (got {profile.hardware_class[:40]!r})",
        )
    stored: dict[str, Any] = {"hardware_class": profile.hardware_class}
    for name in _PROFILE_STRINGS:
        stored[name] = text(
            f"hardware.{name}", getattr(profile, name), limits.max_profile_string_chars
        )
    stored["cpu_count"] = profile.cpu_count
    stored["memory_bytes"] = profile.memory_bytes
    return stored
