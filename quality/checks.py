"""The check kinds a rule can name, each a vectorised function over a whole batch.

A check returns an Outcome: a boolean mask of the rows that fail and a way to explain them. Messages are
built only for failing rows, in Chinese, and never contain a full resident ID (masked when quoted).
Checks never raise for bad data; a check that lacks its reference data says so (``skipped``) instead of
failing every row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quality.catalogue import Rule, field_labels
from quality.frame import NO_DAY, Frame, day_text, day_texts
from quality.references import comparable_names
from schemas.code_tables import load_table

Messages = Callable[[np.ndarray], Sequence[str]]


@dataclass
class Outcome:
    """Result of one rule over one batch."""

    fail: np.ndarray
    message: str | Messages
    skipped: str | None = None  # why the rule could not run (then nothing fails)
    # Cross-source facts of failing rows (compare_* checks): arrays aligned with np.flatnonzero(fail).
    conflicts: dict[str, np.ndarray] = field(default_factory=dict)

    def messages(self, rows: np.ndarray) -> list[str]:
        """Messages for the given failing rows."""
        if isinstance(self.message, str):
            return [self.message] * len(rows)
        return [str(m) for m in self.message(rows)]


def _none(frame: Frame, reason: str) -> Outcome:
    """A rule that could not run: nothing fails, and the reason is kept."""
    return Outcome(np.zeros(frame.rows, dtype=bool), "", skipped=reason)


def _label(rule: Rule, name: str) -> str:
    """Chinese label of a field for messages (the rule name's subject for derived rules)."""
    return field_labels(rule.library).get(name, name)


def _masked(value: object) -> str:
    """A value for a message: resident-ID-like strings keep only region and sequence digits."""
    text = "" if value is None else str(value)
    if len(text) == 18 and text[:17].isdigit():
        return text[:6] + "********" + text[14:]
    return text


def _quoted(frame: Frame, name: str, rows: np.ndarray) -> list[str]:
    """The values of a column at rows, masked where they look like resident IDs."""
    return [_masked(v) for v in frame.strings_at(name, rows)]


def required(frame: Frame, rule: Rule) -> Outcome:
    """The field has a value."""
    name = rule.fields[0]
    return Outcome(~frame.present(name), f"{_label(rule, name)}为空（必填）")


def any_required(frame: Frame, rule: Rule) -> Outcome:
    """At least one of the fields the source has carries a value (e.g. a credit subject's USCC or ID number)."""
    names = [n for n in rule.fields if n in frame.columns]
    present = np.zeros(frame.rows, dtype=bool)
    for name in names:
        present |= frame.present(name)
    return Outcome(~present, f"{'、'.join(_label(rule, n) for n in names)}均为空（至少须填写一项）")


def _code_set(frame: Frame, table_name: str) -> pa.Array:
    """Codes, labels and recognised aliases of a code table."""
    table = load_table(table_name)
    accepted = list(table.codes) + [row["label"] for row in table.rows]
    accepted += list(frame.context.catalogue.aliases.get(table_name, {}))
    return pa.array(sorted(set(accepted)), pa.string())


def _membership(frame: Frame, rule: Rule, accepted: pa.Array, what: str) -> Outcome:
    """The field's value is one of ``accepted`` (when present)."""
    name = rule.fields[0]
    known = np.asarray(pc.fill_null(pc.is_in(frame.text(name), value_set=accepted), False).to_numpy(zero_copy_only=False))
    fail = frame.present(name) & ~known
    label = _label(rule, name)
    return Outcome(fail, lambda rows: [f"{label}“{v}”{what}" for v in _quoted(frame, name, rows)])


def code_table(frame: Frame, rule: Rule) -> Outcome:
    """The field's value is a code (or label, or recognised alias) of the rule's code table."""
    table = load_table(rule.params["table"])
    standard = f"（{table.standard}）" if table.standard else ""
    return _membership(frame, rule, _code_set(frame, rule.params["table"]), f"不在{table.title}{standard}中")


def allowed_values(frame: Frame, rule: Rule) -> Outcome:
    """The field's value is one the source agreed to send."""
    values = [str(v) for v in rule.params["values"]]
    return _membership(frame, rule, pa.array(values, pa.string()), f"不是约定取值（{'、'.join(values)}）之一")


def identifier(frame: Frame, rule: Rule) -> Outcome:
    """The field is a valid identifier of its kind (for a USCC: well formed; its check character is a separate rule)."""
    name, kind = rule.fields[0], rule.params["kind"]
    present = frame.present(name)
    if kind == "resident-id":
        check = frame.resident(name)
        fail = present & ~check.valid
    elif kind == "uscc":
        check = frame.uscc(name)
        fail = present & (check.department == "")
    else:
        check = frame.licence(name)
        fail = present & ~check.valid
    label = _label(rule, name)
    return Outcome(fail, lambda rows: [f"{label}无效：{r}" for r in check.reason[rows]])


def uscc_check(frame: Frame, rule: Rule) -> Outcome:
    """A well-formed USCC has the right check characters (GB 32100 and the embedded GB 11714 one)."""
    name = rule.fields[0]
    check = frame.uscc(name)
    fail = frame.present(name) & (check.department != "") & ~check.valid
    label = _label(rule, name)
    return Outcome(fail, lambda rows: [f"{label}校验位错误（可能为早期试点代码，请核实）：{r}" for r in check.reason[rows]])


def date_not_future(frame: Frame, rule: Rule) -> Outcome:
    """A date of something that happened is not after the run's reference date."""
    name = rule.fields[0]
    days = frame.days(name)
    fail = (days != NO_DAY) & (days > frame.context.reference_day)
    label, reference = _label(rule, name), frame.context.reference_date.isoformat()
    return Outcome(fail, lambda rows: [f"{label} {d} 晚于基准日期 {reference}" for d in day_texts(days[rows])])


def date_order(frame: Frame, rule: Rule) -> Outcome:
    """The first date is not after the second (when both are given)."""
    first, second = rule.fields[:2]
    a, b = frame.days(first), frame.days(second)
    fail = (a != NO_DAY) & (b != NO_DAY) & (a > b)
    la, lb = _label(rule, first), _label(rule, second)
    return Outcome(fail, lambda rows: [f"{la} {x} 晚于{lb} {y}" for x, y in zip(day_texts(a[rows]), day_texts(b[rows]))])


def format_(frame: Frame, rule: Rule) -> Outcome:
    """Every value could be read in its standard format (the normalisers' messages, minus recognised conventions)."""
    if "_errors" not in frame.columns:
        return Outcome(np.zeros(frame.rows, dtype=bool), "")
    errors = frame.column("_errors")
    has = np.asarray(pc.is_valid(errors).to_numpy(zero_copy_only=False), dtype=bool)
    if not has.any():
        return Outcome(has, "")
    markers = tuple(frame.context.catalogue.long_term_markers)
    rows = np.flatnonzero(has)
    kept: dict[int, str] = {}
    for row, text in zip(rows.tolist(), errors.take(pa.array(rows)).to_pylist()):
        parts = [p for p in text.split("; ") if not p.rstrip().endswith(markers or ("\0",)) and "column missing in source" not in p]
        if parts:
            kept[row] = "; ".join(parts)
    fail = np.zeros(frame.rows, dtype=bool)
    fail[list(kept)] = True
    return Outcome(fail, lambda rows: [f"无法按标准格式识别：{kept[int(r)]}" for r in rows])


def id_birth(frame: Frame, rule: Rule) -> Outcome:
    """The birth date equals the one written in the resident ID (characters 7–14)."""
    birth_field, id_field = rule.fields[:2]
    check = frame.resident(id_field)
    from_id = np.where(np.isnat(check.birth_date), NO_DAY, (check.birth_date - np.datetime64("1970-01-01", "D")).astype(np.int64))
    days = frame.days(birth_field)
    fail = (days != NO_DAY) & (from_id != NO_DAY) & (days != from_id)
    return Outcome(fail, lambda rows: [f"出生日期 {d} 与公民身份号码中的 {i} 不一致" for d, i in zip(day_texts(days[rows]), day_texts(from_id[rows]))])


_GENDER_TEXT = {"1": "男", "2": "女"}


def id_gender(frame: Frame, rule: Rule) -> Outcome:
    """The gender code agrees with the parity of the resident ID's 17th character (0 未知 and 9 未说明 are not compared)."""
    gender_field, id_field = rule.fields[:2]
    check = frame.resident(id_field)
    text = frame.text(gender_field)
    male = np.asarray(pc.fill_null(pc.equal(text, "1"), False).to_numpy(zero_copy_only=False), dtype=bool)
    female = np.asarray(pc.fill_null(pc.equal(text, "2"), False).to_numpy(zero_copy_only=False), dtype=bool)
    fail = (male & (check.gender == "2")) | (female & (check.gender == "1"))
    return Outcome(fail, lambda rows: [f"性别为{_GENDER_TEXT.get(g, g)}，公民身份号码显示为{_GENDER_TEXT.get(i, i)}"
                                       for g, i in zip(np.where(male[rows], "1", np.where(female[rows], "2", "")), check.gender[rows])])


def id_gender_fixed(frame: Frame, rule: Rule) -> Outcome:
    """The resident ID belongs to the gender the field implies (e.g. 男方 must be male)."""
    id_field = rule.fields[0]
    expected = str(rule.params["gender"])
    check = frame.resident(id_field)
    fail = frame.present(id_field) & (check.gender != "") & (check.gender != expected)
    label = _label(rule, id_field)
    return Outcome(fail, f"{label}第17位显示为{_GENDER_TEXT.get('1' if expected == '2' else '2')}性，应为{_GENDER_TEXT.get(expected)}性")


def _key_kind(frame: Frame, name: str) -> str | None:
    """Identifier kind of a field, for comparable keys (from the element catalogue or the source profile)."""
    from schemas.elements import ElementError, element

    declared = frame.context.profile.fields.get(name)
    if declared is not None and declared.identifier:
        return declared.identifier
    try:
        return element(frame.context.catalogue.library, name).identifier
    except ElementError:
        return None


KEY_BLOCK_ROWS = 100_000  # rows per block when a large batch's natural keys are derived (one row group of a staged run)


def natural_keys(frame: Frame) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """(comparable natural key per row as Arrow text, whether the row has a complete key, an int64 code per key).

    A large batch is keyed block by block, each block with a frame of its own: the identifier checks behind a key
    (a resident ID's normalised form, birth date, region … ≈200 bytes a row) are then held for one block at a time,
    and what the whole batch keeps is the keys' text, one flag and one code a row."""
    names = list(frame.context.profile.natural_key)
    if not names or any(n not in frame.columns for n in names):
        return pa.nulls(frame.rows, pa.string()), np.zeros(frame.rows, dtype=bool), np.full(frame.rows, -1, dtype=np.int64)
    kinds = [_key_kind(frame, n) for n in names]
    if frame.rows <= KEY_BLOCK_ROWS:
        keys, complete, codes = _block_keys(frame, names, kinds)
    else:
        blocks = [_block_keys(Frame(frame.table.slice(start, KEY_BLOCK_ROWS), frame.context), names, kinds)
                  for start in range(0, frame.rows, KEY_BLOCK_ROWS)]
        keys = pa.concat_arrays([block[0] for block in blocks])
        complete = np.concatenate([block[1] for block in blocks])
        codes = np.concatenate([block[2] for block in blocks]) if kinds == ["resident-id"] else None
    if codes is None:  # text keys are coded over the whole batch: a block's dictionary codes mean nothing outside it
        codes = np.asarray(pc.dictionary_encode(keys).indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    return keys, complete, np.where(complete, codes, -1)


def _block_keys(frame: Frame, names: list[str], kinds: list[str | None]) -> tuple[pa.Array, np.ndarray, np.ndarray | None]:
    """Natural keys of one block: (key text, complete, resident codes for a resident-ID key, else None)."""
    parts = [frame.identifier_key(n, k) if k else pc.fill_null(frame.text(n), "") for n, k in zip(names, kinds)]
    complete = np.logical_and.reduce([np.asarray(pc.not_equal(p, "").to_numpy(zero_copy_only=False), dtype=bool) for p in parts])
    keys = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, "\x1f")
    # the population's key: digits make an integer, far cheaper to group than text
    codes = frame.resident_codes(names[0]) if kinds == ["resident-id"] else None
    return (keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys), complete, codes


def first_rows(codes: np.ndarray, complete: np.ndarray) -> np.ndarray:
    """For each row, the first row with the same key code (itself when first; -1 where the key is incomplete)."""
    import pandas as pd  # factorize hashes in one pass; np.unique would sort

    rows = np.flatnonzero(complete)
    out = np.full(len(codes), -1, dtype=np.int64)
    if not len(rows):
        return out
    out[rows] = rows  # a key that occurs once is its own first row
    keyed = codes[rows]
    # Almost every key occurs once. Grouping exactly (hashing into a table) is what costs, so only the rows whose
    # key shares a cheap hash bucket with another row are grouped: every repeated key is among them, and with
    # ≈4 buckets per key they are ≈22% of the rows (≈2× faster over a million rows than grouping them all).
    shared = _in_shared_bucket(keyed)
    rows, keyed = rows[shared], keyed[shared]
    if len(rows):
        dense, uniques = pd.factorize(keyed)
        first = np.empty(len(uniques), dtype=np.int64)
        first[dense[::-1]] = rows[::-1]  # the last write wins: walking backwards leaves each key's first row
        out[rows] = first[dense]
    return out


def _in_shared_bucket(codes: np.ndarray) -> np.ndarray:
    """Whether each int64 code falls into a hash bucket that another entry falls into too (equal codes always do).

    Fibonacci hashing: the top bits of code × 2⁶⁴/φ (wrapping uint64 arithmetic) spread neighbouring codes —
    resident IDs differ in a few low digits — evenly over ≈4–8 buckets per code (more would only add memory
    traffic: the counts of a million codes take 32 MB); counting them is one pass.
    """
    bits = max(int(len(codes) * 4).bit_length(), 10)
    buckets = ((codes.astype(np.int64, copy=False).view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits)).astype(np.intp)
    return np.bincount(buckets, minlength=1 << bits)[buckets] > 1


def duplicate(frame: Frame, rule: Rule) -> Outcome:
    """No two rows of a source (in this run or an earlier one) share a natural key; later ones are the duplicates."""
    keys, complete, codes = natural_keys(frame)
    if not complete.any():
        return Outcome(np.zeros(frame.rows, dtype=bool), "")
    first = first_rows(codes, complete)
    repeated = np.flatnonzero(complete & (first != np.arange(frame.rows)))
    # The same source record twice in one batch (an update sent twice) is not a duplicate of itself.
    key_text = frame.text("_source_key")
    fail = np.zeros(frame.rows, dtype=bool)
    if len(repeated):  # compare source keys at the repeated rows only
        other_record = pc.not_equal(key_text.take(pa.array(first[repeated])), key_text.take(pa.array(repeated)))
        fail[repeated] = np.asarray(pc.fill_null(other_record, True).to_numpy(zero_copy_only=False), dtype=bool)
    original = np.full(frame.rows, None, dtype=object)
    if fail.any():  # only the duplicates' originals are converted to Python text
        original[fail] = np.asarray(pc.fill_null(key_text.take(pa.array(first[fail])), "").to_numpy(zero_copy_only=False), dtype=object)
    known = frame.context.known_keys
    if known is not None:
        earlier = known.first_keys(keys, complete)  # source key that first sent the natural key in an earlier run
        sent = np.flatnonzero(complete & (earlier != None))  # noqa: E711 - numpy elementwise
        if len(sent):  # compared at those rows only: the batch's keys never become Python text
            mine = np.asarray(pc.fill_null(key_text.take(pa.array(sent)), "").to_numpy(zero_copy_only=False), dtype=object)
            again = sent[earlier[sent] != mine]
            fail[again] = True
            original[again] = earlier[again]
    names = "、".join(_label(rule, n) for n in frame.context.profile.natural_key)
    return Outcome(fail, lambda rows: [f"与本数据源记录 {o} 重复（{names}相同）" for o in original[rows]])


def _is_anchor_of(frame: Frame, library: str) -> bool:
    """Whether the batch's source is itself an anchor of the library a comparison reads (it is the reference)."""
    from quality.references import anchor_sources

    return frame.context.source_id in anchor_sources(library)


def _take_text(values: pa.Array, positions: np.ndarray) -> pa.Array:
    """values[positions] as Arrow text, null where the position is -1."""
    if len(values) == 0:
        return pa.nulls(len(positions), pa.string())
    return pc.if_else(pa.array(positions >= 0), values.take(pa.array(np.maximum(positions, 0))), pa.scalar(None, pa.string()))


def _reference_facts(lookup, positions: np.ndarray, hit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(source ids, source keys) of the reference records at the failing rows."""
    if not len(hit):
        return np.zeros(0, object), np.zeros(0, object)
    at = pa.array(positions[hit])
    return (np.asarray(lookup.source_ids.take(at).to_numpy(zero_copy_only=False), dtype=object),
            np.asarray(lookup.source_keys.take(at).to_numpy(zero_copy_only=False), dtype=object))


def _compare(frame: Frame, rule: Rule, lookup_name: str, ready: str, what: str) -> Outcome:
    """A name differs from the anchor's name of the same subject (found by its identifier)."""
    refs = frame.context.references
    library = "population" if lookup_name == "person" else "legal_entity"
    if _is_anchor_of(frame, library):
        return Outcome(np.zeros(frame.rows, dtype=bool), "")  # the anchor is the reference: nothing to compare with
    if refs is None or ready not in refs.ready:
        return _none(frame, f"参照数据未就绪 reference data '{ready}' not available")
    value_field, key_field = rule.fields[:2]
    keys = frame.identifier_key(key_field, "resident-id" if lookup_name == "person" else "uscc")
    lookup = refs.persons if lookup_name == "person" else refs.entities
    # persons are found by their resident ID's integer code: an index of 8-byte codes, not of the IDs' text
    positions = lookup.positions_of_codes(frame.resident_codes(key_field)) if lookup_name == "person" else lookup.positions(keys)
    reference = _take_text(lookup.values, positions)
    mine = comparable_names(frame.text(value_field))
    differ = pc.and_(pc.not_equal(mine, reference), pc.not_equal(reference, ""))
    fail = frame.present(value_field) & np.asarray(pc.fill_null(differ, False).to_numpy(zero_copy_only=False), dtype=bool)
    hit = np.flatnonzero(fail)
    ref_source, ref_key = _reference_facts(lookup, positions, hit)
    ref_value = np.asarray(reference.take(pa.array(hit)).to_numpy(zero_copy_only=False), dtype=object) if len(hit) else np.zeros(0, object)
    shown = frame.strings_at(value_field, hit)
    label = _label(rule, value_field)
    where = {int(r): i for i, r in enumerate(hit)}

    def messages(rows: np.ndarray) -> list[str]:
        """'姓名“X”与户籍人口（gongan_hjrk 记录 12）的“Y”不一致'."""
        return [f"{label}“{shown[where[int(r)]]}”与{what}（{ref_source[where[int(r)]]} 记录 {ref_key[where[int(r)]]}）的“{ref_value[where[int(r)]]}”不一致"
                for r in rows]

    subjects = np.asarray(keys.take(pa.array(hit)).to_numpy(zero_copy_only=False), dtype=object) if len(hit) else np.zeros(0, object)
    conflicts = {"subject": subjects, "value": shown, "reference_source": ref_source,
                 "reference_key": ref_key, "reference_value": ref_value}
    return Outcome(fail, messages, conflicts=conflicts)


def compare_person_name(frame: Frame, rule: Rule) -> Outcome:
    """The name a department holds for a person equals the household register's (公安) name."""
    return _compare(frame, rule, "person", "persons", "户籍人口")


def compare_entity_name(frame: Frame, rule: Rule) -> Outcome:
    """The name a department holds for a legal entity equals the registration authority's name."""
    return _compare(frame, rule, "entity", "entities", "法人登记")


def compare_marital_status(frame: Frame, rule: Rule) -> Outcome:
    """The marital status agrees with the person's latest marriage registration (结婚/复婚 → married, 离婚 → divorced)."""
    refs = frame.context.references
    if refs is None or "registrations" not in refs.ready:
        return _none(frame, "参照数据未就绪 reference data 'registrations' not available")
    status_field, id_field = rule.fields[:2]
    keys = frame.identifier_key(id_field, "resident-id")
    lookup = refs.registrations
    positions = lookup.positions_of_codes(frame.resident_codes(id_field))
    kind = _take_text(lookup.values, positions)  # latest registration kind (marital status code it implies), null if none
    status = frame.text(status_field)
    divorced = pa.array([str(v) for v in rule.params["divorced"]], pa.string())
    married = pa.array([str(v) for v in rule.params["married"]], pa.string())
    kind_divorce = pc.is_in(kind, value_set=divorced)
    wrong = pc.if_else(kind_divorce, pc.invert(pc.is_in(status, value_set=divorced)), pc.invert(pc.is_in(status, value_set=married)))
    wrong = pc.and_(pc.is_valid(kind), wrong)
    fail = frame.present(status_field) & np.asarray(pc.fill_null(wrong, False).to_numpy(zero_copy_only=False), dtype=bool)
    hit = np.flatnonzero(fail)
    ref_source, ref_key = _reference_facts(lookup, positions, hit)
    at = pa.array(hit)
    kinds = np.asarray(kind.take(at).to_numpy(zero_copy_only=False), dtype=object) if len(hit) else np.zeros(0, object)
    # The registration dates only at the failing rows (taking them for every row and then the few cost ≈30× more).
    days = np.asarray(_take_text(lookup.details, positions[hit]).to_numpy(zero_copy_only=False), dtype=object) if len(hit) else np.zeros(0, object)
    shown = frame.strings_at(status_field, hit)
    marital = load_table("marital_status")
    words = {"20": "结婚", "23": "复婚", "40": "离婚"}
    where = {int(r): i for i, r in enumerate(hit)}

    def messages(rows: np.ndarray) -> list[str]:
        """'婚姻状况为10（未婚），民政最近一次婚姻登记为结婚（2019-12-30）'."""
        return [f"婚姻状况为{shown[where[int(r)]]}（{marital.label(shown[where[int(r)]]) or '未知代码'}），民政最近一次婚姻登记为"
                f"{words.get(kinds[where[int(r)]], kinds[where[int(r)]])}（{days[where[int(r)]]}）" for r in rows]

    subjects = np.asarray(keys.take(at).to_numpy(zero_copy_only=False), dtype=object) if len(hit) else np.zeros(0, object)
    conflicts = {"subject": subjects, "value": shown, "reference_source": ref_source, "reference_key": ref_key,
                 "reference_value": np.array([f"{k}|{d}" for k, d in zip(kinds, days)], dtype=object)}
    return Outcome(fail, messages, conflicts=conflicts)


def subject_exists(frame: Frame, rule: Rule) -> Outcome:
    """A licence holder or credit subject exists in the population or legal-entity library (by its code)."""
    refs = frame.context.references
    if refs is None or not {"persons", "entities"} <= refs.ready:
        return _none(frame, "参照数据未就绪 reference data 'persons'/'entities' not available")
    has_code = np.zeros(frame.rows, dtype=bool)
    found = np.zeros(frame.rows, dtype=bool)
    names = [n for n in rule.fields if n in frame.columns]
    for name in names:
        person = frame.identifier_key(name, "resident-id")
        code = frame.identifier_key(name, "uscc")
        is_person = np.asarray(pc.not_equal(person, "").to_numpy(zero_copy_only=False), dtype=bool)
        usable = frame.present(name) & (is_person | (frame.uscc(name).department != ""))  # invalid codes are the identifier rules' business
        has_code |= usable
        found |= usable & ((refs.persons.positions_of_codes(frame.resident_codes(name)) >= 0) | refs.entities.contains(code))
    fail = has_code & ~found
    shown = {n: frame.strings(n) for n in names}

    def messages(rows: np.ndarray) -> list[str]:
        """'持证主体代码 9142… 在人口库和法人库中均不存在'."""
        return ["、".join(f"{_label(rule, n)} {_masked(shown[n][r])}" for n in names if shown[n][r]) + " 在人口库和法人库中均不存在"
                for r in rows]

    return Outcome(fail, messages)


def holder_code_form(frame: Frame, rule: Rule) -> Outcome:
    """A holder code is the identifier its type says (111 → resident ID, 001 → well-formed USCC)."""
    code_field, type_field = rule.fields[:2]
    kinds = np.asarray(pc.fill_null(frame.text(type_field), "").to_numpy(zero_copy_only=False), dtype=object)
    present = frame.present(code_field)
    person = kinds == "111"
    entity = kinds == "001"
    fail = present & ((person & ~frame.resident(code_field).valid) | (entity & (frame.uscc(code_field).department == "")))
    return Outcome(fail, lambda rows: [f"持证主体代码类型为{kinds[r]}，但持证主体代码不是有效的{'公民身份号码' if kinds[r] == '111' else '统一社会信用代码'}" for r in rows])


def licence_id_parts(frame: Frame, rule: Rule) -> Outcome:
    """The licence identifier embeds the licence-type code and the issuer code the record states."""
    id_field, type_field, issuer_field = rule.fields[:3]
    check = frame.licence(id_field)
    types = np.asarray(pc.fill_null(frame.text(type_field), "").to_numpy(zero_copy_only=False)).astype(str)
    issuers = np.asarray(pc.fill_null(frame.text(issuer_field), "").to_numpy(zero_copy_only=False)).astype(str)
    wrong_type = check.valid & (types != "") & (check.licence_type_code != types)
    wrong_issuer = check.valid & (issuers != "") & (check.issuer_code != issuers)
    return Outcome(wrong_type | wrong_issuer, lambda rows: [
        "；".join(([f"证照标识中的证照类型代码为{check.licence_type_code[r]}，记录为{types[r]}"] if wrong_type[r] else []) +
                 ([f"证照标识中的颁发机构代码为{check.issuer_code[r]}，记录为{issuers[r]}"] if wrong_issuer[r] else [])) for r in rows])


def expired_still_valid(frame: Frame, rule: Rule) -> Outcome:
    """A licence whose validity ended before the reference date is not marked valid."""
    status_field, until_field = rule.fields[:2]
    valid = np.asarray(pc.fill_null(pc.is_in(frame.text(status_field), value_set=pa.array([str(v) for v in rule.params["valid"]])),
                                    False).to_numpy(zero_copy_only=False))
    until = frame.days(until_field)
    fail = valid & (until != NO_DAY) & (until < frame.context.reference_day)
    reference = frame.context.reference_date.isoformat()
    return Outcome(fail, lambda rows: [f"有效期截止日期 {day_text(d)} 早于基准日期 {reference}，证照状态仍为有效" for d in until[rows]])


def person_or_entity_code(frame: Frame, rule: Rule) -> Outcome:
    """The code is a valid resident ID or a well-formed USCC."""
    name = rule.fields[0]
    fail = frame.present(name) & ~frame.resident(name).valid & (frame.uscc(name).department == "")
    label = _label(rule, name)
    return Outcome(fail, f"{label}既不是有效的公民身份号码，也不是有效的统一社会信用代码")


def freshness(frame: Frame, rule: Rule) -> Outcome:
    """Source-level (see quality.timeliness): never fails a row."""
    return Outcome(np.zeros(frame.rows, dtype=bool), "")


CHECKS: dict[str, Callable[[Frame, Rule], Outcome]] = {
    "required": required,
    "any_required": any_required,
    "code_table": code_table,
    "allowed_values": allowed_values,
    "identifier": identifier,
    "uscc_check": uscc_check,
    "date_not_future": date_not_future,
    "date_order": date_order,
    "format": format_,
    "id_birth": id_birth,
    "id_gender": id_gender,
    "id_gender_fixed": id_gender_fixed,
    "duplicate": duplicate,
    "compare_person_name": compare_person_name,
    "compare_entity_name": compare_entity_name,
    "compare_marital_status": compare_marital_status,
    "subject_exists": subject_exists,
    "holder_code_form": holder_code_form,
    "licence_id_parts": licence_id_parts,
    "expired_still_valid": expired_still_valid,
    "person_or_entity_code": person_or_entity_code,
    "freshness": freshness,
}
SOURCE_LEVEL_CHECKS = frozenset({"freshness"})
CROSS_SOURCE_CHECKS = frozenset({"compare_person_name", "compare_entity_name", "compare_marital_status", "subject_exists"})
