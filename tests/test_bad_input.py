"""Bad input, from the committed corpus in tests/badinput/ and made at test time (a 10 MB cell, hostile file names):
every case ends in a clear Chinese reason — a rejected file, a row kept with its error, a refused request — while
the run goes on, and never in a traceback. Hypothesis fuzzes the file readers and the `hub quality check` path
(the normalisers and identifier checks are fuzzed in tests/test_normalize.py and tests/test_identifiers_property.py).

With HUB_RELIABILITY_DIR set (`make faults`), the counts per category go to bad_input.json for docs/reliability.md.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.files import FileConnector, FileOptions
from connectors.state import FileState

CORPUS = Path(__file__).resolve().parent / "badinput"
CORPUS_FILES = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix != ".py")
CHINESE = re.compile(r"[\u4e00-\u9fff]")
REFERENCE = "2026-01-01"
GOOD = "公民身份号码,姓名\n420102199001021234,良民\n"
TALLY: dict[str, dict[str, int]] = defaultdict(lambda: {"tried": 0, "handled": 0})


def _count(category: str, handled: bool) -> None:
    """Tally one bad input of a category (handled: a clear outcome, no traceback)."""
    TALLY[category]["tried"] += 1
    TALLY[category]["handled"] += int(handled)


@pytest.fixture(scope="module", autouse=True)
def summary() -> Iterator[None]:
    """Write the tally for docs/reliability.md when asked to."""
    yield
    target = os.environ.get("HUB_RELIABILITY_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        (Path(target) / "bad_input.json").write_text(json.dumps(dict(sorted(TALLY.items())), ensure_ascii=False, indent=2),
                                                     encoding="utf-8")


def _connector(folder: Path, work: Path, **options) -> FileConnector:
    """A file-drop connector over `folder` with its state, rejects and spool under `work`."""
    return FileConnector("t_bad", folder, "*", (), FileState(work / "state.json", "t_bad"), work / "rejected", work / "tmp",
                         FileOptions(**options))


def _read(connector: FileConnector) -> pa.Table:
    """Everything the connector lands."""
    schema = connector.arrow_schema()
    return pa.Table.from_batches(list(connector.read_batches()), schema=schema)


def _quality_check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict], str]:
    """`hub quality check --library population PATH` in this process: exit code, JSON lines, stderr."""
    from hub.cli import main

    code = main(["quality", "check", "--library", "population", "--reference-date", REFERENCE, str(path)])
    out = capsys.readouterr()
    return code, [json.loads(line) for line in out.out.splitlines() if line.strip()], out.err


# ------------------------------------------------------------------------------------------------
# The corpus through the file-drop connector and through `hub quality check`
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.relative_to(CORPUS).as_posix())
def test_a_bad_file_is_rejected_or_kept_with_its_errors_and_the_good_file_still_lands(path: Path, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    shutil.copy(path, drop / path.name)
    (drop / "zz_good.csv").write_text(GOOD, encoding="utf-8")
    connector = _connector(drop, tmp_path)
    table = _read(connector)
    rejected = {r["file"]: r for r in connector.details()["rejected"]}
    rows = table.to_pylist()
    assert [r["姓名"] for r in rows if r["_file"] == "zz_good.csv"] == ["良民"]  # the run goes on
    if path.name in rejected:
        assert CHINESE.search(rejected[path.name]["reason"]), rejected[path.name]
        copy = Path(rejected[path.name]["copy"])
        assert copy.parent == tmp_path / "rejected" and copy.with_name(copy.name + ".reason.txt").exists()
    else:
        errors = [r["_error"] for r in rows if r["_file"] == path.name and r["_error"]]
        assert all(CHINESE.search(e) for e in errors), errors
    _count(path.parent.name, True)


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.relative_to(CORPUS).as_posix())
def test_quality_check_answers_every_bad_file_in_json_lines_without_a_traceback(path: Path, capsys) -> None:
    code, lines, err = _quality_check(path, capsys)
    assert code in (0, 1) and "Traceback" not in err
    assert "summary" in lines[-1]
    for line in lines[:-1]:
        assert "error" in line and CHINESE.search(line["error"]) or "rule" in line and CHINESE.search(line["message"])
    _count(f"quality-check/{path.parent.name}", True)


# ------------------------------------------------------------------------------------------------
# Made at test time: a 10 MB cell, hostile names
# ------------------------------------------------------------------------------------------------


HUGE = 10 * 1024 * 1024


@pytest.mark.parametrize("kind", ["csv", "jsonl", "json"])
def test_a_10_mb_cell_is_landed_whole_and_checked(kind: str, tmp_path: Path, capsys) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    cell = "长" * (HUGE // 3)  # 10 MB of UTF-8
    path = drop / f"huge.{kind}"
    if kind == "csv":
        path.write_text(f"公民身份号码,姓名,户籍地址\n420102199001021234,张三,{cell}\n", encoding="utf-8")
    else:
        record = {"公民身份号码": "420102199001021234", "姓名": "张三", "户籍地址": cell}
        text = json.dumps(record, ensure_ascii=False)
        path.write_text(text + "\n" if kind == "jsonl" else f"[{text}]", encoding="utf-8")
    connector = _connector(drop, tmp_path / "work")
    table = _read(connector)
    code, lines, err = _quality_check(path, capsys)
    assert "Traceback" not in err
    if kind == "csv":  # the CSV reader parses 1 MiB blocks: a longer record is refused, and says so
        assert table.num_rows == 0 and "超过 1 MiB" in connector.details()["rejected"][0]["reason"]
        assert code == 1 and "超过 1 MiB" in lines[0]["error"]
    else:  # JSON is parsed value by value: the cell lands whole
        assert table.num_rows == 1 and len(table.column("户籍地址")[0].as_py()) == len(cell)
        assert code == 0 and lines[-1]["summary"]["rows"] == 1
    _count("huge-field", True)


HOSTILE_NAMES = ["a[1].csv", "*.csv", "?.csv", "'; DROP TABLE source_run;--.csv", "\" OR 1=1 --.csv", "$(touch pwned).csv",
                 "`id`.csv", "-rf.csv", "名单 (1).csv", "..%2f..%2fetc%2fpasswd.csv", "%2e%2e%2fkeyring.csv", "con.csv",
                 "a\\..\\..\\b.csv", "x" * 200 + ".csv"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_file_names_are_read_as_names(name: str, tmp_path: Path, capsys) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / name).write_text("公民身份号码,姓名\n420102199001021234,张三\n", encoding="utf-8")
    (drop / "other.csv").write_text("公民身份号码,姓名\n420102199001021250,李四\n", encoding="utf-8")
    code, lines, err = _quality_check(drop / name, capsys)
    assert code == 0 and lines[-1]["summary"]["rows"] == 1 and "Traceback" not in err  # this file, not its glob matches
    connector = _connector(drop, tmp_path / "work")
    table = _read(connector)
    files = set(table.column("_file").to_pylist())
    assert "other.csv" in files
    assert (name in files) != name.startswith(".")  # dot files are temporary uploads: ignored, never misread
    assert not (tmp_path / "pwned").exists() and not (drop / "pwned").exists()
    _count("hostile-file-name", True)


def test_a_rejected_file_with_a_hostile_name_is_copied_inside_the_rejected_folder(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    name = "..%2f..%2f'; DROP TABLE x;--.json"
    (drop / name.lstrip(".")).write_bytes(b"{not json")
    connector = _connector(drop, tmp_path / "work")
    _read(connector)
    copies = [p for p in (tmp_path / "work").rglob("*") if p.is_file() and "DROP" in p.name]
    assert copies and all((tmp_path / "work" / "rejected") in p.parents for p in copies)
    _count("hostile-file-name", True)


# ------------------------------------------------------------------------------------------------
# Formula injection into open-data CSV exports
# ------------------------------------------------------------------------------------------------


FORMULAS = ["=1+1", "+86-27-1234", "-2+3", "@SUM(A1:A9)", "\t=cmd|' /C calc'!A0", "\r=1", "=HYPERLINK(\"http://evil\",\"点我\")"]


@pytest.mark.parametrize("value", FORMULAS)
def test_open_data_csv_neutralises_formulas(value: str) -> None:
    import csv
    import io

    from opendata.formats import csv_bytes

    text = csv_bytes(pa.table({"名称": [value, "正常"], "数量": [1, 2]})).decode("utf-8-sig")
    cells = [row[0] for row in csv.reader(io.StringIO(text))][1:]
    assert cells == ["'" + value, "正常"]
    _count("formula-injection", True)


def test_formulas_from_a_department_file_reach_the_export_neutralised(tmp_path: Path) -> None:
    """The corpus file's values as a department sends them, landed, then written as an open-data CSV."""
    import csv
    import io

    from opendata.formats import csv_bytes

    drop = tmp_path / "drop"
    drop.mkdir()
    shutil.copy(CORPUS / "injection" / "formula_values.csv", drop)
    table = _read(_connector(drop, tmp_path / "work")).select(["姓名", "户籍地址"])
    rows = list(csv.reader(io.StringIO(csv_bytes(table).decode("utf-8-sig"))))[1:]
    assert rows and all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for cell in row)
    _count("formula-injection", True)


# ------------------------------------------------------------------------------------------------
# SQL injection strings in every value (and a column name) of a relational source, through to the hub database
# ------------------------------------------------------------------------------------------------


SQL_STRINGS = ["'; DROP TABLE person; --", "\" OR 1=1 --", "Robert'); DROP TABLE source_run;--", "1; DELETE FROM quality_run",
               "' UNION SELECT * FROM catalog_api_key --", "%' OR '%'='", "\\'; TRUNCATE licence; --"]
ODD_COLUMN = "note'); DROP TABLE person;--"


def test_sql_injection_strings_are_data_all_the_way_into_the_hub_database(
    hub_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectors.collect import collect
    from hub.db import upgrade
    from hub.settings import get_settings
    from libraries.load import load_pending
    from quality.stage import check_pending

    monkeypatch.setenv("HUB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("HUB_DATABASE_URL", hub_db_url)
    monkeypatch.setenv("HUB_SETTINGS_FILE", str(tmp_path / "absent.toml"))
    get_settings.cache_clear()
    upgrade(hub_db_url)
    source = sa.create_engine(f"sqlite:///{tmp_path / 'src.sqlite'}")
    # 公安's register as the registry describes it, every value hostile, plus a hostile column name.
    columns = ["rkid", "gmsfhm", "xm", "xb", "mz", "csrq", "hjdz_xzqh", "hjdz", "lxdh", "hyzk", "swrq", ODD_COLUMN]
    table = sa.Table("hjrk", sa.MetaData(), *[sa.Column(c, sa.String, primary_key=c == "rkid") for c in columns],
                     sa.Column("gxsj", sa.String))
    table.create(source)
    with source.begin() as connection:
        connection.execute(table.insert(), [{**{c: f"{i}{s}" if c == "rkid" else s for c in columns},
                                             "gxsj": f"2026-01-0{i + 1} 08:00:00"} for i, s in enumerate(SQL_STRINGS)])
    source.dispose()
    monkeypatch.setenv("AIRFLOW_CONN_GONGAN_HJRK", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "src.sqlite")}))
    hub = sa.create_engine(hub_db_url)
    tables_before = set(sa.inspect(hub).get_table_names())
    try:
        landed = collect("gongan_hjrk", "r1")
        check_pending("population", use_gx=False)
        load_pending("population")
        assert sorted(pq.read_table(landed["path"]).column(ODD_COLUMN).to_pylist()) == sorted(SQL_STRINGS)  # verbatim
        assert set(sa.inspect(hub).get_table_names()) == tables_before
        with hub.connect() as connection:
            runs = connection.execute(sa.text("SELECT rows_extracted, rows_loaded + rows_rejected FROM source_run "
                                              "WHERE source_id = 'gongan_hjrk'")).all()
            checked = connection.execute(sa.text("SELECT rows_in FROM quality_run WHERE source_id = 'gongan_hjrk'")).scalars().all()
        assert runs == [(len(SQL_STRINGS), len(SQL_STRINGS))] and checked == [len(SQL_STRINGS)]
    finally:
        hub.dispose()
        get_settings.cache_clear()
    _count("sql-injection", True)


# ------------------------------------------------------------------------------------------------
# Oversized and malformed requests to the portal and the stewards' API
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def portal(tmp_path: Path):
    """The open-data portal over an empty data root."""
    from fastapi.testclient import TestClient

    from opendata.portal import create_portal

    return TestClient(create_portal(tmp_path, None))


@pytest.fixture
def steward_api(hub_settings):
    """The stewards' queue API over an empty hub database."""
    from fastapi.testclient import TestClient

    from hub.db import engine_for, upgrade
    from quality.api import create_app

    upgrade(hub_settings.database_url)
    return TestClient(create_app(engine_for(hub_settings.database_url)), raise_server_exceptions=False)


def _chinese_refusal(response, status: int) -> None:
    """A refusal with the given status whose body says why in Chinese."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert CHINESE.search(response.text) and "Traceback" not in response.text


@pytest.mark.parametrize("request_kind", ["body", "url", "declared-length", "chunked"])
def test_oversized_requests_are_refused_in_chinese(request_kind: str, portal, steward_api) -> None:
    for client, path in ((portal, "/api/3/action/package_search"), (steward_api, "/api/quality/tickets/1/dispute")):
        if request_kind == "body":
            response = client.post(path, content=b"x" * (1 << 20))
            _chinese_refusal(response, 413)
        elif request_kind == "url":
            response = client.get(path + "?q=" + "长" * 3000)
            _chinese_refusal(response, 414)
        elif request_kind == "declared-length":
            response = client.post(path, content=b"{}", headers={"content-length": "999999999"})
            assert response.status_code in (400, 413)
        else:
            response = client.post(path, content=iter([b"x" * 65536] * 20))
            _chinese_refusal(response, 413)
        _count("oversized-request", True)


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"note": 5}', b"\xff\xfe\x00", "\u0000".encode()])
def test_malformed_bodies_to_the_steward_api_are_refused_in_chinese(body: bytes, steward_api) -> None:
    from quality.api import steward_token

    headers = {"authorization": f"Bearer {steward_token('gongan')}", "content-type": "application/json"}
    _chinese_refusal(steward_api.post("/api/quality/tickets/1/dispute", content=body, headers=headers), 400)
    form = steward_api.post("/quality/login", content=b"token=\xff\xfe", headers={"content-type": "application/x-www-form-urlencoded"})
    _chinese_refusal(form, 400)
    _count("malformed-request", True)


@pytest.mark.parametrize("path", [
    "/opendata/datasets/%2e%2e%2f%2e%2e%2fkeys/latest/files/keyring.json",
    "/opendata/datasets/x/latest/files/..%2f..%2f..%2fetc%2fpasswd",
    "/opendata/datasets/x/latest/files/%252e%252e%252fhub.db",
    "/opendata/datasets/x/latest/files//etc/passwd",
    "/opendata/datasets/x'%20OR%201=1--/latest/files/data.csv",
    "/api/quality/tickets/1%20OR%201=1",
    "/quality/tickets/..%2f..%2fadmin",
])
def test_traversal_and_injection_in_urls_are_refused_in_chinese(path: str, portal, steward_api) -> None:
    client = steward_api if "quality" in path else portal
    response = client.get(path, headers={"authorization": "Bearer nobody"})
    assert 400 <= response.status_code < 500 and "Traceback" not in response.text
    assert response.status_code == 422 or CHINESE.search(response.text), response.text[:300]
    _count("path-traversal", True)


# ------------------------------------------------------------------------------------------------
# Fuzzing: the file readers and the `hub quality check` path never raise anything but their own clear errors
# ------------------------------------------------------------------------------------------------


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                      HealthCheck.too_slow])
LABELS = ["公民身份号码", "姓名", "性别", "出生日期", "民族", "户籍地址", "联系电话", "resident_id", "婚姻状况"]


@FUZZ
@given(content=st.binary(max_size=4096), suffix=st.sampled_from([".csv", ".json", ".jsonl", ".xlsx", ".txt"]))
def test_fuzz_file_readers_land_or_reject_never_raise(content: bytes, suffix: str, tmp_path_factory) -> None:
    work = tmp_path_factory.mktemp("fuzz")
    (work / "drop").mkdir()
    (work / "drop" / f"f{suffix}").write_bytes(content)
    connector = _connector(work / "drop", work)
    table = _read(connector)
    rejected = connector.details()["rejected"]
    assert table.num_rows == 0 or not rejected
    assert all(CHINESE.search(r["reason"]) for r in rejected)
    _count("fuzz/file-reader", True)


@st.composite
def department_csv(draw) -> str:
    """A CSV a department might send: known labels and junk headers, cells of any text."""
    headers = draw(st.lists(st.one_of(st.sampled_from(LABELS), st.text(min_size=1, max_size=8)), min_size=1, max_size=6, unique=True))
    cell = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=25)
    rows = draw(st.lists(st.lists(cell, min_size=len(headers), max_size=len(headers)), max_size=8))
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(headers)
    writer.writerows(rows)
    return out.getvalue()


@FUZZ
@given(text=department_csv(), encoding=st.sampled_from(["utf-8", "utf-8-sig", "gb18030", "utf-16"]))
def test_fuzz_quality_check_answers_or_names_the_problem(text: str, encoding: str, tmp_path_factory) -> None:
    from quality.filecheck import FileCheckError, check_file

    path = tmp_path_factory.mktemp("qc") / "dept.csv"
    try:
        path.write_bytes(text.encode(encoding))
    except UnicodeEncodeError:
        return  # not representable in that encoding: nothing a department could send
    try:
        report = check_file(path, "population", dt.date(2026, 1, 1))
    except FileCheckError as error:
        assert CHINESE.search(str(error))
    else:
        assert report.rows >= 0 and all(CHINESE.search(f["message"]) for f in report.findings)
    _count("fuzz/quality-check", True)
