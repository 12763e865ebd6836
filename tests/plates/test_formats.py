"""Plate formats: normalisation, look-alike repair only where demanded, non-plates refused."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.errors import ConfigError
from gateway.plates.formats import (
    MAX_REPAIRS,
    TO_DIGIT,
    TO_LETTER,
    compile_formats,
    normalise,
    parse_plate,
)

TR = compile_formats(["TR"])
EU = compile_formats(["TR", "DE", "NL", "GB", "FR"])


def plate(raw: str, formats=EU) -> str | None:
    parsed = parse_plate(raw, formats)
    return parsed.plate if parsed else None


@pytest.mark.parametrize(("raw", "expected"), [
    ("34ABC123", "34ABC123"), ("34 abc 123", "34ABC123"), ("06-A-1234", "06A1234"),
    ("TR 34 ABC 123", "34ABC123"),  # the EU band's country code read with the plate
    ("34 H 1234", "34H1234"),
    ("B-MW 1234", "BMW1234"), ("AB-12-CD", "AB12CD"), ("AB12 CDE", "AB12CDE"),
    ("AB-123-CD", "AB123CD"),
])
def test_plates_of_the_configured_formats_are_read(raw, expected):
    assert plate(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("34A8C123", "34ABC123"),  # a letter is demanded where 8 was read
    ("O6ABC12", "06ABC12"),  # a digit is demanded where O was read
    ("34ABCI23", "34ABC123"),
    ("3SAB12", "35AB12"),
])
def test_look_alikes_are_repaired_where_the_format_demands_it(raw, expected):
    parsed = parse_plate(raw, TR)
    assert parsed is not None and parsed.plate == expected and parsed.repairs == 1


def test_no_repair_where_the_text_already_fits():
    parsed = parse_plate("34BSZ862", TR)  # B, S, Z, 8, 6, 2 all stand where they belong
    assert parsed is not None and parsed.plate == "34BSZ862" and parsed.repairs == 0


@pytest.mark.parametrize(("raw", "expected"), [
    ("M HG-142-G", None),  # the NL band read as M: HG142G, or DE MHG1426 with a repair
    ("M AB12 CDE", "AB12CDE"),  # a GB plate with something read in front
    ("126 AB 390", None),  # the TR band read as 1: 26AB390, or 12GAB390 with a repair
    ("X34ABC123", "34ABC123"),
    ("8MW1234", None),  # BMW1234 (one repair) or MW1234 (one dropped): unreadable
])
def test_a_misread_band_in_front_costs_like_a_repair(raw, expected):
    assert plate(raw) == expected


def test_two_equally_cheap_repairs_are_unreadable_not_a_guess():
    either = compile_formats([r"^(?:[A-Z]{2}[0-9]{2}|[0-9]{2}[A-Z]{2})$"])
    assert parse_plate("B8Z2", either) is None  # BB22 or 88ZZ: no way to tell


def test_a_regex_format_is_matched_after_normalisation():
    custom = compile_formats([r"^K[0-9]{3}$"])
    assert plate("k-123", custom) == "K123"
    assert plate("K12", custom) is None


@pytest.mark.parametrize("raw", [
    "12:34", "12:34:56", "2026-12-01", "2026-12-01 12:34:56", "01.12.2026", "1/12/26",
    "TOYOTA", "HYBRID", "TAXI", "4MOTION", "DIESEL", "GTI", "", "34A1", "34ABC12345",
    "34ÄBC123", "34ABC 12€", "20261201",
])
def test_text_that_is_not_a_plate_is_refused(raw):
    assert plate(raw) is None


def test_a_bad_regex_or_unknown_code_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError) as err:
        compile_formats(["TR", "([", "XX"], key="plates.formats")
    assert err.value.problems == [
        "plates.formats[1]: not a valid regular expression '([': unterminated character set "
        "at position 1",
        "plates.formats[2]: unknown country code 'XX' (known: TR, DE, NL, GB, FR, GENERIC; or "
        "give a regex)"]


tr_plates = st.from_regex(re.compile(r"^[0-9]{2}[A-Z]{1,3}[0-9]{2,4}$"), fullmatch=True)


@given(tr_plates, st.lists(st.sampled_from([" ", "  ", ""]), min_size=8, max_size=8),
       st.booleans())
def test_any_tr_plate_however_spaced_reads_as_itself(p, seps, lower):
    raw = "".join(c + s for c, s in zip(p, seps + [""] * len(p), strict=False))
    parsed = parse_plate(raw.lower() if lower else raw, TR)
    assert parsed is not None and parsed.plate == p and parsed.repairs == 0


@given(st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ -:", max_size=12))
def test_a_result_always_fits_a_format_and_differs_only_by_look_alikes(raw):
    parsed = parse_plate(raw, EU)
    if parsed is None:
        return
    text = normalise(raw)
    assert any(f.matches(parsed.plate) for f in EU)
    diffs = [(a, b) for a, b in zip(text[-len(parsed.plate):], parsed.plate, strict=True)
             if a != b]
    assert len(diffs) == parsed.repairs and parsed.cost <= MAX_REPAIRS
    assert len(text) - len(parsed.plate) in (parsed.dropped, 2)  # 2: a band's own code
    assert all(TO_DIGIT.get(a) == b or TO_LETTER.get(a) == b for a, b in diffs)
