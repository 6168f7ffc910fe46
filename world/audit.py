"""An independent audit of a generated world: re-detect every defect from the sources and compare with the manifest.

It reads the sources the way a hub would (SQL, GBK/GB18030 CSV, xlsx, JSON Lines), normalises the
messiness documented in world.json (whitespace, full-width, traditional characters, date styles,
15-digit IDs), applies the schemas' identifier checks and code tables, and lists each defect it
finds as (source, record_key, field, defect_kind). A sound world has found == manifest.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

Finding = tuple[str, str, str, str]  # source, record_key, field, defect_kind

MARRIED = {"20", "21", "22", "23", "30"}
_WHITESPACE = re.compile(r"\s+")


@dataclass
class AuditReport:
    """Manifest entries and audit findings compared."""

    expected: set[Finding]
    found: set[Finding]
    notes: list[str] = field(default_factory=list)

    @property
    def missing(self) -> set[Finding]:
        """Manifest entries the audit did not find (injected defects that are not really there)."""
        return self.expected - self.found

    @property
    def unexpected(self) -> set[Finding]:
        """Defects found in rows the manifest calls clean (or with another kind)."""
        return self.found - self.expected

    @property
    def ok(self) -> bool:
        """Whether manifest and audit agree exactly."""
        return not self.missing and not self.unexpected


def _text(value: Any) -> str:
    """A cell as normalised text: NFKC, no whitespace, simplified characters ('' if missing)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return _normalised(str(value))


@functools.lru_cache(maxsize=1 << 18)
def _normalised(value: str) -> str:
    """NFKC, whitespace removed, traditional characters simplified (zhconv zh-hans)."""
    import zhconv

    text = _WHITESPACE.sub("", unicodedata.normalize("NFKC", value))
    return zhconv.convert(text, "zh-hans") if not text.isascii() else text


def _code(value: Any) -> str:
    """An identifier or code cell: NFKC, no whitespace, upper case."""
    return _text(value).upper()


def _dates(values: Iterable[Any]) -> list[dt.date | None]:
    """Parse dates written in any documented style (None where missing or unreadable)."""
    from schemas.normalize import date

    items = list(values)
    plain, out = [], [None] * len(items)
    for i, v in enumerate(items):
        if isinstance(v, (dt.datetime, pd.Timestamp)):
            out[i] = v.date() if hasattr(v, "date") else v
        elif isinstance(v, dt.date):
            out[i] = v
        else:
            plain.append((i, None if _text(v) == "" else _text(v)))
    if plain:
        parsed, _ = date(pa.array([p[1] for p in plain], pa.string()))
        for (i, _), value in zip(plain, parsed.to_pylist()):
            out[i] = value
    return out


def _resident(values: list[str], ref: dt.date) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(valid, bad check char, normalised 18-digit id, birth date, gender) of resident ID values."""
    from schemas.identifiers import check_resident_ids

    result = check_resident_ids(np.array(values, dtype=object), today=ref, region_rule="birth_year")
    reason = np.array([r or "" for r in result.reason.tolist()], dtype=object)
    bad_check = np.array(["校验位" in r for r in reason])
    return result.valid, bad_check, result.normalised.astype(object), result.birth_date, result.gender.astype(object)


def _uscc(values: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(valid, bad check char) of USCC values."""
    from schemas.identifiers import check_usccs

    result = check_usccs(np.array(values, dtype=object))
    reason = [r or "" for r in result.reason.tolist()]
    return result.valid, np.array(["校验" in r for r in reason])


class _Auditor:
    """Reads a world and collects findings."""

    def __init__(self, world_dir: Path) -> None:
        """Load world.json and the code tables."""
        from schemas.code_tables import load_table

        self.dir = world_dir
        self.world = json.loads((world_dir / "world.json").read_text(encoding="utf-8"))
        self.ref = dt.date.fromisoformat(self.world["reference_date"])
        self.sources = {s["id"]: s for s in self.world["sources"]}
        self.found: set[Finding] = set()
        self.notes: list[str] = []
        self.regions = load_table("regions")
        self.ethnicity = set(load_table("ethnicity").codes)
        self.marital = set(load_table("marital_status").codes)
        self.gender = set(load_table("gender").codes)
        self.enterprise_status = {row["label"] for row in load_table("enterprise_status").rows}
        self.person_ids: set[str] = set()
        self.person_names: dict[str, str] = {}
        self.entity_codes: set[str] = set()
        self.entity_names: dict[str, str] = {}

    def add(self, source: str, keys: Iterable[Any], field_name: str, kind: str, mask: Iterable[bool]) -> None:
        """Record findings for the rows where mask is true."""
        for key, hit in zip(keys, mask):
            if hit:
                self.found.add((source, str(key), field_name, kind))

    def frame(self, source_id: str) -> pd.DataFrame:
        """A source as a DataFrame in source order (all values as read)."""
        s = self.sources[source_id]
        if s["kind"] == "sql":
            return self._sql(s)
        if s["kind"] == "http":
            return pd.read_json(self.dir / s["data_file"], lines=True, dtype=False, convert_dates=False)
        frames = []
        for rel in s["files"]:
            path = self.dir / rel
            if s["format"] == "csv":
                encoding = s.get("encodings", {}).get(rel, s.get("encoding", "utf-8"))
                frames.append(pd.read_csv(path, dtype=str, encoding=encoding, keep_default_na=False, na_values=[""]))
            elif s["format"] == "jsonl":
                frames.append(pd.read_json(path, lines=True, dtype=False, convert_dates=False))
            else:
                frames.append(pd.read_excel(path, engine="calamine", dtype=object))
        frames = [f for f in frames if not f.empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def _sql(self, s: dict[str, Any]) -> pd.DataFrame:
        """A SQL source table ordered by its primary key."""
        import sqlalchemy as sa

        location = s["location"]
        url = location if "://" in location else f"sqlite:///{self.dir / location}"
        engine = sa.create_engine(url)
        try:
            with engine.connect() as connection:
                return pd.read_sql_query(sa.text(f"SELECT * FROM {s['table']} ORDER BY {s['primary_key'][0]}"), connection)
        finally:
            engine.dispose()

    def required(self, source: str, df: pd.DataFrame, keys: pd.Series, fields: Iterable[str]) -> None:
        """missing_required where a required field is empty."""
        for name in fields:
            self.add(source, keys, name, "missing_required", [_text(v) == "" for v in df[name]])

    def duplicates(self, source: str, keys: pd.Series, natural: list[tuple], field_name: str) -> None:
        """duplicate for every row whose natural key (all parts present) appeared earlier."""
        seen: set[tuple] = set()
        for key, value in zip(keys, natural):
            if any(v in ("", None) for v in value):
                continue
            if value in seen:
                self.found.add((source, str(key), field_name, "duplicate"))
            seen.add(value)

    def future(self, source: str, keys: pd.Series, dates: list[dt.date | None], field_name: str) -> None:
        """future_date where a past-date field lies after the reference date."""
        self.add(source, keys, field_name, "future_date", [d is not None and d > self.ref for d in dates])

    def unreadable_dates(self, source: str, keys: pd.Series, raw: pd.Series, dates: list[Any], field_name: str) -> None:
        """Any non-empty date that does not parse is a generator bug: note it."""
        for key, value, parsed in zip(keys, raw, dates):
            if parsed is None and _text(value) not in ("", "长期"):
                self.notes.append(f"{source} {key} {field_name}: unreadable date {value!r}")

    # ── the sources ────────────────────────────────────────────────────────────────────────────────

    def gongan(self, hydj: pd.DataFrame | None) -> None:
        """公安 hjrk: anchor of persons."""
        source = "gongan_hjrk"
        df = self.frame(source)
        if df.empty:
            return
        keys = df["rkid"]
        ids = [_code(v) for v in df["gmsfhm"]]
        valid, bad, norm, birth, gender = _resident(ids, self.ref)
        self.required(source, df, keys, ["gmsfhm", "xm", "xb", "csrq", "hjdz_xzqh", "hjdz"])
        self.add(source, keys, "gmsfhm", "bad_check_char", bad & np.array([i != "" for i in ids]))
        self._other(source, keys, "gmsfhm", ids, valid, bad)
        self.duplicates(source, keys, [(n,) if v else ("",) for n, v in zip(norm, valid)], "gmsfhm")
        csrq = _dates(df["csrq"])
        self.unreadable_dates(source, keys, df["csrq"], csrq, "csrq")
        birth_dates = [None if np.isnat(b) else b.astype(dt.date) for b in birth]
        self.add(source, keys, "csrq", "id_birth_mismatch",
                 [v and c is not None and c != b for v, c, b in zip(valid, csrq, birth_dates)])
        xb = [{"男": "1", "女": "2"}.get(_text(v), _text(v)) for v in df["xb"]]
        self.add(source, keys, "xb", "invalid_code", [x != "" and x not in self.gender for x in xb])
        self.add(source, keys, "xb", "id_gender_mismatch",
                 [v and x in ("1", "2") and x != g for v, x, g in zip(valid, xb, gender)])
        self.add(source, keys, "mz", "invalid_code", [_text(m) != "" and _text(m) not in self.ethnicity for m in df["mz"]])
        regions = [_text(r) for r in df["hjdz_xzqh"]]
        known = self.regions.contains_vector(np.array(regions, dtype=object))
        self.add(source, keys, "hjdz_xzqh", "unknown_region", [r != "" and not k for r, k in zip(regions, known)])
        swrq = _dates(df["swrq"])
        self.unreadable_dates(source, keys, df["swrq"], swrq, "swrq")
        self.future(source, keys, swrq, "swrq")
        self.future(source, keys, csrq, "csrq")
        hyzk = [_text(h) for h in df["hyzk"]]
        self.add(source, keys, "hyzk", "invalid_code", [h != "" and h not in self.marital for h in hyzk])
        latest = self._latest_registrations(hydj) if hydj is not None else {}
        conflict = []
        for v, n, h in zip(valid, norm, hyzk):
            event = latest.get(n) if v else None
            conflict.append(bool(event) and h in self.marital and
                            ((event == "结婚" and h not in MARRIED) or (event == "离婚" and h != "40")))
        self.add(source, keys, "hyzk", "cross_source_conflict", conflict)
        gxsj = pd.to_datetime(df["gxsj"])
        if (gxsj.dt.date > self.ref).any():
            self.notes.append(f"{source}: gxsj after the reference date")
        for v, n, name in zip(valid, norm, df["xm"]):
            if v and _text(name):
                self.person_names.setdefault(n, _text(name))
            if v:
                self.person_ids.add(n)

    def _other(self, source: str, keys: pd.Series, field_name: str, values: list[str], valid: np.ndarray, bad: np.ndarray) -> None:
        """Invalid identifiers for another reason than the check character: a generator bug."""
        for key, value, ok, b in zip(keys, values, valid, bad):
            if value and not ok and not b:
                self.notes.append(f"{source} {key} {field_name}: invalid identifier {value!r}")

    def _latest_registrations(self, hydj: pd.DataFrame) -> dict[str, str]:
        """Latest usable 民政 registration kind per person ID."""
        events: dict[str, tuple[dt.date, str]] = {}
        dates = _dates(hydj["登记日期"])
        for side in ("男方身份证号", "女方身份证号"):
            ids = [_code(v) for v in hydj[side]]
            valid, _, norm, _, _ = _resident(ids, self.ref)
            for v, n, kind, day in zip(valid, norm, hydj["登记类型"], dates):
                kind = _text(kind)
                if not v or day is None or kind not in ("结婚", "离婚"):
                    continue
                if n not in events or events[n][0] < day:
                    events[n] = (day, kind)
        return {k: v[1] for k, v in events.items()}

    def scjg(self, source: str, names: dict[str, str]) -> None:
        """市场监管 qydj or gtgsh."""
        df = self.frame(source)
        if df.empty:
            return
        pk, name, rep, rep_id, day, address = (names[k] for k in ("pk", "name", "rep", "rep_id", "date", "address"))
        keys = df[pk]
        codes = [_code(v) for v in df["tyshxydm"]]
        valid, bad = _uscc(codes)
        self.required(source, df, keys, ["tyshxydm", name, rep, day, "djzt", address])
        self.add(source, keys, "tyshxydm", "bad_check_char", bad & np.array([c != "" for c in codes]))
        self._other(source, keys, "tyshxydm", codes, valid, bad)
        self.duplicates(source, keys, [(c,) if v else ("",) for c, v in zip(codes, valid)], "tyshxydm")
        rep_ids = [_code(v) for v in df[rep_id]]
        rvalid, rbad, rnorm, _, _ = _resident(rep_ids, self.ref)
        self.add(source, keys, rep_id, "bad_check_char", rbad & np.array([r != "" for r in rep_ids]))
        self._other(source, keys, rep_id, rep_ids, rvalid, rbad)
        dates = _dates(df[day])
        self.unreadable_dates(source, keys, df[day], dates, day)
        self.future(source, keys, dates, day)
        regions = [_text(r) for r in df["xzqh"]]
        known = self.regions.contains_vector(np.array(regions, dtype=object))
        self.add(source, keys, "xzqh", "unknown_region", [r != "" and not k for r, k in zip(regions, known)])
        self.add(source, keys, "djzt", "invalid_code",
                 [_text(s) != "" and _text(s) not in self.enterprise_status for s in df["djzt"]])
        self.add(source, keys, rep, "cross_source_conflict",
                 [v and _text(r) != "" and self.person_names.get(n, _text(r)) != _text(r)
                  for v, n, r in zip(rvalid, rnorm, df[rep])])
        for v, c, n in zip(valid, codes, df[name]):
            if v:
                self.entity_codes.add(c)
                if _text(n):
                    self.entity_names.setdefault(c, _text(n))

    def hydj(self, df: pd.DataFrame) -> None:
        """民政 marriage registrations."""
        source = "minzheng_hydj"
        if df.empty:
            return
        keys = df["登记编号"]
        self.required(source, df, keys, ["男方姓名", "男方身份证号", "女方姓名", "女方身份证号", "登记类型", "登记日期", "证书字号"])
        for side, name, parity in (("男方身份证号", "男方姓名", "1"), ("女方身份证号", "女方姓名", "2")):
            ids = [_code(v) for v in df[side]]
            valid, bad, norm, _, gender = _resident(ids, self.ref)
            self.add(source, keys, side, "bad_check_char", bad & np.array([i != "" for i in ids]))
            self._other(source, keys, side, ids, valid, bad)
            self.add(source, keys, side, "id_gender_mismatch", [v and g != parity for v, g in zip(valid, gender)])
            self.add(source, keys, name, "cross_source_conflict",
                     [v and _text(x) != "" and self.person_names.get(n, _text(x)) != _text(x)
                      for v, n, x in zip(valid, norm, df[name])])
        self.add(source, keys, "登记类型", "invalid_code", [_text(k) not in ("", "结婚", "离婚", "复婚") for k in df["登记类型"]])
        dates = _dates(df["登记日期"])
        self.unreadable_dates(source, keys, df["登记日期"], dates, "登记日期")
        self.future(source, keys, dates, "登记日期")
        self.duplicates(source, keys, [(_code(c),) for c in df["证书字号"]], "证书字号")

    def shzz(self) -> None:
        """民政 social organisations (an anchor of USCCs)."""
        source = "minzheng_shzz"
        df = self.frame(source)
        if df.empty:
            return
        keys = df["序号"]
        codes = [_code(v) for v in df["统一社会信用代码"]]
        valid, bad = _uscc(codes)
        self.required(source, df, keys, ["统一社会信用代码", "社会组织名称", "法定代表人", "成立登记日期", "住所"])
        self.add(source, keys, "统一社会信用代码", "bad_check_char", bad & np.array([c != "" for c in codes]))
        self._other(source, keys, "统一社会信用代码", codes, valid, bad)
        self.duplicates(source, keys, [(c,) if v else ("",) for c, v in zip(codes, valid)], "统一社会信用代码")
        dates = _dates(df["成立登记日期"])
        self.unreadable_dates(source, keys, df["成立登记日期"], dates, "成立登记日期")
        self.future(source, keys, dates, "成立登记日期")
        self.add(source, keys, "组织类型", "invalid_code",
                 [_text(t) not in ("", "社会团体", "民办非企业单位", "基金会") for t in df["组织类型"]])
        for v, c in zip(valid, codes):
            if v:
                self.entity_codes.add(c)

    def renshe(self) -> None:
        """人社 enrolments."""
        source = "renshe_sbcb"
        df = self.frame(source)
        if df.empty:
            return
        keys = df["个人编号"].astype(str)
        self.required(source, df, keys, ["姓名", "公民身份号码", "险种", "参保日期"])
        ids = [_code(v) for v in df["公民身份号码"]]
        valid, bad, norm, _, _ = _resident(ids, self.ref)
        self.add(source, keys, "公民身份号码", "bad_check_char", bad & np.array([i != "" for i in ids]))
        self._other(source, keys, "公民身份号码", ids, valid, bad)
        firms = [_code(v) for v in df["单位统一社会信用代码"]]
        fvalid, fbad = _uscc(firms)
        self.add(source, keys, "单位统一社会信用代码", "bad_check_char", fbad & np.array([f != "" for f in firms]))
        dates = _dates(df["参保日期"])
        self.unreadable_dates(source, keys, df["参保日期"], dates, "参保日期")
        self.future(source, keys, dates, "参保日期")
        self.add(source, keys, "缴费状态", "invalid_code",
                 [_text(s) not in ("", "正常缴费", "暂停缴费", "终止缴费") for s in df["缴费状态"]])
        self.add(source, keys, "姓名", "cross_source_conflict",
                 [v and _text(x) != "" and self.person_names.get(n, _text(x)) != _text(x) for v, n, x in zip(valid, norm, df["姓名"])])
        self.add(source, keys, "单位名称", "cross_source_conflict",
                 [v and _text(x) != "" and self.entity_names.get(c, _text(x)) != _text(x) for v, c, x in zip(fvalid, firms, df["单位名称"])])
        self.duplicates(source, keys, [(n,) if v else ("",) for n, v in zip(norm, valid)], "公民身份号码")

    def orphans(self, codes: list[str]) -> list[bool]:
        """Per code: a valid resident ID or USCC that no anchor source holds."""
        is_person = [len(c) in (15, 18) and c[:15].isdigit() for c in codes]
        people = [i for i, p in enumerate(is_person) if p]
        firms = [i for i, (c, p) in enumerate(zip(codes, is_person)) if c and not p]
        out = [False] * len(codes)
        if people:
            valid, _, norm, _, _ = _resident([codes[i] for i in people], self.ref)
            for i, v, n in zip(people, valid, norm):
                out[i] = bool(v) and n not in self.person_ids
        if firms:
            valid, _ = _uscc([codes[i] for i in firms])
            for i, v in zip(firms, valid):
                out[i] = bool(v) and codes[i] not in self.entity_codes
        return out

    def court(self) -> None:
        """法院 失信被执行人."""
        source = "court_sxbzxr"
        df = self.frame(source)
        if df.empty:
            return
        keys = df["id"]
        self.required(source, df, keys, ["iname", "cardNum", "courtName", "caseCode", "publishDate"])
        self.add(source, keys, "cardNum", "orphan_subject", self.orphans([_code(v) for v in df["cardNum"]]))
        dates = _dates(df["publishDate"])
        self.unreadable_dates(source, keys, df["publishDate"], dates, "publishDate")
        self.future(source, keys, dates, "publishDate")
        self.duplicates(source, keys, [(_code(c),) for c in df["caseCode"]], "caseCode")

    def licences(self, source: str) -> None:
        """A licence drop."""
        from schemas.identifiers import check_licence_ids

        df = self.frame(source)
        if df.empty:
            return
        ids = [_code(v) for v in df["证照标识"]]
        keys = pd.Series(ids)
        result = check_licence_ids(np.array(ids, dtype=object))
        reasons = [r or "" for r in result.reason.tolist()]
        self.add(source, keys, "证照标识", "bad_check_char", ["校验位错误" in r for r in reasons])
        self.required(source, df, keys, ["证照编号", "颁发机构", "颁发日期", "持证主体", "持证主体代码"])
        issued = _dates(df["颁发日期"])
        self.unreadable_dates(source, keys, df["颁发日期"], issued, "颁发日期")
        self.future(source, keys, issued, "颁发日期")
        types = [_text(t) for t in df["持证主体代码类型"]]
        self.add(source, keys, "持证主体代码类型", "invalid_code", [t not in ("111", "001") for t in types])
        ends = _dates(df["有效期截止日期"])
        self.add(source, keys, "证照状态", "expired_still_valid",
                 [_text(s) == "有效" and e is not None and e < self.ref for s, e in zip(df["证照状态"], ends)])
        holders = [_code(v) for v in df["持证主体代码"]]
        self.add(source, keys, "持证主体代码", "orphan_holder", self.orphans(holders))
        natural = [(_code(t), _text(n), h) for t, n, h in zip(df["证照类型代码"], df["证照编号"], holders)]
        self.duplicates(source, keys, natural, "证照标识")

    def credit(self, source: str, spec: Any) -> None:
        """A credit drop."""
        df = self.frame(source)
        if df.empty:
            return
        keys = df["记录编号"]
        self.required(source, df, keys, spec.required)
        dates = _dates(df[spec.decision_date])
        self.unreadable_dates(source, keys, df[spec.decision_date], dates, spec.decision_date)
        self.future(source, keys, dates, spec.decision_date)
        if spec.category:
            self.add(source, keys, spec.category, "invalid_code",
                     [_text(c) not in ("", "01", "02", "03", "04") for c in df[spec.category]])
        if "当前状态" in df:
            self.add(source, keys, "当前状态", "invalid_code", [_text(c) not in ("", "1", "2") for c in df["当前状态"]])
        if spec.authority_code:
            codes = [_code(v) for v in df[spec.authority_code]]
            valid, bad = _uscc(codes)
            self.add(source, keys, spec.authority_code, "bad_check_char", bad & np.array([c != "" for c in codes]))
        firms = [_code(v) for v in df["统一社会信用代码"]]
        self.add(source, keys, "统一社会信用代码", "orphan_subject", self.orphans(firms))
        if "证件号码" in df:
            people = [_code(v) for v in df["证件号码"]]
            self.add(source, keys, "证件号码", "orphan_subject", self.orphans(people))
        natural = [tuple(_code(df[f][i]) for f in spec.natural_key) for i in range(len(df))]
        self.duplicates(source, keys, natural, spec.natural_key[0])


def audit(world_dir: Path | str) -> AuditReport:
    """Audit every source of a world against its manifest."""
    from world.sources import credit_drops, licence_drops

    world_dir = Path(world_dir)
    a = _Auditor(world_dir)
    hydj = a.frame("minzheng_hydj")
    a.gongan(hydj)
    a.scjg("scjg_qydj", {"pk": "qyid", "name": "qymc", "rep": "fddbr", "rep_id": "fddbr_zjhm", "date": "clrq", "address": "zs"})
    a.scjg("scjg_gtgsh", {"pk": "gtid", "name": "zhmc", "rep": "jyz", "rep_id": "jyz_zjhm", "date": "zcrq", "address": "jycs"})
    a.shzz()
    a.hydj(hydj)
    a.renshe()
    a.court()
    for dept in licence_drops.DEPARTMENTS:
        a.licences(licence_drops.source_id(dept))
    for kind, spec in credit_drops.KINDS.items():
        a.credit(credit_drops.source_id(kind), spec)
    manifest = pq.read_table(world_dir / "manifest.parquet").to_pylist()
    expected = {(m["source"], m["record_key"], m["field"], m["defect_kind"]) for m in manifest}
    return AuditReport(expected, a.found, a.notes)
