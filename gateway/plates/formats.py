"""Plate formats: what text a gate accepts as a plate, and the repairs it may make.

Pure functions, no I/O. A format is a country code from ``COUNTRY_FORMATS`` or a regular
expression over the *normalised* text (upper case, no spaces, dashes or dots). The country
patterns are deliberately approximate (the shape of the common current series, not every
historic, diplomatic or vanity plate): configure a regex where they are not enough.

Look-alike repair (O/0, I/1, B/8, S/5, Z/2, G/6) happens only where the format demands it:
the text as read is tried first; only when it matches no format are look-alike swaps tried,
fewest first, at most ``MAX_REPAIRS`` of them, and only a single unambiguous result is
accepted. Two different repairs of equal cost mean the text is unreadable, never a guess.
Text that looks like a timestamp or a date is rejected before any repair (a camera's overlay
``12:34`` or ``2026-12-01`` must never become a plate).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from gateway.core.errors import ConfigError

# Approximate shapes of current series, over the normalised text.
COUNTRY_FORMATS: dict[str, str] = {
    "TR": r"^[0-9]{2}[A-Z]{1,3}[0-9]{2,4}$",  # 34ABC123, 06A1234 (the seed's pattern)
    "DE": r"^[A-Z]{1,3}[A-Z]{1,2}[0-9]{1,4}[EH]?$",  # B-MW 1234 -> BMW1234 (E/H suffixes)
    "NL": (r"^(?:[A-Z]{2}[0-9]{2}[A-Z]{2}|[0-9]{2}[A-Z]{3}[0-9]|[0-9][A-Z]{3}[0-9]{2}"
           r"|[A-Z]{2}[0-9]{3}[A-Z]|[A-Z][0-9]{3}[A-Z]{2}|[A-Z]{3}[0-9]{2}[A-Z]"
           r"|[0-9][A-Z]{2}[0-9]{3}|[0-9]{3}[A-Z]{2}[0-9])$"),  # sidecodes 6-11 and a few
    "GB": r"^[A-Z]{2}[0-9]{2}[A-Z]{3}$",  # AB12 CDE (2001 series)
    "FR": r"^[A-Z]{2}[0-9]{3}[A-Z]{2}$",  # AB-123-CD (SIV)
    "GENERIC": r"^(?=[A-Z0-9]*[0-9])(?=[A-Z0-9]*[A-Z])[A-Z0-9]{4,8}$",  # letters and digits
}

MIN_LEN, MAX_LEN = 4, 10  # normalised; anything outside is not a plate
MAX_REPAIRS = 2
REPAIR_PENALTY = 0.93  # a reading's confidence is multiplied by this per repaired character
TO_DIGIT = {"O": "0", "I": "1", "B": "8", "S": "5", "Z": "2", "G": "6"}
TO_LETTER = {"0": "O", "1": "I", "8": "B", "5": "S", "2": "Z", "6": "G"}
_SEPARATORS = re.compile(r"[\s\-.·_]+")
_TIMESTAMP = re.compile(
    r"\d{1,2}\s*:\s*\d{2}"  # 12:34, 12:34:56
    r"|\d{4}\s*[-/.]\s*\d{1,2}\s*[-/.]\s*\d{1,2}"  # 2026-12-01
    r"|\d{1,2}\s*[/.]\s*\d{1,2}\s*[/.]\s*\d{2,4}|\d{1,2}-\d{1,2}-\d{4}"  # 01.12.2026
)


@dataclass(frozen=True)
class PlateFormat:
    name: str  # a country code, or the regex itself
    pattern: re.Pattern[str]
    prefix: str = ""  # a country code the plate's band may show, stripped before matching

    def matches(self, text: str) -> bool:
        return self.pattern.fullmatch(text) is not None


def compile_formats(specs: list[str], key: str = "plates.formats") -> tuple[PlateFormat, ...]:
    """Country codes or regexes -> formats. Raises ``ConfigError`` naming ``key``."""
    problems: list[str] = []
    out: list[PlateFormat] = []
    for i, spec in enumerate(specs):
        code = spec.strip().upper()
        if code in COUNTRY_FORMATS:
            prefix = "" if code == "GENERIC" else code
            out.append(PlateFormat(code, re.compile(COUNTRY_FORMATS[code]), prefix))
            continue
        if spec.strip().isalpha() and len(spec.strip()) <= 8:
            problems.append(f"{key}[{i}]: unknown country code {spec!r} (known: "
                            f"{', '.join(COUNTRY_FORMATS)}; or give a regex)")
            continue
        try:
            out.append(PlateFormat(spec, re.compile(spec)))
        except re.error as exc:
            problems.append(f"{key}[{i}]: not a valid regular expression {spec!r}: {exc}")
    if not specs:
        problems.append(f"{key}: expected at least one country code or regex")
    if problems:
        raise ConfigError(problems)
    return tuple(out)


def normalise(text: str) -> str:
    """Upper case, without spaces, dashes, dots or underscores."""
    return _SEPARATORS.sub("", text).upper()


def looks_like_timestamp(raw: str) -> bool:
    return _TIMESTAMP.search(raw) is not None


@dataclass(frozen=True)
class Parsed:
    plate: str
    repairs: int  # look-alike characters swapped
    format: str
    dropped: int = 0  # leading characters dropped (a plate band's country code, misread)

    @property
    def cost(self) -> int:
        return self.repairs + self.dropped


def _swaps(text: str) -> list[tuple[int, str]]:
    out = []
    for i, ch in enumerate(text):
        swapped = TO_DIGIT.get(ch) or TO_LETTER.get(ch)
        if swapped:
            out.append((i, swapped))
    return out


def _invents_a_group(text: str, candidate: str, swapped: set[int]) -> bool:
    """Whether every letter, or every digit, of ``candidate`` was made by a swap: a badge
    "TAXI" is not the plate "TAX1", nor a date "20261201" the plate "20ZG1201"."""
    for kind in (str.isalpha, str.isdigit):
        kept = [i for i, c in enumerate(candidate) if kind(c)]
        if kept and all(i in swapped for i in kept):
            return True
    return False


def _repaired(text: str, fmt: PlateFormat, budget: int = MAX_REPAIRS) -> Parsed | None:
    """The single repair with fewest swaps that makes ``text`` match ``fmt``, or None.

    A repair that would invent a whole group (all the letters or all the digits) is none."""
    if fmt.matches(text):
        return Parsed(text, 0, fmt.name)
    swaps = _swaps(text)
    for n in range(1, min(budget, len(swaps)) + 1):
        found = set()
        for combo in itertools.combinations(swaps, n):
            chars = list(text)
            for i, ch in combo:
                chars[i] = ch
            candidate = "".join(chars)
            if fmt.matches(candidate) and not _invents_a_group(
                    text, candidate, {i for i, _ in combo}):
                found.add(candidate)
        if len(found) == 1:
            return Parsed(found.pop(), n, fmt.name)
        if found:
            return None  # two repairs of equal cost: ambiguous, unreadable
    return None


def parse_plate(raw: str, formats: tuple[PlateFormat, ...]) -> Parsed | None:
    """The plate in one recognised text, or None when it is not a plate of ``formats``.

    Tried: the text as read, without the format's own country code in front (the plate's
    band, at no cost), and without one or two leading characters (the band misread as
    something else: each dropped character costs like a repair). The cheapest reading
    wins; a tie between different plates is ambiguous (None), so "8MW1234" (BMW1234 with one
    repair, or MW1234 with one character dropped) is unreadable rather than a guess."""
    if not raw or looks_like_timestamp(raw) or any(c in raw for c in ":/"):
        return None
    text = normalise(raw)
    if not text.isascii() or not text.isalnum():
        return None
    best: list[Parsed] = []
    for fmt in formats:
        variants = [(text, 0), (text[1:], 1), (text[2:], 2)]
        if fmt.prefix and text.startswith(fmt.prefix):
            variants.append((text[len(fmt.prefix):], 0))  # the band's country code was read
        for variant, dropped in variants:
            if not MIN_LEN <= len(variant) <= MAX_LEN:
                continue
            parsed = _repaired(variant, fmt, MAX_REPAIRS - dropped)
            if parsed is not None:
                best.append(Parsed(parsed.plate, parsed.repairs, fmt.name, dropped))
    if not best:
        return None
    fewest = min(p.cost for p in best)
    plates = {p.plate for p in best if p.cost == fewest}
    if len(plates) > 1:
        return None
    return next(p for p in best if p.cost == fewest)


def repaired_confidence(confidence: float, parsed: Parsed) -> float:
    return confidence * REPAIR_PENALTY ** parsed.cost
