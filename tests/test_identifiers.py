"""Identifier checks: published examples, every reason path, derived columns, input forms."""

from __future__ import annotations

import datetime as dt
import re
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from schemas import identifiers as ids
from schemas.identifiers import (
    check_licence_ids,
    check_resident_ids,
    check_usccs,
    licence_id,
    licence_id_check_char,
    licence_id_check_chars,
    org_code_check_char,
    org_code_check_chars,
    resident_id_check_char,
    resident_id_check_chars,
    uscc_check_char,
    uscc_check_chars,
)

TODAY = dt.date(2026, 1, 1)
TYPE_CODE = "11100000000013338W011"  # STANDARDS.md example of a 证照类型代码
ISSUER = "91350100M000100Y43"


def resident(values, **options):
    """Check resident IDs against a fixed 'today'."""
    options.setdefault("today", TODAY)
    return check_resident_ids(values, **options)


def make_resident_id(body: str) -> str:
    """A resident ID with the right check character."""
    return body + resident_id_check_char(body)


def make_uscc(prefix8: str, org8: str) -> str:
    """A USCC with a correct organisation-code check and USCC check."""
    body = prefix8 + org8 + org_code_check_char(org8)
    return body + uscc_check_char(body)


def one_reason(result) -> str:
    """The reason of a one-value result (asserting it is invalid)."""
    assert not result.valid[0]
    return result.reason[0]


# --- published examples -------------------------------------------------------------------


@pytest.mark.parametrize("value", ["11010519491231002X", "360426199101010071"])
def test_published_resident_ids_are_valid(value: str) -> None:
    result = resident([value])
    assert result.valid.tolist() == [True]
    assert result.reason.tolist() == [None]
    assert result.normalised.tolist() == [value]


@pytest.mark.parametrize("value", ["91350100M000100Y43", "91110000600037341L", "91430111MA4L41YT1U"])
def test_published_usccs_are_valid(value: str) -> None:
    result = check_usccs([value])
    assert result.valid.tolist() == [True]
    assert result.check_ok[0] and result.org_check_ok[0]


def test_published_invalid_uscc_names_expected_check_character() -> None:
    reason = one_reason(check_usccs(["91350100M000100Y4Z"]))
    assert "校验位错误" in reason and "expected 3" in reason and "got Z" in reason


# --- check-character computation ----------------------------------------------------------


def test_check_char_functions_reproduce_examples() -> None:
    assert resident_id_check_char("11010519491231002") == "X"
    assert resident_id_check_chars(np.array(["11010519491231002", "36042619910101007"])).tolist() == ["X", "1"]
    assert uscc_check_chars(["91350100M000100Y4", "91110000600037341", "91430111MA4L41YT1"]).tolist() == ["3", "L", "U"]
    assert uscc_check_char("91350100M000100Y4") == "3"
    assert org_code_check_chars(["M000100Y", "60003734", "MA4L41YT"]).tolist() == ["4", "1", "1"]
    assert org_code_check_char("M000100Y") == "4"


def test_check_char_functions_return_unicode_arrays() -> None:
    out = resident_id_check_chars(np.array(["11010519491231002"] * 3, dtype="<U17"))
    assert out.dtype == np.dtype("<U1") and out.shape == (3,)
    assert uscc_check_chars(np.array([], dtype="<U17")).shape == (0,)


def test_org_code_check_maps_10_to_x_and_11_to_0() -> None:
    bodies = [f"{i:08d}" for i in range(2000)]
    chars = set(org_code_check_chars(bodies).tolist())
    assert "X" in chars and "0" in chars
    for body, char in zip(bodies[:200], org_code_check_chars(bodies[:200])):
        total = sum(int(c) * w for c, w in zip(body, (3, 7, 9, 10, 5, 8, 4, 2)))
        expected = 11 - total % 11
        assert char == {10: "X", 11: "0"}.get(expected, str(expected))


def test_licence_check_char_matches_stdnum_and_handles_ragged_lengths() -> None:
    from stdnum.iso7064 import mod_37_36

    payloads = ["A", "ZZ", TYPE_CODE + ISSUER + "ABC123" + "001", "0" * 70]
    assert licence_id_check_chars(payloads).tolist() == [mod_37_36.calc_check_digit(p) for p in payloads]
    assert licence_id_check_char("a12425gabc1234002") == "M"  # lower case accepted for generation


@pytest.mark.parametrize(
    "function, body",
    [
        (resident_id_check_chars, ["1101051949123100"]),
        (resident_id_check_chars, ["1101051949123100A"]),
        (uscc_check_chars, ["91350100M000100YI"]),
        (org_code_check_chars, ["M000100"]),
        (licence_id_check_chars, ["AB.C"]),
        (licence_id_check_chars, [None]),
    ],
)
def test_check_char_functions_reject_malformed_bodies(function, body) -> None:
    with pytest.raises(ValueError):
        function(body)


# --- resident ID reasons ---------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "   ", float("nan"), pd.NA])
def test_resident_empty_values(value) -> None:
    assert one_reason(resident([value])) == "空值 empty"


@pytest.mark.parametrize("value, length", [("1101051949123100", 16), ("1101051949123100200", 19), ("1", 1)])
def test_resident_wrong_length(value: str, length: int) -> None:
    reason = one_reason(resident([value]))
    assert reason.startswith("长度错误") and f"got {length}" in reason


def test_resident_bad_characters_name_the_position() -> None:
    assert "position 3" in one_reason(resident(["11a105194912310020"]))
    assert "position 17" in one_reason(resident(["1101051949123100X2"]))
    reason = one_reason(resident(["11010549123100A"]))
    assert "15位旧号码" in reason and "position 15" in reason


def test_resident_check_character_mismatch() -> None:
    assert one_reason(resident(["110105194912310021"])) == "校验位错误 check character mismatch: expected X, got 1"
    assert one_reason(resident(["11010519491231002Y"])) == "校验位错误 check character mismatch: expected X, got Y"


@pytest.mark.parametrize("body", ["11010519491332002", "11010519000229002", "11010500000101002", "11010519490431002"])
def test_resident_invalid_birth_date(body: str) -> None:
    reason = one_reason(resident([make_resident_id(body)]))
    assert reason.startswith("出生日期无效") and body[6:14] in reason


def test_resident_leap_day_is_a_real_date() -> None:
    assert resident([make_resident_id("11010520000229002")]).valid[0]


def test_resident_birth_date_in_the_future_depends_on_today() -> None:
    value = make_resident_id("11010520260102002")
    assert one_reason(resident([value])).startswith("出生日期晚于当前日期")
    assert check_resident_ids([value], today=dt.date(2026, 1, 2)).valid[0]
    assert one_reason(check_resident_ids([make_resident_id("11010529990101002")])).startswith("出生日期晚于")


def test_resident_unknown_region() -> None:
    reason = one_reason(resident([make_resident_id("99010519491231002")]))
    assert reason.startswith("行政区划代码未知") and "990105" in reason


def test_resident_region_rules() -> None:
    # 110111 房山区 exists since 1986: someone born in 1980 got it when numbers were issued.
    value = make_resident_id("11011119800101002")
    assert resident([value]).valid[0]
    assert "在出生年份有效的" in one_reason(resident([value], region_rule="birth_year"))
    assert resident([make_resident_id("99999919800101002")], region_rule="none").valid[0]
    # 110103 崇文区 was retired in 2010 but remains a known historical code.
    assert resident([make_resident_id("11010320150101002")]).valid[0]
    assert not resident([make_resident_id("11010320150101002")], region_rule="birth_year").valid[0]
    with pytest.raises(ValueError):
        resident(["x"], region_rule="nearby")


def test_resident_provincial_direct_codes() -> None:
    assert resident([make_resident_id("42900419950101002")]).valid[0]  # 仙桃市 under 429000


def test_resident_legacy_number_is_converted() -> None:
    result = resident(["110105491231002", "36042691010100X"])
    assert result.valid.tolist() == [True, False]
    assert result.normalised[0] == "11010519491231002X"
    assert result.legacy[0] and "15位旧号码" in result.note[0] and "11010519491231002X" in result.note[0]
    assert result.birth_date[0] == np.datetime64("1949-12-31") and result.gender[0] == "2"


def test_resident_legacy_with_bad_date() -> None:
    assert one_reason(resident(["110105491331002"])).startswith("出生日期无效")


def test_resident_lower_case_x_is_accepted_and_noted() -> None:
    result = resident(["11010519491231002x"])
    assert result.valid[0] and result.normalised[0] == "11010519491231002X"
    assert "小写x" in result.note[0]


def test_resident_surrounding_whitespace_is_stripped_and_noted() -> None:
    result = resident([" 360426199101010071\t", "360426199101010071\u3000"])
    assert result.valid.all() and (result.normalised == "360426199101010071").all()
    assert all("空白" in note for note in result.note)


def test_resident_derived_columns() -> None:
    result = resident(["11010519491231002X", "360426199101010071", "110105194912310021", "x"])
    assert result.birth_date[:3].tolist() == [dt.date(1949, 12, 31), dt.date(1991, 1, 1), dt.date(1949, 12, 31)]
    assert np.isnat(result.birth_date[3])
    assert result.gender.tolist() == ["2", "1", "2", ""]
    assert result.region.tolist() == ["110105", "360426", "110105", ""]
    assert result.note.tolist() == [None, None, None, None]
    assert result.normalised.tolist() == ["11010519491231002X", "360426199101010071", "", ""]


# --- USCC reasons --------------------------------------------------------------------------------


def test_uscc_empty_and_length() -> None:
    result = check_usccs([None, "", "91350100M000100Y4"])
    assert result.reason[:2].tolist() == ["空值 empty", "空值 empty"]
    assert result.reason[2].startswith("长度错误") and "got 17" in result.reason[2]


@pytest.mark.parametrize("value, position", [("I1350100M000100Y43", 1), ("9135010OM000100Y43", 8), ("91350100M0001O0Y43", 14)])
def test_uscc_bad_characters_name_the_position(value: str, position: int) -> None:
    reason = one_reason(check_usccs([value]))
    assert reason.startswith("格式错误") and f"position {position}:" in reason


def test_uscc_org_code_check_alone() -> None:
    body = "91350100M000100Y5"  # organisation code check should be 4
    value = body + uscc_check_char(body)
    result = check_usccs([value])
    assert result.check_ok[0] and not result.org_check_ok[0]
    assert result.reason[0] == "组织机构代码校验位错误 embedded GB 11714 organisation-code check mismatch: expected 4, got 5"


def test_uscc_both_checks_fail_reports_both() -> None:
    reason = one_reason(check_usccs(["91350100M000100Y53"]))
    assert "校验位错误" in reason and "组织机构代码校验位错误" in reason


@pytest.mark.parametrize("prefix", ["N2350100", "Y1350100", "A1110000", "51110000", "12110000"])
def test_uscc_letter_and_other_department_codes_are_legal(prefix: str) -> None:
    result = check_usccs([make_uscc(prefix, "MA4L41YT")])
    assert result.valid[0], result.reason[0]
    assert result.department[0] == prefix[0] and result.category[0] == prefix[1]


def test_uscc_lower_case_is_normalised() -> None:
    result = check_usccs(["91350100m000100y43"])
    assert result.valid[0] and result.normalised[0] == "91350100M000100Y43" and "小写" in result.note[0]


def test_uscc_derived_columns() -> None:
    result = check_usccs(["91350100M000100Y43", "9135010OM000100Y43"])
    assert result.region.tolist() == ["350100", ""]
    assert result.org_code.tolist() == ["M000100Y4", ""]
    assert result.check_ok.tolist() == [True, False]


# --- licence identifier reasons ---------------------------------------------------------------


VALID_LICENCE = licence_id(TYPE_CODE, ISSUER, "ABC123")


def test_licence_id_builder_and_valid_value() -> None:
    assert VALID_LICENCE == f"1.2.156.3005.2.{TYPE_CODE}.{ISSUER}.ABC123.001.9"
    result = check_licence_ids([VALID_LICENCE])
    assert result.valid[0]
    assert result.licence_type_code[0] == TYPE_CODE and result.issuer_code[0] == ISSUER
    assert result.serial[0] == "ABC123" and result.version[0] == "001"


@pytest.mark.parametrize(
    "value, fragment",
    [
        (None, "空值"),
        ("1.2.156", "长度错误"),
        (VALID_LICENCE.replace("ABC123", "A" * 300), "too long"),
        (VALID_LICENCE.replace("1.2.156", "1.2.157"), "前缀错误"),
        (VALID_LICENCE.replace(".91350100", "91350100"), "分段错误"),
        (VALID_LICENCE.replace("W011", "W01A"), "证照类型代码格式错误"),
        (VALID_LICENCE.replace("M000100Y43", "M0001O0Y43"), "颁发机构代码格式错误"),
        (VALID_LICENCE.replace("ABC123", "AB-123"), "流水号格式错误"),
        (VALID_LICENCE.replace("ABC123", "AB.123"), "流水号格式错误"),
        (VALID_LICENCE.replace(".001.", ".0A1."), "版本号格式错误"),
        (VALID_LICENCE[:-1] + "0", "expected 9, got 0"),
        (VALID_LICENCE[:-1] + "-", "expected 9, got U+002D"),
    ],
)
def test_licence_reasons(value, fragment: str) -> None:
    assert fragment in one_reason(check_licence_ids([value]))


def test_licence_embedded_usccs_are_checked_unless_disabled() -> None:
    bad_issuer = licence_id(TYPE_CODE, "91350100M000100Y44", "ABC123")
    bad_type = licence_id("91350100M000100Y44001", ISSUER, "ABC123")
    result = check_licence_ids([bad_issuer, bad_type])
    assert result.reason.tolist() == [
        "颁发机构代码校验失败 issuer USCC fails its check",
        "证照类型代码中的统一社会信用代码校验失败 the defining body's USCC inside the licence-type code fails its check",
    ]
    assert check_licence_ids([bad_issuer, bad_type], check_embedded_uscc=False).valid.all()


def test_licence_lower_case_and_whitespace() -> None:
    result = check_licence_ids([VALID_LICENCE.lower(), f"  {VALID_LICENCE}\n"])
    assert result.valid.all() and (result.normalised == VALID_LICENCE).all()
    assert "小写" in result.note[0] and "空白" in result.note[1]


def test_licence_mixed_lengths_keep_order() -> None:
    values = [licence_id(TYPE_CODE, ISSUER, "S" * k) for k in range(1, 30)]
    values[5] = values[5][:-1] + ("0" if values[5][-1] != "0" else "1")
    result = check_licence_ids(values)
    assert result.valid.tolist() == [k != 5 for k in range(29)]
    assert result.serial[6] == "S" * 7


# --- inputs, outputs, wrappers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        list,
        lambda v: np.array(v, dtype=object),
        lambda v: pd.Series(v, dtype="string"),
        lambda v: pd.Series(v, dtype=object),
        lambda v: pa.array(v, type=pa.string()),
        lambda v: pa.chunked_array([v[:2], v[2:]], type=pa.string()),
        lambda v: (x for x in v),
    ],
)
def test_input_forms(make) -> None:
    values = ["11010519491231002X", None, "360426199101010071", "bad"]
    result = resident(make(values))
    assert result.valid.tolist() == [True, False, True, False]
    assert result.reason[1] == "空值 empty"


def test_numbers_and_unicode_arrays() -> None:
    assert resident([360426199101010071]).valid[0]
    assert resident(np.array(["360426199101010071"], dtype="<U40")).valid[0]
    assert resident(np.array([b"360426199101010071"])).valid[0]
    assert len(resident([])) == 0 and len(check_usccs([])) == 0 and len(check_licence_ids([])) == 0


def test_non_ascii_characters_are_format_errors() -> None:
    assert one_reason(resident(["１１0105194912310020"])).startswith("格式错误")
    assert "非ASCII" in one_reason(check_usccs(["91350100M000100Y4中"]))


def test_many_blocks_keep_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ids, "_CHUNK_ROWS", 1000)
    rng = np.random.default_rng(7)
    bodies = np.array([f"110105{y}0101{s:03d}" for y, s in zip(rng.integers(1950, 2000, 20_000), rng.integers(0, 1000, 20_000))])
    values = np.strings.add(bodies, resident_id_check_chars(bodies))
    broken = rng.random(values.size) < 0.3
    values[broken] = np.strings.add(bodies[broken], "Y")
    result = resident(values)
    assert (result.valid == ~broken).all()
    assert (result.gender == np.where(np.strings.slice(bodies, 16, 17).astype(int) % 2 == 1, "1", "2")).all()


def test_result_frame_and_records() -> None:
    result = resident(["11010519491231002X", "x"])
    frame = result.to_frame()
    assert list(frame.columns) == ["valid", "reason", "normalised", "note", "birth_date", "gender", "region", "legacy"]
    records = result.records(["11010519491231002X", "x"])
    assert records[0] == {"value": "11010519491231002X", "valid": True, "reason": None,
                          "normalised": "11010519491231002X", "note": None}
    assert records[1]["normalised"] is None
    assert "licence_type_code" in check_licence_ids([VALID_LICENCE]).to_frame().columns


def test_per_value_wrappers_and_dispatch() -> None:
    assert ids.is_valid_resident_id("11010519491231002X") and ids.resident_id_reason("11010519491231002X") is None
    assert ids.normalise_resident_id("110105491231002") == "11010519491231002X"
    assert ids.normalise_resident_id("x") is None
    assert ids.is_valid_uscc("91350100M000100Y43") and "expected 3" in ids.uscc_reason("91350100M000100Y4Z")
    assert ids.is_valid_licence_id(VALID_LICENCE) and ids.licence_id_reason(VALID_LICENCE) is None
    assert ids.check("uscc", ["91350100M000100Y43"]).valid[0]
    with pytest.raises(ValueError):
        ids.check("passport", ["x"])


def test_reasons_are_safe_for_json_lines() -> None:
    """The CLI writes reasons and notes without escaping: no quotes, backslashes or control characters."""
    samples = ["", "1", '"', "\\", "\x01" * 18, "1101051949123100\x00X", "1101051949123100\"X", "中" * 18,
               "91350100M000100Y4\\", VALID_LICENCE[:-1] + '"', VALID_LICENCE.replace("ABC123", 'A"\\1'), "110105491331002"]
    texts = []
    for check in (resident, check_usccs, check_licence_ids):
        result = check(samples)
        texts += [t for t in result.reason.tolist() + result.note.tolist() if t]
    assert texts and not [t for t in texts if re.search(r'["\\\x00-\x1f]', t)]


@pytest.mark.slow
def test_throughput_is_vectorised() -> None:
    """A loose floor that only a per-value Python loop would miss (the real figures are in the report)."""
    rng = np.random.default_rng(3)
    bodies = np.strings.add("11010519800101", np.strings.zfill(rng.integers(0, 1000, 200_000).astype(str), 3))
    values = np.strings.add(bodies, resident_id_check_chars(bodies))
    start = time.perf_counter()
    resident(values)
    assert values.size / (time.perf_counter() - start) > 150_000
