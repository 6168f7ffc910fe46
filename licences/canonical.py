"""The canonical serialisation a licence seal covers: JSON per RFC 8785 (JCS) for the values a licence holds.

规范化序列化：签章覆盖的字节。

Rules (JCS, RFC 8785, restricted to what a licence contains):
- UTF-8, no insignificant whitespace, object members sorted by their keys' UTF-16 code units;
- strings escaped as ECMAScript JSON.stringify does (\\" \\\\ \\b \\f \\n \\r \\t, other controls as \\u00xx,
  everything else literal — Chinese stays Chinese);
- integers in decimal; floats in the shortest round-trip form with ECMAScript's exponent style
  (1e+21, 1e-7); NaN and infinities are refused; booleans and null as literals;
- dates are written as ISO 8601 strings (YYYY-MM-DD), timestamps as UTC `YYYY-MM-DDTHH:MM:SSZ`
  (whole seconds, so the value survives a database round trip on every backend).

The sealed document (`sealed_document`) holds the GB/T 36903 metadata under their Chinese element
names, the face content (照面信息) and a 签章 block naming signer, seal name, algorithm, key id and
sealing time — so a seal cannot be moved to another key or algorithm. 证照状态 is *not* sealed: it
changes during a licence's life (注销, 吊销, 过期) and is asked of the hub, which answers with the
current status.
"""

from __future__ import annotations

import json
import math
import re

import orjson
from datetime import date, datetime, timezone
from typing import Any

FORMAT = "hub-elicence/1"

# GB/T 36903 element name → licence column (the order is only for reading; JCS sorts).
METADATA_FIELDS: tuple[tuple[str, str], ...] = (
    ("证照标识", "licence_id"),
    ("证照名称", "licence_name"),
    ("证照类型代码", "licence_type_code"),
    ("证照编号", "licence_number"),
    ("颁发机构", "issuer"),
    ("颁发机构代码", "issuer_code"),
    ("颁发日期", "issue_date"),
    ("持证主体", "holder_name"),
    ("持证主体代码", "holder_code"),
    ("持证主体代码类型", "holder_code_type"),
    ("有效期起始日期", "valid_from"),
    ("有效期截止日期", "valid_until"),
    ("关联证照标识", "related_licence_id"),
)
FACE = "照面信息"
SEAL = "签章"
SEAL_FIELDS: tuple[tuple[str, str], ...] = (
    ("签章人", "seal_signer"),
    ("签章名称", "seal_name"),
    ("签章算法", "seal_algorithm"),
    ("密钥标识", "seal_key_id"),
    ("签章时间", "sealed_at"),
)

_encode_string = json.JSONEncoder(ensure_ascii=False).encode  # same escapes as ECMAScript JSON.stringify


class CanonicalError(ValueError):
    """A value JCS cannot represent (NaN, infinity, a non-string key, an unknown type)."""


def timestamp_text(value: datetime) -> str:
    """An aware timestamp as canonical UTC text, whole seconds: 2026-12-01T08:00:00Z."""
    if value.tzinfo is None:
        raise CanonicalError(f"需要带时区的时间 timezone-aware datetime required: {value.isoformat()}")
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def number_text(value: float) -> str:
    """A float as ECMAScript Number.prototype.toString writes it (the JCS rule), from Python's shortest repr."""
    if math.isnan(value) or math.isinf(value):
        raise CanonicalError(f"JSON 不能表示 {value!r}")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction.rstrip("0")).lstrip("0") if fraction else whole.lstrip("0")
    # value = 0.d1d2…dk × 10^n (ECMAScript's n), from repr's mantissa and exponent
    point = len(whole) if whole != "0" else -(len(fraction) - len(fraction.lstrip("0")))
    n = point + int(exponent or 0)
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        text = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e > 0 else "-") + str(abs(e))
    return sign + text


def _utf16_key(key: str) -> bytes:
    """Sort key of JCS: the UTF-16 code units of the member name."""
    return key.encode("utf-16-be", "surrogatepass")


def _write(value: Any, out: list[str]) -> None:
    """Append the canonical text of one value."""
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_encode_string(value))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(number_text(value))
    elif isinstance(value, datetime):
        out.append('"' + timestamp_text(value) + '"')
    elif isinstance(value, date):
        out.append('"' + value.isoformat() + '"')
    elif isinstance(value, dict):
        keys = list(value)
        if not all(isinstance(k, str) for k in keys):
            raise CanonicalError("JSON 对象的键必须是字符串 object keys must be strings")
        # Code-point order equals UTF-16 order unless a key has a character above U+FFFF.
        keys.sort(key=_utf16_key if any(max(k, default="\0") > "\uffff" for k in keys) else None)
        out.append("{")
        for i, key in enumerate(keys):
            if i:
                out.append(",")
            out.append(_encode_string(key))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise CanonicalError(f"不支持的类型 unsupported type in canonical JSON: {type(value).__name__}")


def canonical_bytes_reference(value: Any) -> bytes:
    """The JCS (RFC 8785) bytes of a JSON-like value, written value by value (the reference implementation)."""
    out: list[str] = []
    _write(value, out)
    return "".join(out).encode("utf-8")


_ASTRAL = re.compile("[\U00010000-\U0010FFFF]")
_SORTED = orjson.OPT_SORT_KEYS


def _fast_dumps(value: Any) -> bytes:
    """orjson over a normalised value: UTF-8, no whitespace, keys sorted by UTF-8 bytes (= code points = UTF-16
    order for BMP keys), ECMAScript's escapes (\\" \\\\ \\b \\f \\n \\r \\t, \\u00xx for other controls), Chinese literal.
    About 8 µs less per licence than the standard library's encoder (half the canonicalisation cost)."""
    return orjson.dumps(value, option=_SORTED)


class _NeedsReference(Exception):
    """A value the fast path cannot write exactly as JCS does."""


def _plain(value: Any) -> Any:
    """The value with dates as text and integral floats as ints; _NeedsReference where json.dumps would differ from JCS."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        if value.is_integer() and abs(value) < 1e16:
            return int(value)
        if not (1e-4 <= abs(value) < 1e16):  # outside this, repr writes an exponent where ECMAScript does not
            raise _NeedsReference
        return value
    if kind is dict:
        if _ASTRAL.search("".join(value)):  # code-point order differs from UTF-16 order
            raise _NeedsReference
        return {k: v if type(v) is str else _plain(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [v if type(v) is str else _plain(v) for v in value]
    if kind is date:
        return value.isoformat()
    if kind is datetime:
        return timestamp_text(value)
    raise _NeedsReference


def canonical_bytes(value: Any) -> bytes:
    """The JCS (RFC 8785) bytes of a JSON-like value (dates and aware datetimes written as ISO text).

    Fast path: orjson (sorted keys, no whitespace, no ASCII escaping) over a normalised copy; it
    writes exactly what JCS writes for BMP keys and floats in [1e-4, 1e16), and the reference writer takes
    everything else. A property test checks that both agree.
    """
    try:
        return _fast_dumps(_plain(value))
    except (_NeedsReference, TypeError, ValueError, orjson.JSONEncodeError):  # e.g. an int beyond 64 bits
        return canonical_bytes_reference(value)


def sealed_document(licence: dict[str, Any]) -> dict[str, Any]:
    """The document a seal covers, from a licence mapping with clear holder code and face content (column names)."""
    document: dict[str, Any] = {"format": FORMAT}
    for element, column in METADATA_FIELDS:
        document[element] = licence.get(column)
    document[FACE] = licence.get("face_content")
    document[SEAL] = {element: licence.get(column) for element, column in SEAL_FIELDS}
    return document


def licence_from_document(document: dict[str, Any]) -> dict[str, Any]:
    """Column mapping of a sealed document (the inverse of sealed_document; dates stay ISO text)."""
    licence = {column: document.get(element) for element, column in METADATA_FIELDS}
    licence["face_content"] = document.get(FACE)
    licence.update({column: (document.get(SEAL) or {}).get(element) for element, column in SEAL_FIELDS})
    return licence


def document_bytes(licence: dict[str, Any]) -> bytes:
    """Canonical bytes of the sealed document of a licence: canonical_bytes(sealed_document(licence)).

    Built straight into the normalised form (the document's own keys are fixed BMP text; text and None pass
    through untouched; only other values take the general walk), which halves the cost per licence when a
    million are sealed or verified."""
    get = licence.get
    document: dict[str, Any] = {"format": FORMAT}
    for element, column in _DOCUMENT_FIELDS:
        document[element] = get(column)
    seal = {}
    try:
        for element, column in SEAL_FIELDS:
            value = get(column)
            seal[element] = value if value is None or type(value) is str else _plain(value)  # sealed_at: text
    except (_NeedsReference, TypeError, ValueError):
        return canonical_bytes_reference(sealed_document(licence))
    return assembled_document_bytes(document, seal)


def assembled_document_bytes(document: dict[str, Any], seal: dict[str, Any] | None = None) -> bytes:
    """Canonical bytes of a sealed document laid out as sealed_document lays it out, its values as the columns
    hold them: values other than text and None are normalised in place, then orjson writes it.

    seal: the 签章 block already normalised (text or None; sealing builds one per key and reuses it), added after
    the normalisation of the rest, which it does not need."""
    try:
        for element, value in document.items():
            if value is not None and type(value) is not str:
                document[element] = _plain(value)
        if seal is not None:
            document[SEAL] = seal
        return _fast_dumps(document)
    except (_NeedsReference, TypeError, ValueError, orjson.JSONEncodeError):
        if seal is not None:
            document[SEAL] = seal
        return canonical_bytes_reference(document)


_DOCUMENT_FIELDS = (*METADATA_FIELDS, (FACE, "face_content"))
