"""Agreement with python-stdnum on over a million generated values, plus hypothesis properties.

Where python-stdnum is not a valid oracle (STANDARDS.md), the comparison is restricted and the
excluded cases are tested against the standard directly:

* 15-digit legacy resident IDs: stdnum rejects them; the hub converts them (tested separately).
* Region rule: stdnum requires the region code to be valid *in the birth year*. The hub's default
  ('known') accepts any current or historical GB/T 2260 code, because the code is the one in force
  when the number was issued, often years after birth. So the oracle is compared with
  ``region_rule='birth_year'``, and for the default we check that it accepts a superset whose
  extra values differ only by the region-at-birth-year rule.
* 710000 台湾省 has only a province line in loc.dat, so stdnum fails it (with a KeyError); excluded.
* stdnum does not check future birth dates: the comparison passes a far-future ``today``.
* USCC: stdnum requires the first 8 characters to be digits and ignores the embedded GB 11714
  organisation code. Its verdict is compared with ``check_ok`` on values whose first 8 characters
  are digits; the organisation-code check and letter department codes are compared with a
  straightforward implementation of STANDARDS.md written here.
* Licence IDs: stdnum's MOD 37,36 is applied to the payload after a regular expression for the
  GB/T 36904 structure, itself written here from STANDARDS.md.
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stdnum.cn import ric
from stdnum.cn import uscc as stdnum_uscc
from stdnum.iso7064 import mod_37_36

from schemas.code_tables import load_table
from schemas.identifiers import (
    MOD_37_36_ALPHABET,
    USCC_ALPHABET,
    check_licence_ids,
    check_resident_ids,
    check_usccs,
    licence_id_check_char,
    licence_id_check_chars,
    org_code_check_chars,
    resident_id_check_char,
    resident_id_check_chars,
    uscc_check_char,
    uscc_check_chars,
)

FAR_FUTURE = dt.date(9999, 12, 31)
N_RESIDENT = 350_000
N_USCC = 400_000
N_LICENCE = 300_000  # 1,050,000 oracle comparisons in all


# --- vectorised generation helpers ----------------------------------------------------------


def chars(rng: np.random.Generator, alphabet: str, rows: int, width: int) -> np.ndarray:
    """Random strings of ``width`` characters from ``alphabet``."""
    codes = np.array([ord(c) for c in alphabet], dtype=np.uint32)
    return np.ascontiguousarray(codes[rng.integers(0, len(alphabet), size=(rows, width))]).view(f"<U{width}").ravel()


def join(*parts: np.ndarray | str) -> np.ndarray:
    """Element-wise concatenation."""
    out = parts[0]
    for part in parts[1:]:
        out = np.strings.add(out, part)
    return out


def substitute(rng: np.random.Generator, values: np.ndarray, alphabet: str) -> np.ndarray:
    """Each value with one character replaced by a random one from ``alphabet`` (maybe the same)."""
    width = values.dtype.itemsize // 4
    matrix = values.view(np.uint32).reshape(values.size, width).copy()
    lengths = np.strings.str_len(values)
    position = (rng.random(values.size) * lengths).astype(np.int64)
    codes = np.array([ord(c) for c in alphabet], dtype=np.uint32)
    matrix[np.arange(values.size), position] = codes[rng.integers(0, len(alphabet), values.size)]
    return matrix.view(f"<U{width}").ravel()


def transpose(rng: np.random.Generator, values: np.ndarray) -> np.ndarray:
    """Each value with two adjacent characters swapped."""
    width = values.dtype.itemsize // 4
    matrix = values.view(np.uint32).reshape(values.size, width).copy()
    lengths = np.strings.str_len(values)
    position = (rng.random(values.size) * (lengths - 1)).astype(np.int64)
    rows = np.arange(values.size)
    left = matrix[rows, position].copy()
    matrix[rows, position] = matrix[rows, position + 1]
    matrix[rows, position + 1] = left
    return matrix.view(f"<U{width}").ravel()


def mix(rng: np.random.Generator, valid: np.ndarray, alphabet: str, random_width: tuple[int, int]) -> np.ndarray:
    """Valid values, single substitutions, adjacent transpositions and random strings, in equal parts."""
    n = valid.size
    quarter = n // 4
    randoms = [chars(rng, alphabet, quarter // (random_width[1] - random_width[0] + 1) + 1, width)
               for width in range(random_width[0], random_width[1] + 1)]
    random_part = np.concatenate([r.astype(object) for r in randoms])[:quarter]
    parts = [valid[:quarter], substitute(rng, valid[quarter : 2 * quarter], alphabet),
             transpose(rng, valid[2 * quarter : 3 * quarter]), random_part, valid[3 * quarter + quarter :]]
    return np.concatenate([p.astype(object) for p in parts]).astype(str)


def mismatches(values: np.ndarray, ours: np.ndarray, oracle: np.ndarray, limit: int = 5) -> list[tuple[str, bool, bool]]:
    """First few disagreements, for the assertion message."""
    rows = np.flatnonzero(ours != oracle)[:limit]
    return [(str(values[i]), bool(ours[i]), bool(oracle[i])) for i in rows]


# --- resident IDs --------------------------------------------------------------------------


def stdnum_ric_valid(value: str) -> bool:
    """stdnum's verdict; a KeyError (province known, county not) counts as invalid."""
    try:
        return ric.is_valid(value)
    except KeyError:
        return False


def resident_sample(rng: np.random.Generator, n: int) -> np.ndarray:
    """Plausible 18-digit resident IDs: table regions (current and retired) or random ones, dates 1890–2030."""
    regions = np.array(load_table("regions").codes)
    region = regions[rng.integers(0, regions.size, n)]
    unknown = rng.random(n) < 0.05
    region[unknown] = chars(rng, "0123456789", int(unknown.sum()), 6)
    days = rng.integers(0, (dt.date(2030, 12, 31) - dt.date(1890, 1, 1)).days, n)
    dates = np.strings.replace((np.datetime64("1890-01-01") + days.astype("timedelta64[D]")).astype(str), "-", "")
    odd_dates = rng.random(n) < 0.05  # impossible dates: month 13, day 32, Feb 30 …
    dates[odd_dates] = chars(rng, "0123456789", int(odd_dates.sum()), 8)
    bodies = join(region, dates, chars(rng, "0123456789", n, 3))
    valid = join(bodies, resident_id_check_chars(bodies))
    lower = rng.random(n) < 0.02
    valid[lower] = np.strings.lower(valid[lower])
    return valid


@pytest.mark.slow
def test_resident_ids_agree_with_stdnum() -> None:
    rng = np.random.default_rng(11643)
    values = mix(rng, resident_sample(rng, N_RESIDENT), "0123456789X", (17, 19))
    ours = check_resident_ids(values, today=FAR_FUTURE, region_rule="birth_year").valid
    compared = (np.strings.str_len(values) != 15) & ~np.strings.startswith(values, "71")
    oracle = np.array([stdnum_ric_valid(v) for v in values[compared].tolist()])
    assert compared.sum() > 0.99 * values.size
    assert 0.08 < oracle.mean() < 0.6  # the sample exercises both outcomes
    assert (ours[compared] == oracle).all(), mismatches(values[compared], ours[compared], oracle)

    # Default rule: a superset of stdnum's; the extra values fail only the region-at-birth-year rule.
    known = check_resident_ids(values[compared], today=FAR_FUTURE).valid
    assert not (oracle & ~known).any()
    extra = known & ~oracle
    assert extra.any() and not ours[compared][extra].any()


def test_legacy_resident_ids_against_the_standard() -> None:
    """stdnum rejects 15-digit numbers: convert by hand (insert 19, compute the check) and compare."""
    rng = np.random.default_rng(15)
    eighteen = resident_sample(rng, 5000)
    eighteen = eighteen[np.strings.startswith(np.strings.slice(eighteen, 6, 8), "19")]
    fifteen = join(np.strings.slice(eighteen, 0, 6), np.strings.slice(eighteen, 8, 17))
    legacy = check_resident_ids(fifteen, today=FAR_FUTURE)
    full = check_resident_ids(eighteen, today=FAR_FUTURE)
    assert (legacy.valid == full.valid).all()
    assert (legacy.normalised[legacy.valid] == np.strings.upper(eighteen[legacy.valid])).all()
    by_hand = [v[:6] + "19" + v[6:] for v in fifteen[:200].tolist()]
    assert [b + resident_id_check_char(b) for b in by_hand] == [str(e).upper() for e in eighteen[:200]]


# --- USCC ------------------------------------------------------------------------------------

ORG_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def reference_uscc_valid(value: str) -> bool:
    """STANDARDS.md, literally: format, mod-31 check, GB 11714 check of characters 9–17."""
    value = value.upper()
    if not re.fullmatch(r"[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}", value):
        return False
    weights = [pow(3, i, 31) for i in range(17)]
    check = (31 - sum(USCC_ALPHABET.index(c) * w for c, w in zip(value, weights)) % 31) % 31
    org_total = sum(ORG_ALPHABET.index(c) * w for c, w in zip(value[8:16], (3, 7, 9, 10, 5, 8, 4, 2)))
    org_check = {10: "X", 11: "0"}.get(11 - org_total % 11, str(11 - org_total % 11))
    return value[17] == USCC_ALPHABET[check] and value[16] == org_check


def uscc_sample(rng: np.random.Generator, n: int) -> np.ndarray:
    """USCCs with a correct embedded organisation code: table categories (incl. N, Y, A) or digits."""
    categories = np.array(load_table("uscc_categories").codes)
    head = categories[rng.integers(0, categories.size, n)]
    digits = rng.random(n) < 0.5
    head[digits] = chars(rng, "0123456789", int(digits.sum()), 2)
    regions = np.array(load_table("regions").codes)
    org = chars(rng, USCC_ALPHABET, n, 8)
    bodies = join(head, regions[rng.integers(0, regions.size, n)], org, org_code_check_chars(org))
    return join(bodies, uscc_check_chars(bodies))


@pytest.mark.slow
def test_usccs_agree_with_stdnum_and_the_standard() -> None:
    rng = np.random.default_rng(32100)
    alphabet = USCC_ALPHABET + "IOZSVxy"
    values = mix(rng, uscc_sample(rng, N_USCC), alphabet, (17, 19))
    result = check_usccs(values)
    first8_digits = np.array([v[:8].isdigit() and v[:8].isascii() for v in values.tolist()])
    oracle = np.array([stdnum_uscc.is_valid(v) for v in values[first8_digits].tolist()])
    assert first8_digits.mean() > 0.4 and 0.2 < oracle.mean() < 0.8
    ours = result.check_ok[first8_digits]
    assert (ours == oracle).all(), mismatches(values[first8_digits], ours, oracle)
    # Everything, letter departments included, against STANDARDS.md (both checks).
    sample = rng.choice(values.size, 100_000, replace=False)
    reference = np.array([reference_uscc_valid(v) for v in values[sample].tolist()])
    assert (result.valid[sample] == reference).all(), mismatches(values[sample], result.valid[sample], reference)
    assert result.valid[~first8_digits].any()  # letter department codes do pass


# --- licence identifiers ------------------------------------------------------------------------

_U = "[0-9A-HJ-NPQRTUWXY]"
LICENCE_RE = re.compile(rf"1\.2\.156\.3005\.2\.({_U}{{2}}\d{{6}}{_U}{{10}}\d{{3}})\.({_U}{{2}}\d{{6}}{_U}{{10}})\.([0-9A-Z]+)\.(\d{{3}})\.(.)")


def oracle_licence_valid(value: str) -> bool:
    """GB/T 36904 structure by regular expression, then stdnum's MOD 37,36 over payload + check."""
    match = LICENCE_RE.fullmatch(value.upper())
    return bool(match) and mod_37_36.is_valid("".join(match.groups()))


def licence_sample(rng: np.random.Generator, n: int) -> np.ndarray:
    """Licence IDs over the known type codes, random valid issuers and serials of 1–20 characters."""
    type_codes = np.array(load_table("licence_types").column("type_code"))
    issuers = uscc_sample(rng, n)
    issuers[::10] = chars(rng, USCC_ALPHABET, issuers[::10].size, 18)  # some issuers fail their own check
    serial = np.concatenate([chars(rng, MOD_37_36_ALPHABET, n // 20 + 1, width).astype(object) for width in range(1, 21)])[:n]
    rng.shuffle(serial)
    serial = serial.astype(str)
    version = np.strings.zfill(rng.integers(0, 1000, n).astype(str), 3)
    types = type_codes[rng.integers(0, type_codes.size, n)]
    payload = join(types, issuers, serial, version)
    return join("1.2.156.3005.2.", types, ".", issuers, ".", serial, ".", version, ".", licence_id_check_chars(payload))


@pytest.mark.slow
def test_licence_ids_agree_with_stdnum() -> None:
    rng = np.random.default_rng(36904)
    valid = licence_sample(rng, N_LICENCE)
    values = mix(rng, valid, MOD_37_36_ALPHABET + ".-a", (63, 80))
    ours = check_licence_ids(values, check_embedded_uscc=False).valid
    oracle = np.array([oracle_licence_valid(v) for v in values.tolist()])
    assert 0.2 < oracle.mean() < 0.8
    assert (ours == oracle).all(), mismatches(values, ours, oracle)
    # With the embedded checks on, valid means: the oracle agrees and both embedded USCCs pass.
    strict = check_licence_ids(values).valid
    sample = np.flatnonzero(oracle)[:50_000]
    expected = [reference_uscc_valid(v[15:33]) and reference_uscc_valid(v[37:55]) for v in np.strings.upper(values[sample]).tolist()]
    assert (strict[sample] == np.array(expected)).all()
    assert not strict[~oracle].any()


# --- hypothesis properties ----------------------------------------------------------------------

DIGITS = st.text("0123456789", min_size=17, max_size=17)
USCC_BODIES = st.text(USCC_ALPHABET, min_size=17, max_size=17)
USCC_WELL_FORMED_BODIES = st.builds(lambda a, b, c: a + b + c, st.text(USCC_ALPHABET, min_size=2, max_size=2),
                                    st.text("0123456789", min_size=6, max_size=6), st.text(USCC_ALPHABET, min_size=9, max_size=9))
PAYLOADS = st.text(MOD_37_36_ALPHABET, min_size=1, max_size=80)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(DIGITS)
def test_resident_check_char_matches_stdnum(body: str) -> None:
    assert resident_id_check_char(body) == ric.calc_check_digit(body + "0")


@SETTINGS
@given(USCC_BODIES)
def test_uscc_check_char_matches_stdnum(body: str) -> None:
    assert uscc_check_char(body) == stdnum_uscc.calc_check_digit(body)


@SETTINGS
@given(PAYLOADS)
def test_licence_check_char_matches_stdnum(payload: str) -> None:
    assert licence_id_check_char(payload) == mod_37_36.calc_check_digit(payload)


@SETTINGS
@given(st.dates(dt.date(1900, 1, 1), dt.date(2025, 12, 31)), st.integers(0, 999), st.integers(0, 17), st.sampled_from("0123456789X"))
def test_any_single_substitution_of_a_resident_id_is_caught(birth: dt.date, sequence: int, position: int, char: str) -> None:
    body = f"110105{birth:%Y%m%d}{sequence:03d}"
    value = body + resident_id_check_char(body)
    changed = value[:position] + char + value[position + 1 :]
    result = check_resident_ids([value, changed], today=FAR_FUTURE, region_rule="none")
    assert result.valid[0]
    # ISO 7064 MOD 11-2 detects every single-character substitution.
    assert changed == value or not result.valid[1]


@SETTINGS
@given(USCC_WELL_FORMED_BODIES, st.integers(0, 16))
def test_any_adjacent_transposition_of_a_uscc_is_caught(body: str, position: int) -> None:
    value = body + uscc_check_char(body)
    swapped = value[:position] + value[position + 1] + value[position] + value[position + 2 :]
    result = check_usccs([value, swapped])
    assert result.check_ok[0]
    # Weights 3^i mod 31 differ pairwise, so every transposition of different characters changes the sum.
    assert swapped == value or not result.check_ok[1]


@SETTINGS
@given(st.lists(st.one_of(st.none(), st.text(max_size=90)), max_size=30))
def test_checks_never_raise_and_explain_every_invalid_value(values: list[str | None]) -> None:
    for check in (lambda v: check_resident_ids(v, today=dt.date(2026, 1, 1)), check_usccs, check_licence_ids):
        result = check(values)
        assert len(result) == len(values)
        assert all((reason is None) == bool(valid) for reason, valid in zip(result.reason.tolist(), result.valid.tolist()))
        assert not any(re.search(r'["\\\x00-\x1f]', text) for text in result.reason.tolist() + result.note.tolist() if text)
        # Column-wise and one-by-one give the same answer.
        assert [check([value]).reason[0] for value in values] == result.reason.tolist()


@SETTINGS
@given(st.dates(dt.date(1900, 1, 1), dt.date(1999, 12, 31)), st.integers(0, 999))
def test_legacy_conversion_round_trip(birth: dt.date, sequence: int) -> None:
    body = f"110105{birth:%Y%m%d}{sequence:03d}"
    eighteen = body + resident_id_check_char(body)
    fifteen = eighteen[:6] + eighteen[8:17]
    result = check_resident_ids([fifteen], today=dt.date(2026, 1, 1))
    assert result.valid[0] and result.normalised[0] == eighteen
    assert result.birth_date[0] == np.datetime64(birth) and result.gender[0] == ("1" if sequence % 2 else "2")
