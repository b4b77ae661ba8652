"""The desensitiser: each PII kind replaced, look-alikes kept, overlaps settled, idempotent."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedota.client.data import KINDS, PLACEHOLDERS, Desensitizer

NAMES = ("Alice", "Mary Ann", "José", "O'Brien", "Straße", "Zoë Ødegaard", "Bo")


@pytest.fixture(scope="module")
def scrubber() -> Desensitizer:
    return Desensitizer(NAMES)


REPLACED = [
    # e-mail
    ("write to jo.smith+tag@example.co.uk today", "write to <EMAIL> today", "email"),
    ("JO_1985@mail.example.com.", "<EMAIL>.", "email"),
    ("unicode: josé@exämple.de", "unicode: <EMAIL>", "email"),
    # phone: international
    ("call +1 (555) 123-4567 now", "call <PHONE> now", "phone"),
    ("+44 20 7946 0958", "<PHONE>", "phone"),
    ("+49 (0)30 1234567", "<PHONE>", "phone"),
    ("tel:+33.6.12.34.56.78", "tel:<PHONE>", "phone"),
    ("+15551234567", "<PHONE>", "phone"),
    # phone: national
    ("(555) 123-4567", "<PHONE>", "phone"),
    ("555-123-4567 or 555.123.4567", "<PHONE> or <PHONE>", "phone"),
    ("1-800-555-0199", "<PHONE>", "phone"),
    ("020 7946 0958", "<PHONE>", "phone"),
    ("06 12 34 56 78", "<PHONE>", "phone"),
    ("030/1234567 and (030) 1234567", "<PHONE> and <PHONE>", "phone"),
    ("06-12345678", "<PHONE>", "phone"),
    # payment cards (Luhn-valid test numbers)
    ("visa 4111 1111 1111 1111 exp", "visa <CARD> exp", "card"),
    ("4111-1111-1111-1111", "<CARD>", "card"),
    ("4111111111111111", "<CARD>", "card"),
    ("amex 3782 822463 10005", "amex <CARD>", "card"),
    ("378282246310005", "<CARD>", "card"),
    ("diners 3056 930902 5904", "diners <CARD>", "card"),
    ("4222222222222", "<CARD>", "card"),  # 13 digits
    ("6011 0009 9013 9424", "<CARD>", "card"),
    ("card 4111 1111 1111 1111 2 items", "card <CARD> 2 items", "card"),
    # ID numbers
    ("ssn 123-45-6789", "ssn <ID>", "id"),
    ("SSN 123 45 6789.", "SSN <ID>.", "id"),
    ("IBAN DE89 3704 0044 0532 0130 00 OK", "IBAN <ID> OK", "id"),
    ("GB82WEST12345698765432", "<ID>", "id"),
    ("FR14 2004 1010 0505 0001 3M02 606", "<ID>", "id"),
    ("NI AB 12 34 56 C", "NI <ID>", "id"),
    ("ab: AB123456C", "ab: <ID>", "id"),
    # IP addresses
    ("from 192.168.1.20 at noon", "from <IP> at noon", "ip"),
    ("0.0.0.0 and 255.255.255.255", "<IP> and <IP>", "ip"),
    ("https://10.0.0.1:8080/path", "https://<IP>:8080/path", "ip"),
    ("net 10.1.2.0/24", "net <IP>/24", "ip"),
    ("2001:db8::ff00:42:8329", "<IP>", "ip"),
    ("2001:0db8:0000:0000:0000:ff00:0042:8329", "<IP>", "ip"),
    ("http://[2001:db8::1]:80/", "http://[<IP>]:80/", "ip"),
    ("::ffff:192.168.1.1", "<IP>", "ip"),
    ("fe80::1%eth0 up", "<IP> up", "ip"),
    ("loopback ::1", "loopback <IP>", "ip"),
    # names: whole words, any case, Unicode, longest first
    ("Alice called", "<NAME> called", "name"),
    ("ALICE and alice", "<NAME> and <NAME>", "name"),
    ("Mary Ann smiled", "<NAME> smiled", "name"),
    ("Mary  ann", "<NAME>", "name"),
    ("JOSÉ", "<NAME>", "name"),
    ("Jose\u0301 (decomposed)", "<NAME> (decomposed)", "name"),
    ("o\u2019brien", "<NAME>", "name"),  # typographic apostrophe
    ("STRASSE", "<NAME>", "name"),
    ("zoë ødegaard", "<NAME>", "name"),
    ("Ann-Alice", "Ann-<NAME>", "name"),
    ("Bo.", "<NAME>.", "name"),
]


@pytest.mark.parametrize(("text", "expected", "kind"), REPLACED)
def test_each_kind_is_replaced(scrubber: Desensitizer, text: str, expected: str, kind: str) -> None:
    result = scrubber.scrub(text)
    assert result.text == expected
    assert set(result.counts) == {kind}
    assert result.counts[kind] == expected.count(PLACEHOLDERS[kind])


KEPT = [
    ("order 1234567890123", "a bare digit run is an order number, not a phone"),
    ("order 4111111111111112", "Luhn-invalid 16 digits"),
    ("4111 1111 1111 1112", "Luhn-invalid grouped"),
    ("4111-1111-1111-1111-1111-11", "too many digits for a card"),
    ("41111111111111111111", "20 digits"),
    ("version 1.2.3.4.5", "five-part version string"),
    ("v1.2.3.4", "version with a prefix"),
    ("999.1.1.1", "octet out of range"),
    ("192.168.1.256", "last octet out of range"),
    ("010.1.1.1", "leading zero"),
    ("1.2.3", "three parts"),
    ("12:30:45", "a time"),
    ("00:1a:2b:3c:4d:5e", "a MAC address is not an IP"),
    ("std::vector and ::", "C++ scope"),
    ("2024-01-15 10:30", "an ISO date and time"),
    ("01.02.2024 12:30", "a European date"),
    ("000-12-3456", "SSN area 000"),
    ("666-12-3456", "SSN area 666"),
    ("123-00-4567", "SSN group 00"),
    ("GB82 WEST 1234 5698 7654 31", "IBAN with a bad check"),
    ("GB82WEST12345698765431", "compact IBAN with a bad check"),
    ("QQ 12 34 56 C", "NINO prefix that is never issued"),
    ("Annual Annabel Alicea MaryAnn", "names inside other words"),
    ("Bob", "not a configured name"),
    ("user@localhost", "no top-level domain"),
    ("a@b", "no domain at all"),
    ("price +5 -3", "arithmetic"),
    ("call 555-1234", "seven-digit local number"),
    ("<EMAIL> <PHONE> <CARD> <ID> <IP> <NAME>", "placeholders already"),
    ("score 3.14159 and 2.71828", "decimals"),
]


@pytest.mark.parametrize(("text", "why"), KEPT)
def test_look_alikes_are_kept(scrubber: Desensitizer, text: str, why: str) -> None:
    result = scrubber.scrub(text)
    assert result.text == text, why
    assert result.replaced == 0


OVERLAPS = [
    # digits and a name inside an e-mail go with the e-mail
    ("alice.5551234567@example.com", "<EMAIL>"),
    ("+1-555-123-4567@sms.example.com", "<EMAIL>"),
    # an IP inside a URL; a host name that is an IP after an @
    ("see http://user@10.0.0.1/x", "see http://user@<IP>/x"),
    # a phone and a card number in one run of digits, told apart by punctuation
    ("+1 555 123 4567, 4111 1111 1111 1111", "<PHONE>, <CARD>"),
    # every kind in one line, side by side
    (
        "Alice <alice@example.com>, +44 20 7946 0958, 4111 1111 1111 1111, 123-45-6789, 10.0.0.1",
        "<NAME> <<EMAIL>>, <PHONE>, <CARD>, <ID>, <IP>",
    ),
]


@pytest.mark.parametrize(("text", "expected"), OVERLAPS)
def test_overlapping_matches_do_not_corrupt_each_other(
    scrubber: Desensitizer, text: str, expected: str
) -> None:
    assert scrubber.scrub(text).text == expected


def test_counts_add_up_per_kind(scrubber: Desensitizer) -> None:
    result = scrubber.scrub("a@example.com b@example.org 10.0.0.1 Alice")
    assert dict(result.counts) == {"email": 2, "ip": 1, "name": 1}
    assert result.replaced == 4


@pytest.mark.parametrize("kind", KINDS)
def test_kinds_limits_what_is_replaced(kind: str) -> None:
    text = "Alice alice@example.com +44 20 7946 0958 4111111111111111 123-45-6789 10.0.0.1"
    result = Desensitizer(NAMES, kinds=frozenset({kind})).scrub(text)
    assert set(result.counts) == {kind}


def test_no_kinds_changes_nothing() -> None:
    text = "alice@example.com 10.0.0.1"
    assert Desensitizer(NAMES, kinds=frozenset()).scrub(text).text == text


@pytest.mark.parametrize(
    ("names", "kinds", "message"),
    [
        ((), frozenset({"email", "passport"}), "unknown kinds ['passport']"),
        ("Alice", None, "not one string"),
        (("Alice", "  "), None, "has no letters"),
        (("-Alice",), None, "must begin and end with a letter or digit"),
        (("x" * 129,), None, "at most 128 characters"),
        ((" ".join(["w"] * 9),), None, "8 words"),
        ((42,), None, "must be strings"),
    ],
)
def test_bad_configuration_is_refused(names: object, kinds: frozenset[str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Desensitizer(names, kinds=kinds)  # type: ignore[arg-type]


def test_scrub_takes_only_text(scrubber: Desensitizer) -> None:
    with pytest.raises(TypeError, match="takes a str, got bytes"):
        scrubber.scrub(b"alice@example.com")  # type: ignore[arg-type]


@pytest.mark.parametrize("text", [text for text, _, _ in REPLACED] + [t for t, _ in OVERLAPS])
def test_scrubbing_scrubbed_text_changes_nothing(scrubber: Desensitizer, text: str) -> None:
    once = scrubber.scrub(text)
    twice = scrubber.scrub(once.text)
    assert twice.text == once.text
    assert twice.replaced == 0


FRAGMENTS = [
    "alice",
    "Mary",
    "Ann",
    "@",
    "example.com",
    "+1",
    "+44",
    " ",
    "-",
    ".",
    ":",
    "::",
    "(",
    ")",
    "0",
    "555",
    "4111",
    "1111",
    "123-45-6789",
    "DE89",
    "3704",
    "10.0.0.1",
    "<EMAIL>",
    "<NAME",
    ">",
    "é",
    "/",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=3), max_size=40).map("".join))
def test_idempotent_on_generated_text(text: str) -> None:
    scrubber = Desensitizer(NAMES)
    once = scrubber.scrub(text)
    assert scrubber.scrub(once.text).text == once.text


ADVERSARIAL = {
    "letters": "a" * 100_000,
    "digits": "1" * 100_000,
    "at signs": "a@" * 50_000,
    "dotted labels": "a@" + "b." * 50_000,
    "dotted digits": "1." * 50_000,
    "dashed digits": "1-" * 50_000,
    "spaced digits": "1 " * 50_000,
    "colons": ":" * 100_000,
    "hex colons": "1:" * 50_000,
    "plus digits": "+1 " * 33_000,
    "parentheses": "(0" * 50_000,
    "capitals": "AB12 " * 20_000,
    "names": "Mary Ann " * 11_000,
    "placeholders": "<IP>1" * 20_000,
    "card groups": "4111 " * 20_000,
}


@pytest.mark.timeout(60, method="thread")
@pytest.mark.parametrize("text", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_long_adversarial_input_finishes(scrubber: Desensitizer, text: str) -> None:
    # A quadratic regex would take minutes on 100k characters; the linear ones take milliseconds.
    result = scrubber.scrub(text)
    assert scrubber.scrub(result.text).text == result.text
