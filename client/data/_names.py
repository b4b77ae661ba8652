"""Finding names from a configured list as whole words, case-insensitively, in any script.

The text is cut into word tokens (maximal runs of Unicode word characters) once; a name matches
a run of consecutive tokens whose text, case-folded with whitespace collapsed, equals the
case-folded name. Looking names up in a dict keeps the cost linear in the text and independent
of how many names are configured (an alternation of thousands of names would not be), and
case folding (not lower-casing) makes "STRASSE" match "Straße". Longer names win: at each token
the longest name that starts there is taken.

Whole words means a name inside a longer word ("Ann" in "Annual", "Anna") is left alone, while
a name joined to another by a hyphen or apostrophe ("Ann" in "Ann-Marie") is still replaced.
Scripts written without spaces (Chinese, Japanese, Thai) have no word boundaries to find, so a
name there matches only when it stands alone.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence

_WORD = re.compile(r"\w+")
_SPACES = re.compile(r"\s+")
MAX_NAME_CHARS = 128
MAX_NAME_WORDS = 8


def _fold(text: str) -> str:
    """The comparison form of NFC text: case-folded, one apostrophe, single spaces."""
    return _SPACES.sub(" ", text.replace("\u2019", "'").casefold())


class NameMatcher:
    """The configured names, ready to be found in text.

    Raises:
        ValueError: a name is not a string, is blank, is longer than MAX_NAME_CHARS or
            MAX_NAME_WORDS, or does not begin and end with a letter or digit.
    """

    def __init__(self, names: Sequence[str]) -> None:
        self._keys: set[str] = set()
        # The first word of each name, and the most words of a name starting with it: most
        # tokens of a text are no name's first word and cost one set lookup.
        self._first_words: dict[str, int] = {}
        for name in names:
            if not isinstance(name, str):
                raise ValueError(f"names must be strings, got {type(name).__name__}")
            key = _fold(unicodedata.normalize("NFC", name.strip()))
            words = _WORD.findall(key)
            if not words:
                raise ValueError(f"name {name!r} has no letters")
            if len(name) > MAX_NAME_CHARS or len(words) > MAX_NAME_WORDS:
                raise ValueError(
                    f"name {name[:40]!r}... is {len(name)} characters and {len(words)} words; "
                    f"names are at most {MAX_NAME_CHARS} characters and {MAX_NAME_WORDS} words"
                )
            if not (key[0].isalnum() and key[-1].isalnum()):
                raise ValueError(f"name {name!r} must begin and end with a letter or digit")
            self._keys.add(key)
            self._first_words[words[0]] = max(self._first_words.get(words[0], 0), len(words))

    def __bool__(self) -> bool:
        return bool(self._keys)

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        """Spans of configured names in NFC `text`, left to right, not overlapping."""
        if not self._keys:
            return
        tokens = [(m.start(), m.end()) for m in _WORD.finditer(text)]
        i = 0
        while i < len(tokens):
            start, end = tokens[i]
            most = self._first_words.get(text[start:end].casefold(), 0)
            for words in range(min(most, len(tokens) - i), 0, -1):
                end = tokens[i + words - 1][1]
                if _fold(text[start:end]) in self._keys:
                    yield start, end
                    i += words
                    break
            else:
                i += 1
