"""The department sources: readable in their formats, overlapping people and companies, the world.json contract."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import unicodedata
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from world import generate

SOURCE_IDS = {
    "gongan_hjrk", "scjg_qydj", "scjg_gtgsh", "minzheng_hydj", "minzheng_shzz", "renshe_sbcb", "court_sxbzxr",
    "licence_scjg", "licence_weijian", "licence_zhujian", "licence_zrzy", "licence_minzheng",
    "credit_xzxk", "credit_xzcf", "credit_jyyc", "credit_hhmd",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small default world."""
    out = tmp_path_factory.mktemp("world") / "w"
    generate(out, scale=0.004, seed=7, workers=1)
    return out


@pytest.fixture(scope="module")
def description(world: Path) -> dict:
    """world.json."""
    return json.loads((world / "world.json").read_text(encoding="utf-8"))


def _ids(values: pd.Series) -> set[str]:
    """Normalised identifiers (half-width, trimmed, upper case)."""
    return {unicodedata.normalize("NFKC", v).strip().upper() for v in values if isinstance(v, str) and v.strip()}


def test_world_json_contract(world: Path, description: dict) -> None:
    """Every source is described with the keys connectors need, and its location exists."""
    assert description["reference_date"] == "2026-11-01"
    assert {"scale", "seed", "counts", "sources", "manifest", "defect_rates", "messiness", "truth"} <= set(description)
    assert {s["id"] for s in description["sources"]} == SOURCE_IDS
    for source in description["sources"]:
        assert {"id", "department", "kind", "location", "primary_key", "replication_key", "rows"} <= set(source), source["id"]
        assert source["kind"] in {"sql", "file", "http"}
        if source["kind"] == "sql":
            assert (world / source["location"]).is_file()
        elif source["kind"] == "file":
            assert source["files"] and all((world / f).is_file() for f in source["files"])
            assert all(Path(f).match(source["location"]) or f == source["location"] for f in source["files"])
        else:
            assert (world / source["data_file"]).is_file() and source["token"]
        assert description["counts"]["sources"][source["id"]] == source["rows"]
    for path in description["truth"].values():
        assert (world / path).is_file()


def test_gbk_and_mixed_encodings(world: Path, description: dict) -> None:
    """民政 files decode in their declared encodings; GBK ones are not UTF-8; some need GB18030."""
    hydj = next(s for s in description["sources"] if s["id"] == "minzheng_hydj")
    encodings = hydj["encodings"]
    assert {"gbk", "gb18030", "utf-8-sig"} <= set(encodings.values())
    beyond_gbk = False
    for rel, encoding in encodings.items():
        raw = (world / rel).read_bytes()
        text = raw.decode(encoding)
        assert text.startswith("登记编号,") or text.startswith('"登记编号"')
        if encoding == "gbk":
            with pytest.raises(UnicodeDecodeError):
                raw.decode("utf-8")
        if encoding == "utf-8-sig":
            assert raw.startswith(b"\xef\xbb\xbf")
        if encoding == "gb18030":
            try:
                text.encode("gbk")
            except UnicodeEncodeError:
                beyond_gbk = True  # a rare character only GB18030 (or UTF-8) can carry
    assert beyond_gbk
    shzz = pd.read_csv(world / "minzheng" / "shzz.csv", encoding="gbk", dtype=str)
    assert list(shzz.columns) == ["序号", "统一社会信用代码", "社会组织名称", "组织类型", "法定代表人", "登记管理机关",
                                  "成立登记日期", "业务范围", "住所"]


def test_xlsx_has_real_and_text_dates(world: Path) -> None:
    """sbcb.xlsx opens with openpyxl and calamine; 参保日期 mixes Excel dates and text."""
    book = openpyxl.load_workbook(world / "renshe" / "sbcb.xlsx", read_only=True)
    sheet = book.active
    rows = sheet.iter_rows(values_only=True)
    header = next(rows)
    assert header == ("个人编号", "姓名", "公民身份号码", "出生日期", "户籍地区划", "单位名称", "单位统一社会信用代码", "险种",
                      "参保日期", "缴费状态", "更新时间")
    kinds = {type(r[8]) for r in rows if r[8] is not None}
    assert dt.datetime in kinds and str in kinds
    frame = pd.read_excel(world / "renshe" / "sbcb.xlsx", engine="calamine", dtype=object)
    assert len(frame) > 1000
    assert frame["更新时间"].map(lambda v: isinstance(v, (dt.datetime, pd.Timestamp))).all()


def test_jsonl_and_csv_parse(world: Path) -> None:
    """Licence JSON Lines carry 照面信息 as an object, CSV as JSON text; court JSONL parses."""
    for path in (world / "licences").rglob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            assert isinstance(record["照面信息"], dict)
    for path in (world / "licences").rglob("*.csv"):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        assert all(isinstance(json.loads(v), dict) for v in frame["照面信息"])
    court = [json.loads(line) for line in (world / "court" / "sxbzxr.jsonl").read_text(encoding="utf-8").splitlines()]
    assert court and {"id", "iname", "cardNum", "caseCode", "publishDate", "updatedAt"} <= set(court[0])
    for path in (world / "credit").rglob("*.csv"):
        assert pd.read_csv(path, dtype=str).shape[0] > 0


def test_messiness_is_present(world: Path) -> None:
    """Dates in several styles, full-width digits, traditional characters and stray spaces all occur."""
    with sqlite3.connect(world / "gongan" / "gongan.sqlite") as connection:
        hjrk = pd.read_sql_query("SELECT * FROM hjrk", connection)
    dates = hjrk.csrq.dropna()
    assert dates.str.contains("年").any() and dates.str.contains("/").any() and dates.str.fullmatch(r"\d{8}").any()
    assert dates.str.contains("[０-９]").any()
    assert hjrk.gmsfhm.dropna().str.contains("[０-９]").any()
    assert hjrk.xm.dropna().str.match(r"^\s|.*\s$").any()
    assert hjrk.xb.isin(["男", "女"]).any() and hjrk.xb.isin(["1", "2"]).mean() > 0.9
    import zhconv

    assert any(zhconv.convert(v, "zh-hans") != v for v in hjrk.hjdz.dropna())


def test_people_and_companies_overlap(world: Path) -> None:
    """The same residents appear in 公安, 人社, as legal representatives in 市场监管, and as licence holders."""
    with sqlite3.connect(world / "gongan" / "gongan.sqlite") as connection:
        gongan = _ids(pd.read_sql_query("SELECT gmsfhm FROM hjrk", connection).gmsfhm)
    with sqlite3.connect(world / "scjg" / "scjg.sqlite") as connection:
        qydj = pd.read_sql_query("SELECT tyshxydm, fddbr_zjhm FROM qydj", connection)
        gtgsh = pd.read_sql_query("SELECT tyshxydm, jyz_zjhm FROM gtgsh", connection)
    renshe = pd.read_excel(world / "renshe" / "sbcb.xlsx", engine="calamine", dtype=str)
    insured = _ids(renshe["公民身份号码"])
    reps = _ids(qydj.fddbr_zjhm) | _ids(gtgsh.jyz_zjhm)
    assert len(gongan & insured) > 0.95 * len(insured)
    assert len(gongan & reps) > 0.95 * len(reps)
    assert len(gongan & insured & reps) > 50
    employers = _ids(renshe["单位统一社会信用代码"])
    assert len(employers & _ids(qydj.tyshxydm)) > 0.95 * len(employers)
    holders = set()
    for path in (world / "licences" / "zrzy").glob("*.jsonl"):
        holders |= {json.loads(line)["持证主体代码"] for line in path.read_text(encoding="utf-8").splitlines()}
    assert len(holders & gongan) > 100 and len(holders & _ids(qydj.tyshxydm)) > 5
