"""A labelled example as an app submits it, and as the store gives it back.

An `Example` checks itself when it is built, so an invalid one never exists: exactly one of text
or features, sizes within `LIMITS`, finite numbers, text that UTF-8 can encode. Its text is raw
(it may hold personal data) until `ExampleStore.add` desensitises it; a `StoredExample` only ever
holds what was stored, i.e. desensitised text.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
from collections.abc import Sequence, Sized
from dataclasses import dataclass
from numbers import Real
from typing import Literal

from fedota.client.data.errors import InvalidExample

Kind = Literal["text", "features"]
_SOURCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]*")


@dataclass(frozen=True)
class ExampleLimits:
    """Size limits of one example, checked before anything is scrubbed or stored.

    Attributes:
        max_label_chars: characters in a label.
        max_text_chars: characters in a text example (before desensitising).
        max_features: numbers in a feature-vector example.
        max_source_chars: characters in the source tag.
    """

    max_label_chars: int = 256
    max_text_chars: int = 16_384
    max_features: int = 65_536
    max_source_chars: int = 64


LIMITS = ExampleLimits()


@dataclass(frozen=True)
class Example:
    """One labelled example: a text or a feature vector, never both.

    Attributes:
        label: the class or answer the example teaches (desensitised too when stored).
        text: free text, raw; desensitised by the store before it touches disk.
        features: a vector of finite numbers, kept as a tuple of floats.
        source: a short tag naming where the example came from ("app", "feedback", ...).

    Raises:
        InvalidExample: a rule above is broken; the message states the rule and the value.
    """

    label: str
    text: str | None = None
    features: Sequence[float] | None = None
    source: str = "app"

    def __post_init__(self) -> None:
        _check_text("label", self.label, LIMITS.max_label_chars)
        if (self.text is None) == (self.features is None):
            given = "both" if self.text is not None else "neither"
            raise InvalidExample(
                "example", f"an example has exactly one of text or features, this one has {given}"
            )
        if self.text is not None:
            _check_text("text", self.text, LIMITS.max_text_chars)
        else:
            object.__setattr__(self, "features", _features(self.features))
        if not isinstance(self.source, str) or len(self.source) > LIMITS.max_source_chars:
            raise InvalidExample(
                "source",
                f"source must be a str of at most {LIMITS.max_source_chars} characters, "
                f"got {_describe(self.source)}",
            )
        if not _SOURCE.fullmatch(self.source):
            raise InvalidExample(
                "source",
                f"source must be letters, digits and _.:- starting with a letter or digit, "
                f"got {self.source!r}",
            )

    @property
    def kind(self) -> Kind:
        """ "text" or "features"."""
        return "text" if self.text is not None else "features"


@dataclass(frozen=True)
class StoredExample:
    """An example as the store holds it: text already desensitised.

    Attributes:
        id: the store's id, increasing in the order examples were added.
        created_at: when it was added (UTC), by the store's clock.
    """

    id: int
    created_at: dt.datetime
    label: str
    text: str | None
    features: tuple[float, ...] | None
    source: str

    @property
    def kind(self) -> Kind:
        """ "text" or "features"."""
        return "text" if self.text is not None else "features"


def _describe(value: object) -> str:
    if isinstance(value, str):
        return f"{len(value)} characters"
    return type(value).__name__


def _check_text(field: str, value: object, limit: int) -> None:
    if not isinstance(value, str):
        raise InvalidExample(field, f"{field} must be a str, got {type(value).__name__}")
    if not value.strip():
        raise InvalidExample(field, f"{field} must not be empty or blank, got {value!r}")
    if len(value) > limit:
        raise InvalidExample(
            field, f"{field} is {len(value)} characters, over the limit of {limit}"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidExample(
            field, f"{field} must be valid Unicode; it has a lone surrogate at {exc.start}"
        ) from None


def _features(values: object) -> tuple[float, ...]:
    if isinstance(values, str | bytes):
        raise InvalidExample(
            "features", f"features must be a sequence of numbers, got {type(values).__name__}"
        )
    try:
        # One past the limit is enough to know it is too long, whatever the iterable holds.
        items = list(itertools.islice(values, LIMITS.max_features + 1))  # type: ignore[call-overload]
    except TypeError:
        raise InvalidExample(
            "features", f"features must be a sequence of numbers, got {type(values).__name__}"
        ) from None
    if not items:
        raise InvalidExample("features", "features must hold at least 1 number, got 0")
    if len(items) > LIMITS.max_features:
        count = len(values) if isinstance(values, Sized) else f"more than {LIMITS.max_features}"
        raise InvalidExample(
            "features", f"features hold {count} numbers, over the limit of {LIMITS.max_features}"
        )
    result: list[float] = []
    for index, item in enumerate(items):
        if not isinstance(item, Real):
            raise InvalidExample(
                "features", f"features[{index}] must be a number, got {type(item).__name__}"
            )
        number = float(item)
        if not math.isfinite(number):
            raise InvalidExample("features", f"features[{index}] must be finite, got {number}")
        result.append(number)
    return tuple(result)


__all__ = ["LIMITS", "Example", "ExampleLimits", "Kind", "StoredExample"]
