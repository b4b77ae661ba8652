"""Names in the registry: model families and `family@vN` version references."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from fedota.server.errors import InvalidArgument, NotFound
from fedota.storage.models import ModelFamily, ModelVersion

_FAMILY = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_REF = re.compile(r"(?P<family>[^@]{1,63})@v(?P<number>[1-9][0-9]{0,8})")


def family_name(field: str, value: str) -> str:
    """Raises:
    InvalidArgument: not 1 to 63 of a-z, 0-9 and '-', starting and ending alphanumeric.
    """
    if not _FAMILY.fullmatch(value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise InvalidArgument(field, f"{shown!r} is not a model family name (a-z, 0-9, '-')")
    return value


def parse_ref(field: str, value: str) -> tuple[str, int]:
    """`family@vN` as (family, N).

    Raises:
        InvalidArgument: not of that form.
    """
    match = _REF.fullmatch(value)
    if match is None:
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise InvalidArgument(field, f"{shown!r} is not a model version such as digits@v2")
    return family_name(field, match["family"]), int(match["number"])


def format_ref(family: str, number: int) -> str:
    return f"{family}@v{number}"


def find_version(session: Session, field: str, ref: str) -> ModelVersion:
    """Raises:
    InvalidArgument: a malformed reference.
    NotFound: no such version, naming the command that lists them.
    """
    family, number = parse_ref(field, ref)
    version = session.scalars(
        select(ModelVersion)
        .join(ModelFamily, ModelVersion.family_id == ModelFamily.id)
        .where(ModelFamily.name == family, ModelVersion.number == number)
    ).one_or_none()
    if version is None:
        raise NotFound(f"model version {ref} does not exist; see `fedota admin models list`")
    return version


__all__ = ["family_name", "find_version", "format_ref", "parse_ref"]
