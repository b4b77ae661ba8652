"""Replacing personal data in free text by typed placeholders, before anything is stored.

Pure string processing: no I/O, no network, no global state. What each kind recognises is listed
in `fedota.client.data._detectors` (email, phone, card, id, ip) and `_names` (name).

How overlaps are settled: every detector proposes validated spans over the whole text; spans are
then accepted by kind priority (existing placeholders, then email, card, id, ip, phone, name) and,
within a kind, leftmost-longest; a span that overlaps an accepted one is dropped. So the digits
inside `jo.1985@example.com` go with the e-mail, and `https://10.0.0.1:8080/` keeps its URL
around `<IP>`. A dropped span may still hold PII (a phone number that ran into a card number), so
scrubbing repeats on its own output until nothing changes: that makes `scrub` idempotent by
construction, and it always ends, because placeholders are never replaced and each round that
changes something turns at least one other character into one.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from fedota.client.data._detectors import DETECTORS
from fedota.client.data._names import NameMatcher

# Priority order: earlier kinds win overlaps.
KINDS: tuple[str, ...] = ("email", "card", "id", "ip", "phone", "name")
PLACEHOLDERS: Mapping[str, str] = MappingProxyType({kind: f"<{kind.upper()}>" for kind in KINDS})
_PROTECTED = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS.values()))
_PRIORITY = {kind: rank for rank, kind in enumerate(KINDS, start=1)}


@dataclass(frozen=True)
class Scrubbed:
    """Desensitised text, and how many spans of each kind were replaced (kinds found only)."""

    text: str
    counts: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def replaced(self) -> int:
        """How many spans were replaced in all."""
        return sum(self.counts.values())


class Desensitizer:
    """Replaces e-mail addresses, phone, card and ID numbers, IP addresses and listed names.

    Immutable once built, so one instance may serve every thread.

    Args:
        names: names to replace as whole words, case-insensitively (see `_names`).
        kinds: the kinds to replace (a subset of KINDS); None for all of them.

    Raises:
        ValueError: an unknown kind, or a name that cannot be matched (see NameMatcher).
    """

    def __init__(self, names: Sequence[str] = (), *, kinds: frozenset[str] | None = None) -> None:
        if isinstance(names, str):
            raise ValueError("names must be a sequence of names, not one string")
        chosen = frozenset(KINDS) if kinds is None else frozenset(kinds)
        unknown = sorted(chosen - set(KINDS))
        if unknown:
            raise ValueError(f"unknown kinds {unknown}; the kinds are {list(KINDS)}")
        self.kinds = chosen
        self._names = NameMatcher(names)
        self._detectors = tuple(d for d in DETECTORS if d.kind in chosen)

    def scrub(self, text: str) -> Scrubbed:
        """`text` in Unicode NFC form with every PII span of the chosen kinds replaced.

        Raises:
            TypeError: `text` is not a str.
        """
        if not isinstance(text, str):
            raise TypeError(f"scrub takes a str, got {type(text).__name__}")
        text = unicodedata.normalize("NFC", text)
        counts: dict[str, int] = {}
        while True:
            spans = self._resolve(text)
            if not spans:
                return Scrubbed(text, MappingProxyType(counts))
            parts: list[str] = []
            cursor = 0
            for start, end, kind in spans:
                parts.append(text[cursor:start])
                parts.append(PLACEHOLDERS[kind])
                counts[kind] = counts.get(kind, 0) + 1
                cursor = end
            parts.append(text[cursor:])
            text = "".join(parts)

    def _resolve(self, text: str) -> list[tuple[int, int, str]]:
        """Non-overlapping spans to replace, in text order; placeholders block but never appear."""
        candidates: list[tuple[int, int, int, str]] = [
            (0, m.start(), -m.end(), "") for m in _PROTECTED.finditer(text)
        ]
        for detector in self._detectors:
            rank = _PRIORITY[detector.kind]
            candidates.extend((rank, s, -e, detector.kind) for s, e in detector.find(text))
        if "name" in self.kinds:
            candidates.extend((_PRIORITY["name"], s, -e, "name") for s, e in self._names.find(text))
        starts: list[int] = []
        accepted: list[tuple[int, int, str]] = []
        for _, start, neg_end, kind in sorted(candidates):
            end = -neg_end
            at = bisect.bisect_right(starts, start)
            if at and accepted[at - 1][1] > start:
                continue
            if at < len(accepted) and accepted[at][0] < end:
                continue
            starts.insert(at, start)
            accepted.insert(at, (start, end, kind))
        return [span for span in accepted if span[2]]


__all__ = ["KINDS", "PLACEHOLDERS", "Desensitizer", "Scrubbed"]
