"""The PII detectors: one candidate regex and one validator (checksum, range) per shape.

Every regex is linear: each starts only where a lookbehind says a token begins, and its
repetitions are either bounded or split deterministically by a delimiter they cannot contain,
so no input makes the engine retry a span more than a constant number of times. A regex only
proposes; the validator decides (Luhn for cards, mod-97 for IBANs, `ipaddress` for IPs, digit
counts for phones), so `999.1.1.1`, `1.2.3.4.5` and order numbers are left alone.

Recognised shapes, by kind:
    email  local@domain.tld (Unicode letters allowed, TLD of letters)
    phone  +CC international forms (spaces, dots, dashes, parentheses; 7-15 digits);
           North-American (555) 123-4567, 555-123-4567, 1-555-123-4567, +1 555 123 4567;
           trunk-0 national forms with one kind of separator (020 7946 0958, 06 12 34 56 78,
           030/1234567, (030) 1234567; 9-13 digits)
    card   13-19 digits, contiguous or in the printed groupings (4-4-4-4, 4-6-5, 4-4-4-4-3...)
           separated by spaces or dashes; Luhn-valid only
    id     US SSN/ITIN 123-45-6789 or 123 45 6789 (not area 000/666, group 00, serial 0000);
           IBAN in capitals, grouped by four or not, mod-97 valid;
           UK National Insurance number AB 12 34 56 C (HMRC prefix rules)
    ip     IPv4 dotted quads with valid octets (no leading zeros); IPv6 in any valid
           notation, with an embedded IPv4 or a zone
A bare run of digits is never a phone or an id: that is what order and invoice numbers are.
Numbers written back to back with only spaces between them are read as one number, so a card
number typed straight after a phone number may be taken as the phone number's tail.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

Span = tuple[int, int]


@dataclass(frozen=True)
class Detector:
    """One shape of one kind: a candidate regex and the check that accepts a candidate.

    `accept` gets the matched text and returns how many of its characters are the PII (the
    whole match, or a prefix of it when trailing groups belong to the next word), or 0.
    """

    kind: str
    pattern: re.Pattern[str]
    accept: Callable[[str], int]

    def find(self, text: str) -> Iterator[Span]:
        # A rejected candidate is consumed whole: its parts are one token (an order number in
        # groups), not several chances to pass a checksum.
        for match in self.pattern.finditer(text):
            length = self.accept(match.group())
            if length:
                yield match.start(), match.start() + length


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _prefixes_at_spaces(text: str, keep: int = 3) -> Iterator[str]:
    """The text, then the text without its last space-separated group, `keep` times at most."""
    yield text
    for _ in range(keep):
        cut = text.rfind(" ")
        if cut <= 0:
            return
        text = text[:cut]
        yield text


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of ISO/IEC 7812 that every payment card number passes."""
    total = 0
    for position, ch in enumerate(reversed(digits)):
        value = ord(ch) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(compact: str) -> bool:
    """ISO 13616 check: 15-34 characters, and the rearranged number is 1 modulo 97."""
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _card(text: str) -> int:
    for candidate in _prefixes_at_spaces(text, keep=2):
        digits = _digits(candidate)
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            return len(candidate)
    return 0


def _iban(text: str) -> int:
    for candidate in _prefixes_at_spaces(text, keep=2):
        if iban_valid(candidate.replace(" ", "")):
            return len(candidate)
    return 0


def _digit_count(low: int, high: int) -> Callable[[str], int]:
    def accept(text: str) -> int:
        return len(text) if low <= len(_digits(text)) <= high else 0

    return accept


def _whole(text: str) -> int:
    return len(text)


def _ipv4(text: str) -> int:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return 0
    return len(text)


def _ipv6(text: str) -> int:
    if not any(ch not in ":." for ch in text):  # "::" alone is punctuation more often than not
        return 0
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return 0
    return len(text)


# A number must not continue into more digits, directly or across one separator.
_END_NUMBER = r"(?!\w|[.\-/]\d)"

EMAIL = re.compile(
    r"(?<![\w.%+\-])[\w.%+\-]+@(?:[\w\-]+\.)+[^\W\d_]{2,63}(?![\w\-]|\.\w)",
)
PHONE_INTERNATIONAL = re.compile(
    r"(?<![\w+])\+\d(?:[ .\-]?(?:\d|\(\d{1,4}\))){5,17}" + _END_NUMBER,
)
PHONE_NORTH_AMERICA = re.compile(
    r"(?<![\w+.\-])(?:\+?1[ .\-]?)?(?:\(\d{3}\)[ ]?|\d{3}[ .\-])\d{3}[ .\-]\d{4}" + _END_NUMBER,
)
PHONE_TRUNK_ZERO = re.compile(
    r"(?<![\w+.\-])(?:0[1-9]\d{0,3}(?P<sep>[ .\-/])\d{2,8}(?:(?P=sep)\d{2,8}){0,3}"
    r"|\(0[1-9]\d{0,3}\)[ ]?\d{2,8}(?:[ .\-]\d{2,8}){0,3})" + _END_NUMBER,
)
CARD = re.compile(
    r"(?<![\w.\-])(?:\d{13,19}|\d{4}(?P<sep>[ \-])\d{4,6}(?P=sep)\d{4,5}(?:(?P=sep)\d{1,4}){0,2})"
    + _END_NUMBER,
)
SSN = re.compile(
    r"(?<![\w.\-])(?!000|666)\d{3}(?P<sep>[ \-])(?!00)\d{2}(?P=sep)(?!0000)\d{4}" + _END_NUMBER,
)
IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])",
)
UK_NINO = re.compile(
    r"(?<!\w)(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r"(?P<sep> ?)\d{2}(?P=sep)\d{2}(?P=sep)\d{2}(?P=sep)[A-D](?!\w)",
)
IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?!\w|\.\d)")
IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}"
    r"(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?(?:%[0-9A-Za-z]{1,15})?(?![\w:]|\.\d)",
)

DETECTORS: tuple[Detector, ...] = (
    Detector("email", EMAIL, _whole),
    Detector("card", CARD, _card),
    Detector("id", SSN, _whole),
    Detector("id", IBAN, _iban),
    Detector("id", UK_NINO, _whole),
    Detector("ip", IPV4, _ipv4),
    Detector("ip", IPV6, _ipv6),
    Detector("phone", PHONE_INTERNATIONAL, _digit_count(7, 15)),
    Detector("phone", PHONE_NORTH_AMERICA, _whole),
    Detector("phone", PHONE_TRUNK_ZERO, _digit_count(9, 13)),
)
