"""The file-drop connector: encodings, formats, lineage, bad rows, rejected files, fingerprints, streaming."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import pyarrow as pa
import pytest
import xlsxwriter

from connectors.files import FileConnector, FileOptions, FileRejected, detect_encoding, iter_json_array
from connectors.landing import write_landing
from connectors.state import FileState

HEADER = "登记编号,男方姓名,女方姓名,登记日期"


def _connector(tmp_path: Path, pattern: str = "*", **options) -> FileConnector:
    data = tmp_path / "data"
    return FileConnector(
        "t_drop", tmp_path / "drop", pattern, ("登记编号",),
        state=FileState(data / "state" / "t_drop.files.json", "t_drop"),
        rejected_dir=data / "rejected" / "t_drop", work_dir=data / "tmp",
        options=FileOptions(required_columns=("登记编号",), **options),
    )


def _drop(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / "drop" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _read(connector: FileConnector, batch_rows: int = 50_000) -> pa.Table:
    schema = connector.arrow_schema()
    return pa.Table.from_batches(list(connector.read_batches(batch_rows=batch_rows)), schema=schema)


def _rows(table: pa.Table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: (r["_file"], r["_row"]))


@pytest.mark.parametrize(
    ("encoding", "expected", "name"),
    [("gbk", "gb18030", "张三"), ("gb18030", "gb18030", "王䶮"), ("utf-8-sig", "utf-8-sig", "李四"), ("utf-8", "utf-8", "赵𡒄")],
)
def test_encodings_are_detected_and_recorded(tmp_path: Path, encoding: str, expected: str, name: str) -> None:
    _drop(tmp_path, "hydj_1.csv", f"{HEADER}\nD001,{name},某某,2020-01-02\n".encode(encoding))
    connector = _connector(tmp_path)
    table = _read(connector)
    assert table.column("男方姓名").to_pylist() == [name] and table.column("登记编号").to_pylist() == ["D001"]
    assert connector.details()["files"][0]["encoding"] == expected


def test_undecodable_file_is_rejected_with_reason_and_others_proceed(tmp_path: Path) -> None:
    _drop(tmp_path, "good.csv", f"{HEADER}\nD001,张三,李四,2020-01-02\n".encode("gbk"))
    bad = _drop(tmp_path, "bad.csv", HEADER.encode("gbk") + b"\nD002,\x81\x20broken,x,y\n")
    connector = _connector(tmp_path)
    table = _read(connector)
    assert table.column("_file").to_pylist() == ["good.csv"]
    rejected = connector.details()["rejected"]
    assert [r["file"] for r in rejected] == ["bad.csv"] and "cannot decode" in rejected[0]["reason"]
    copy = Path(rejected[0]["copy"])
    assert copy.read_bytes() == bad.read_bytes() and bad.exists()  # copied: the department's file stays
    assert "cannot decode" in copy.with_name(copy.name + ".reason.txt").read_text(encoding="utf-8")


def test_a_row_with_the_wrong_number_of_fields_is_kept_with_error(tmp_path: Path) -> None:
    text = f'{HEADER}\nD001,张三,李四,2020-01-02\nD002,王五\n"D003","赵\n六",钱七,2021年3月4日\nD004,a,b,c,d\nD005,孙,周,2022/5/6\n'
    _drop(tmp_path, "hydj.csv", text.encode("gbk"))
    rows = _rows(_read(_connector(tmp_path)))
    assert [r["_row"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[2]["男方姓名"] == "赵\n六" and rows[4]["登记编号"] == "D005" and rows[0]["_error"] is None
    assert rows[1]["登记编号"] is None and rows[1]["_raw"] == "D002,王五" and "expected 4" in rows[1]["_error"]
    assert rows[3]["_raw"] == "D004,a,b,c,d" and "5" in rows[3]["_error"]


def test_missing_required_header_and_unknown_format_are_rejected(tmp_path: Path) -> None:
    _drop(tmp_path, "a.csv", "男方姓名\n张三\n".encode("utf-8"))
    _drop(tmp_path, "b.dbf", b"\x03binary")
    connector = _connector(tmp_path)
    assert _read(connector).num_rows == 0
    reasons = {r["file"]: r["reason"] for r in connector.details()["rejected"]}
    assert "missing required columns: 登记编号" in reasons["a.csv"] and "unsupported" in reasons["b.dbf"]


def test_excel_dates_as_cells_or_text_numbers_and_blank_rows(tmp_path: Path) -> None:
    path = tmp_path / "drop" / "sbcb.xlsx"
    path.parent.mkdir(parents=True)
    workbook = xlsxwriter.Workbook(str(path))
    sheet = workbook.add_worksheet("参保")
    date_format = workbook.add_format({"num_format": "yyyy-mm-dd"})
    time_format = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    sheet.write_row(0, 0, ["登记编号", "姓名", "参保日期", "更新时间", "基数"])
    sheet.write_number(1, 0, 1001)
    sheet.write_string(1, 1, "张三")
    sheet.write_datetime(1, 2, dt.datetime(2019, 7, 1), date_format)
    sheet.write_datetime(1, 3, dt.datetime(2026, 1, 2, 8, 30, 0, 999_000), time_format)
    sheet.write_number(1, 4, 4500.5)
    sheet.write_row(3, 0, ["1002", "李四", "2019年7月1日", "2026-01-02 08:31:00", ""])  # row 2 left blank
    workbook.close()
    rows = _rows(_read(_connector(tmp_path)))
    assert rows[0] | {"_file": None} == {"登记编号": "1001", "姓名": "张三", "参保日期": "2019-07-01", "更新时间": "2026-01-02 08:30:01",
                                         "基数": "4500.5", "_file": None, "_row": 1, "_error": None, "_raw": None}
    assert rows[1]["参保日期"] == "2019年7月1日" and rows[1]["_row"] == 3 and rows[1]["基数"] is None


def test_corrupt_workbook_is_rejected(tmp_path: Path) -> None:
    _drop(tmp_path, "sbcb.xlsx", b"PK\x03\x04 not really a zip")
    connector = _connector(tmp_path)
    assert _read(connector).num_rows == 0
    assert "cannot read workbook" in connector.details()["rejected"][0]["reason"]


def test_json_lines_and_json_arrays(tmp_path: Path) -> None:
    lines = [json.dumps({"登记编号": "L1", "金额": 12.5, "有效": True, "照面": {"a": 1}}, ensure_ascii=False), "{broken", "[1, 2]", "",
             json.dumps({"登记编号": "L2", "新字段": None}, ensure_ascii=False)]
    _drop(tmp_path, "a.jsonl", "\n".join(lines).encode("utf-8"))
    _drop(tmp_path, "b.json", json.dumps([{"登记编号": 7, "名称": "某公司"}], ensure_ascii=False).encode("utf-8"))
    _drop(tmp_path, "c.json", b'[{"\xe7\x99\xbb\xe8\xae\xb0\xe7\xbc\x96\xe5\x8f\xb7": "x"}, {"oops": ')
    connector = _connector(tmp_path)
    rows = _rows(_read(connector))
    assert [(r["_file"], r["_row"]) for r in rows] == [("a.jsonl", 1), ("a.jsonl", 2), ("a.jsonl", 3), ("a.jsonl", 5), ("b.json", 1)]
    assert rows[0]["金额"] == "12.5" and rows[0]["有效"] == "true" and json.loads(rows[0]["照面"]) == {"a": 1}
    assert "invalid JSON" in rows[1]["_error"] and rows[1]["_raw"] == "{broken"
    assert "not a JSON object" in rows[2]["_error"] and rows[4]["登记编号"] == "7"
    assert [r["file"] for r in connector.details()["rejected"]] == ["c.json"]


def test_same_content_is_never_loaded_twice(tmp_path: Path) -> None:
    content = f"{HEADER}\nD001,张三,李四,2020-01-02\n".encode("gbk")
    _drop(tmp_path, "hydj_1.csv", content)
    _drop(tmp_path, "hydj_1_copy.csv", content)  # the same file dropped twice under two names
    first = _connector(tmp_path)
    landing = write_landing(tmp_path / "landing", "t_drop", "r1", first.arrow_schema(), first.read_batches(), details=first.details)
    assert landing.rows == 1 and landing.details["duplicates"][0]["same_as"] == "hydj_1.csv"
    assert not first.state.path.exists()  # nothing is marked before the landing is committed
    first.commit(landing)
    _drop(tmp_path, "hydj_1_again.csv", content)
    _drop(tmp_path, "hydj_2.csv", f"{HEADER}\nD002,王五,赵六,2021-01-02\n".encode("gbk"))
    second = _connector(tmp_path)
    table = _read(second)
    assert table.column("_file").to_pylist() == ["hydj_2.csv"] and second.details()["already_known"] == 3
    assert set(second.pending_fingerprints.values()) == {"hydj_2.csv"}


def test_rejected_content_is_not_retried_but_a_corrected_file_is(tmp_path: Path) -> None:
    _drop(tmp_path, "x.csv", "男方姓名\n张三\n".encode("utf-8"))
    first = _connector(tmp_path)
    landing = write_landing(tmp_path / "landing", "t_drop", "r1", first.arrow_schema(), first.read_batches(), details=first.details)
    first.commit(landing)
    assert first.state.known()[landing.details["rejected"][0]["sha256"]]["status"] == "rejected"
    again = _connector(tmp_path)
    assert _read(again).num_rows == 0 and again.details()["rejected"] == []
    _drop(tmp_path, "x.csv", "登记编号,男方姓名\nD9,张三\n".encode("utf-8"))
    assert _read(_connector(tmp_path)).column("登记编号").to_pylist() == ["D9"]


def test_glob_and_ignored_names(tmp_path: Path) -> None:
    for name in ("hydj_1.csv", "hydj_2.csv", "other.csv", ".hydj_3.csv", "hydj_4.csv.part", "~$hydj_5.csv"):
        _drop(tmp_path, name, f"{HEADER}\n{name},a,b,c\n".encode("utf-8"))
    table = _read(_connector(tmp_path, "hydj_*.csv"))
    assert sorted(table.column("_file").to_pylist()) == ["hydj_1.csv", "hydj_2.csv"]


def test_missing_folder_is_a_clear_source_error(tmp_path: Path) -> None:
    from connectors.base import SourceError

    with pytest.raises(SourceError, match="t_drop.*drop folder not found"):
        _connector(tmp_path).arrow_schema()


def test_large_csv_streams_in_bounded_batches(tmp_path: Path) -> None:
    rows = 200_000
    body = "".join(f"D{i:07d},张{i},李{i},2020-01-02\n" for i in range(rows))
    _drop(tmp_path, "big.csv", (HEADER + "\n" + body).encode("gbk"))
    connector = _connector(tmp_path)
    connector.arrow_schema()
    pool = pa.default_memory_pool()
    sizes, last, peak, total = [], None, 0, 0
    for batch in connector.read_batches(batch_rows=10_000):
        sizes.append(batch.num_rows)
        last = batch.column("_row")[-1].as_py()
        peak, total = max(peak, pool.bytes_allocated()), total + batch.nbytes
    assert sum(sizes) == rows and max(sizes) <= 10_000 and last == rows
    assert peak < total / 2  # Arrow memory held at any time is a fraction of the data, not all of it
    assert not list((tmp_path / "data" / "tmp").iterdir())  # the spool is removed once read


def test_detect_encoding_prefers_boms_and_rejects_binary(tmp_path: Path) -> None:
    assert detect_encoding(_drop(tmp_path, "a", "名".encode("utf-16"))) == "utf-16"
    assert detect_encoding(_drop(tmp_path, "b", b"plain ascii")) == "utf-8"
    with pytest.raises(FileRejected, match="NUL"):
        detect_encoding(_drop(tmp_path, "c", "a,b".encode("utf-16-le")))


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1 << 20])
def test_json_array_parser_across_chunk_boundaries(chunk: int) -> None:
    text = ' [ {"a": [1, {"b": "]"}]}, 12345, "x,y", null , {"c": 1.5e3} ] \n'
    assert list(iter_json_array(io.StringIO(text), chunk_chars=chunk)) == json.loads(text)
    assert list(iter_json_array(io.StringIO("[]"), chunk_chars=chunk)) == []


@pytest.mark.parametrize("text", ['{"a": 1}', "[1, 2", "[1 2]", "[1] [2]", "", "[{]"])
def test_json_array_parser_rejects_what_is_not_one_array(text: str) -> None:
    with pytest.raises(ValueError):
        list(iter_json_array(io.StringIO(text), chunk_chars=2))


def test_several_globs_and_deeply_nested_json(tmp_path: Path) -> None:
    _drop(tmp_path, "a.jsonl", ('{"登记编号": "J1"}\n' + "[" * 100_000 + "\n").encode("utf-8"))
    _drop(tmp_path, "b.csv", "登记编号\nC1\n".encode("utf-8"))
    _drop(tmp_path, "c.txt", "登记编号\nT1\n".encode("utf-8"))
    rows = _rows(_read(_connector(tmp_path, ("*.jsonl", "*.csv"))))
    assert [(r["_file"], r["登记编号"]) for r in rows] == [("a.jsonl", "J1"), ("a.jsonl", None), ("b.csv", "C1")]
    assert rows[1]["_error"].startswith("JSON")


def test_collect_marks_files_only_after_the_landing_and_a_rerun_finishes_the_job(tmp_path: Path, hub_settings, monkeypatch) -> None:
    import yaml

    import connectors.collect as collect_module
    from connectors.state import state_path
    from hub.db import upgrade

    upgrade(hub_settings.database_url)
    entry = {"id": "t_drop", "department": "民政厅", "department_code": "minzheng", "kind": "file", "connection": "t_drop",
             "glob": "*.csv", "library": "population", "primary_key": ["登记编号"], "fields": {"登记编号": {"to": "registration_no"}}}
    registry = tmp_path / "sources.yaml"
    registry.write_text(yaml.safe_dump({"sources": [entry]}, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("HUB_SOURCE_REGISTRY", str(registry))
    # extra as a JSON string, as some tools write it
    monkeypatch.setenv("AIRFLOW_CONN_T_DROP", json.dumps({"conn_type": "fs", "extra": json.dumps({"path": str(tmp_path / "drop")})}))
    _drop(tmp_path, "hydj_1.csv", f"{HEADER}\nD001,张三,李四,2020-01-02\n".encode("gbk"))
    state = state_path(hub_settings.data_root, "t_drop")

    real_record = collect_module.record_landing
    monkeypatch.setattr(collect_module, "record_landing", lambda *a: (_ for _ in ()).throw(RuntimeError("killed")))
    with pytest.raises(RuntimeError):
        collect_module.collect("t_drop", "r1")
    assert not state.exists()  # landed but not recorded: the file is not marked, so it cannot be lost
    monkeypatch.setattr(collect_module, "record_landing", real_record)
    landing = collect_module.collect("t_drop", "r1")  # the retry of the same run finds its landing and marks the file
    assert landing["rows"] == 1 and landing["details"]["files"][0]["encoding"] == "gb18030"
    assert [v["file"] for v in json.loads(state.read_text(encoding="utf-8"))["files"].values()] == ["hydj_1.csv"]
    assert collect_module.collect("t_drop", "r2")["rows"] == 0


def test_world_connections_point_file_sources_at_their_folders(tmp_path: Path) -> None:
    from hub.pipeline import world_connections

    world = tmp_path / "world"
    (world / "minzheng").mkdir(parents=True)
    (world / "minzheng" / "shzz.csv").write_text("x", encoding="utf-8")
    (world / "licences" / "scjg").mkdir(parents=True)
    sources = [
        {"id": "gongan_hjrk", "kind": "sql", "location": "gongan.sqlite"},
        {"id": "minzheng_hydj", "kind": "file", "location": "minzheng/hydj_*.csv"},
        {"id": "minzheng_shzz", "kind": "file", "location": "minzheng/shzz.csv"},
        {"id": "licences_scjg", "kind": "file", "location": "licences/scjg"},
    ]
    (world / "world.json").write_text(json.dumps({"seed": 1, "sources": sources}), encoding="utf-8")
    connections = {k: json.loads(v) for k, v in world_connections(world).items()}
    assert connections["gongan_hjrk"]["conn_type"] == "sqlite"
    folders = {k: v["extra"]["path"] for k, v in connections.items() if v["conn_type"] == "fs"}
    assert folders == {"minzheng_hydj": str((world / "minzheng").resolve()), "minzheng_shzz": str((world / "minzheng").resolve()),
                       "licences_scjg": str((world / "licences" / "scjg").resolve())}


def test_a_long_table_continued_on_further_sheets_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "drop" / "sbcb.xlsx"
    path.parent.mkdir(parents=True)
    workbook = xlsxwriter.Workbook(str(path))
    for sheet_name, first in (("参保1", 1), ("参保2", 3)):
        sheet = workbook.add_worksheet(sheet_name)
        sheet.write_row(0, 0, ["登记编号", "姓名"])
        sheet.write_row(1, 0, [f"P{first}", "甲"])
        sheet.write_row(2, 0, [f"P{first + 1}", "乙"])
    workbook.add_worksheet("说明").write_row(0, 0, ["本表由人社厅导出"])
    workbook.close()
    connector = _connector(tmp_path)
    rows = _rows(_read(connector))
    assert [(r["登记编号"], r["_row"]) for r in rows] == [("P1", 1), ("P2", 2), ("P3", 3), ("P4", 4)]
    sheets = connector.details()["files"][0]["sheets"]
    assert sheets[:2] == [{"sheet": "参保1", "first_row": 1, "last_row": 2}, {"sheet": "参保2", "first_row": 3, "last_row": 4}]
    assert sheets[2]["sheet"] == "说明" and "ignored" in sheets[2]
