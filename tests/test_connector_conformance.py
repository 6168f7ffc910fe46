"""One conformance suite every connector kind passes (the Singer SDK's pattern), through the real collect() path.

Kinds: sql on SQLite, file drops as GBK CSV, Excel and JSON Lines, and an HTTP JSON API — and the same three
families in snapshot mode (a table and an API without a replication key, a department re-sending its complete
list as a new CSV file). For each: full read (a first snapshot is all inserts), incremental read (new rows for
sql/http, new files for file drops, only the differences for snapshots), idempotent rerun of a run id (same
landing, nothing read), schema drift (added / removed / retyped column, warn or fail by registry policy)
and bad input (a malformed file is rejected and the rest lands; a failing API or a missing table fails clearly).
Snapshot kits also pass the diff test: a changed snapshot lands exactly its inserts, updates and deletes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute below
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import xlsxwriter
import yaml

import connectors.collect as collect_module
from connectors.base import SourceError
from connectors.collect import collect
from connectors.landing import read_landing
from test_connector_http import TOKEN, FakeApi

ID, NAME, UPDATED, PHONE = "编号", "姓名", "更新时间", "电话"
DRIFTS = {"added": PHONE, "removed": NAME, "retyped": NAME}


def updated(i: int, day: int) -> str:
    return f"2026-01-{day:02d} 08:{i // 60 % 60:02d}:{i % 60:02d}"


def records(start: int, count: int, day: int, drift: str | None = None) -> list[dict]:
    """Source rows: id, name, update time; a drift adds a phone, drops the name or makes the name a number."""
    rows = []
    for i in range(start, start + count):
        row = {ID: i, NAME: f"张{i}", UPDATED: updated(i, day)}
        if drift == "added":
            row[PHONE] = f"1380000{i:04d}"
        elif drift == "removed":
            del row[NAME]
        elif drift == "retyped":
            row[NAME] = i
        rows.append(row)
    return rows


class Kit:
    """One connector kind under test: its registry entry, its connection, and how to change its source."""

    kind = ""
    typed = True  # False: the source has no value types (CSV, Excel cells typed ad hoc), so nothing can be retyped
    snapshot = False  # True: every run reads everything and only the differences land, with _change

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.source_id = f"conf_{self.name}"

    @property
    def name(self) -> str:
        return type(self).__name__.removesuffix("Kit").lower()

    def entry(self) -> dict:
        return {"id": self.source_id, "department": "测试厅", "department_code": "test", "kind": self.kind,
                "connection": self.source_id, "library": "credit", "primary_key": [ID], "schedule": None,
                "fields": {ID: {"to": "record_id"}, NAME: {"to": "subject_name"}}}

    def connection(self) -> dict:
        raise NotImplementedError

    def add(self, start: int, count: int, day: int, drift: str | None = None) -> None:
        raise NotImplementedError

    def break_source(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class SqlKit(Kit):
    kind = "sql"

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.url = f"sqlite:///{tmp / 'source.sqlite'}"
        self.engine = sa.create_engine(self.url)
        with self.engine.begin() as connection:
            connection.execute(sa.text(f'CREATE TABLE src ("{ID}" INTEGER PRIMARY KEY, "{NAME}" TEXT, "{UPDATED}" DATETIME)'))

    def entry(self) -> dict:
        return super().entry() | {"table": "src", "replication_key": UPDATED}

    def connection(self) -> dict:
        return {"conn_type": "sqlite", "host": str(self.tmp / "source.sqlite")}

    def add(self, start: int, count: int, day: int, drift: str | None = None) -> None:
        with self.engine.begin() as connection:
            if drift == "added":
                connection.execute(sa.text(f'ALTER TABLE src ADD COLUMN "{PHONE}" TEXT'))
            elif drift == "removed":
                connection.execute(sa.text(f'ALTER TABLE src DROP COLUMN "{NAME}"'))
            elif drift == "retyped":
                connection.execute(sa.text(f'CREATE TABLE src2 ("{ID}" INTEGER PRIMARY KEY, "{NAME}" INTEGER, "{UPDATED}" DATETIME)'))
                connection.execute(sa.text(f'INSERT INTO src2 SELECT "{ID}", NULL, "{UPDATED}" FROM src'))
                connection.execute(sa.text("DROP TABLE src"))
                connection.execute(sa.text("ALTER TABLE src2 RENAME TO src"))
            table = sa.Table("src", sa.MetaData(), autoload_with=connection)
            rows = [r | {UPDATED: dt.datetime.fromisoformat(r[UPDATED])} for r in records(start, count, day, drift)]
            connection.execute(table.insert(), rows)

    def break_source(self) -> None:
        with self.engine.begin() as connection:
            connection.execute(sa.text("DROP TABLE src"))

    def close(self) -> None:
        self.engine.dispose()


class FileKit(Kit):
    kind = "file"
    suffix = ""
    broken = "batch_000"  # the malformed file break_source() drops

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.folder = tmp / "drop"
        self.folder.mkdir()
        self.files = 0

    def entry(self) -> dict:
        return super().entry() | {"glob": f"batch_*{self.suffix}"}

    def connection(self) -> dict:
        return {"conn_type": "fs", "extra": {"path": str(self.folder)}}

    def add(self, start: int, count: int, day: int, drift: str | None = None) -> None:
        self.files += 1
        self.write(self.folder / f"batch_{self.files:03d}{self.suffix}", records(start, count, day, drift))

    def write(self, path: Path, rows: list[dict]) -> None:
        raise NotImplementedError

    def break_source(self) -> None:
        self.add(1, 5, day=1)
        (self.folder / f"{self.broken}{self.suffix}").write_bytes(self.malformed())

    def malformed(self) -> bytes:
        return b"\xff\xfe\xfd not text in any encoding we accept \x81"


class CsvGbkKit(FileKit):
    suffix = ".csv"
    typed = False

    def write(self, path: Path, rows: list[dict]) -> None:
        header = list(dict.fromkeys(c for r in rows for c in r))  # rows written before a column was added lack it
        lines = [",".join(header)] + [",".join(str(r.get(c, "")) for c in header) for r in rows]
        path.write_bytes(("\r\n".join(lines) + "\r\n").encode("gbk"))


class XlsxKit(FileKit):
    suffix = ".xlsx"
    typed = False

    def write(self, path: Path, rows: list[dict]) -> None:
        workbook = xlsxwriter.Workbook(str(path))
        sheet = workbook.add_worksheet()
        moment = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        header = list(rows[0])
        sheet.write_row(0, 0, header)
        for number, row in enumerate(rows, start=1):
            for column, name in enumerate(header):
                value = row[name]
                if name == UPDATED and number % 2:  # departments mix real date cells and text
                    sheet.write_datetime(number, column, dt.datetime.fromisoformat(value), moment)
                else:
                    sheet.write(number, column, value)
        workbook.close()

    def malformed(self) -> bytes:
        return b"PK\x03\x04 a truncated workbook"


class JsonlKit(FileKit):
    suffix = ".jsonl"

    def write(self, path: Path, rows: list[dict]) -> None:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


class HttpKit(Kit):
    kind = "http"

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.api = FakeApi(key=UPDATED).__enter__()

    def entry(self) -> dict:
        return super().entry() | {"replication_key": UPDATED, "endpoint": "/api/v1/sxbzxr", "page_size": 7,
                                  "since_param": "updated_since", "max_attempts": 3, "backoff_seconds": 0.01}

    def connection(self) -> dict:
        return {"conn_type": "http", "host": "127.0.0.1", "port": self.api.port, "schema": "http", "password": TOKEN}

    def add(self, start: int, count: int, day: int, drift: str | None = None) -> None:
        self.api.records += records(start, count, day, drift)

    def break_source(self) -> None:
        self.add(1, 5, day=1)
        self.api.fault = "500"

    def close(self) -> None:
        self.api.__exit__(None, None, None)


class SnapshotSqlKit(SqlKit):
    """A table without a replication key: snapshot and diff."""

    snapshot = True

    def entry(self) -> dict:
        entry = super().entry()
        del entry["replication_key"]
        return entry

    def change(self, renamed: dict[int, str], deleted: list[int]) -> None:
        with self.engine.begin() as connection:
            for key, name in renamed.items():
                connection.execute(sa.text(f'UPDATE src SET "{NAME}" = :n WHERE "{ID}" = :k'), {"n": name, "k": key})
            for key in deleted:
                connection.execute(sa.text(f'DELETE FROM src WHERE "{ID}" = :k'), {"k": key})


class SnapshotCsvKit(CsvGbkKit):
    """A department re-sending its complete list as a new GBK CSV file each time (mode: snapshot)."""

    snapshot = True
    broken = "batch_999"  # newer than the good list: the newest list is unreadable, so the newest readable one lands

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.rows: dict[int, dict] = {}

    def entry(self) -> dict:
        return super().entry() | {"mode": "snapshot"}

    def add(self, start: int, count: int, day: int, drift: str | None = None) -> None:
        if drift == "removed":  # the column is gone from the whole list
            for row in self.rows.values():
                row.pop(NAME, None)
        self.rows.update({r[ID]: r for r in records(start, count, day, drift)})
        self.resend()

    def resend(self, reordered: bool = False) -> None:
        self.files += 1
        rows = list(self.rows.values())
        self.write(self.folder / f"batch_{self.files:03d}{self.suffix}", rows[::-1] if reordered else rows)

    def change(self, renamed: dict[int, str], deleted: list[int]) -> None:
        for key, name in renamed.items():
            self.rows[key][NAME] = name
        for key in deleted:
            del self.rows[key]
        self.resend()


class SnapshotHttpKit(HttpKit):
    """An API without a replication key or since parameter: every run pages through everything."""

    snapshot = True

    def entry(self) -> dict:
        entry = super().entry()
        del entry["replication_key"], entry["since_param"]
        return entry

    def add(self, start: int, count: int, day: int, drift: str | None = None) -> None:
        for row in self.api.records:  # a full API changes all its records at once
            if drift == "added":
                row[PHONE] = None
            elif drift == "removed":
                row.pop(NAME, None)
            elif drift == "retyped":
                row[NAME] = row[ID]
        super().add(start, count, day, drift)

    def change(self, renamed: dict[int, str], deleted: list[int]) -> None:
        for row in self.api.records:
            if row[ID] in renamed:
                row[NAME] = renamed[row[ID]]
        self.api.records = [r for r in self.api.records if r[ID] not in deleted]


KITS = [SqlKit, CsvGbkKit, XlsxKit, JsonlKit, HttpKit, SnapshotSqlKit, SnapshotCsvKit, SnapshotHttpKit]


class Harness:
    """A hub data root and database, a one-source registry, and the source's connection in the environment."""

    def __init__(self, kit: Kit, settings, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.kit, self.settings, self.tmp, self.monkeypatch = kit, settings, tmp, monkeypatch
        self.registries = 0
        monkeypatch.setenv(f"AIRFLOW_CONN_{kit.source_id.upper()}", json.dumps(kit.connection()))
        self.policy("warn")

    def policy(self, on_schema_drift: str) -> None:
        """Write the registry with this drift policy (a new file each time: the registry is cached by path)."""
        self.registries += 1
        path = self.tmp / f"sources_{self.registries}.yaml"
        entry = self.kit.entry() | {"on_schema_drift": on_schema_drift}
        path.write_text(yaml.safe_dump({"sources": [entry]}, allow_unicode=True), encoding="utf-8")
        self.monkeypatch.setenv("HUB_SOURCE_REGISTRY", str(path))

    def collect(self, run_id: str) -> dict:
        return collect(self.kit.source_id, run_id)

    def ids(self, landing: dict) -> list[int]:
        return sorted(int(v) for v in pq.read_table(landing["path"]).column(ID).to_pylist() if v is not None)

    def changes(self, landing: dict) -> dict[int, str]:
        """Snapshot landings: key → _change (keys land as text from files and APIs)."""
        table = pq.read_table(landing["path"])
        return dict(zip((int(v) for v in table.column(ID).to_pylist()), table.column("_change").to_pylist()))

    def runs(self) -> int:
        engine = sa.create_engine(self.settings.database_url)
        with engine.connect() as connection:
            count = connection.execute(sa.text("SELECT count(*) FROM source_run WHERE source_id = :s"), {"s": self.kit.source_id}).scalar()
        engine.dispose()
        return count


def kit_id(kit: type[Kit]) -> str:
    return kit.__name__.removesuffix("Kit").lower()


@pytest.fixture(params=KITS, ids=kit_id)
def hub(request, hub_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    from hub.db import upgrade

    upgrade(hub_settings.database_url)
    kit = request.param(tmp_path)
    try:
        yield Harness(kit, hub_settings, tmp_path, monkeypatch)
    finally:
        kit.close()


def test_full_read(hub: Harness) -> None:
    hub.kit.add(1, 20, day=1)
    landing = hub.collect("r1")
    assert landing["rows"] == 20 and hub.ids(landing) == list(range(1, 21))
    assert {ID, UPDATED} <= set(landing["columns"]) and hub.runs() == 1
    if hub.kit.snapshot:  # a first snapshot is all inserts
        assert set(pq.read_table(landing["path"]).column("_change").to_pylist()) == {"insert"}
        assert landing["details"]["snapshot"] | {"baseline_run": None} == landing["details"]["snapshot"]
        assert landing["details"]["snapshot"]["inserts"] == 20
    if hub.kit.kind == "file":
        table = pq.read_table(landing["path"])
        assert sorted(table.column("_row").to_pylist()) == list(range(1, 21))
        assert set(table.column("_file").to_pylist()) == {"batch_001" + hub.kit.suffix}
        assert landing["details"]["files"][0]["rows"] == 20


def test_incremental_read_gets_only_new_data(hub: Harness) -> None:
    hub.kit.add(1, 20, day=1)
    assert hub.collect("r1")["rows"] == 20
    hub.kit.add(21, 5, day=2)
    second = hub.collect("r2")
    assert hub.ids(second) == list(range(21, 26))
    assert hub.collect("r3")["rows"] == 0  # nothing new: an empty landing, not a re-read


def test_rerun_of_a_run_id_is_idempotent_and_reads_nothing(hub: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.kit.add(1, 20, day=1)
    first = hub.collect("r1")
    hub.kit.add(21, 5, day=2)
    real_connector_for = collect_module.connector_for

    def no_reading(spec):
        connector = real_connector_for(spec)

        def refuse(*args, **kwargs):
            raise AssertionError("the source was read again")

        connector.arrow_schema = connector.read_batches = refuse
        return connector

    monkeypatch.setattr(collect_module, "connector_for", no_reading)
    again = hub.collect("r1")
    assert again == first and hub.runs() == 1
    assert read_landing(hub.settings.landing_dir, hub.kit.source_id, "r1").sha256 == first["sha256"]
    monkeypatch.setattr(collect_module, "connector_for", real_connector_for)
    assert hub.ids(hub.collect("r2")) == list(range(21, 26))  # the new data waited for the next run


@pytest.mark.parametrize("change", list(DRIFTS))
def test_schema_drift_is_detected_and_follows_the_policy(hub: Harness, change: str) -> None:
    if change == "retyped" and not hub.kit.typed:
        pytest.skip("CSV has no value types, and Excel types cells one by one (dates as cells or text): nothing to retype")
    hub.kit.add(1, 10, day=1)
    assert hub.collect("r1")["schema_changes"] == []
    hub.kit.add(11, 5, day=2, drift=change)
    column = DRIFTS[change]

    hub.policy("fail")
    with pytest.raises(SourceError) as failure:
        hub.collect("r2")
    message = str(failure.value)
    assert hub.kit.source_id in message and "schema drift" in message and column in message
    assert read_landing(hub.settings.landing_dir, hub.kit.source_id, "r2") is None

    hub.policy("warn")
    landing = hub.collect("r3")
    assert [(c["change"], c["column"]) for c in landing["schema_changes"]] == [(change, column)]
    if hub.kit.snapshot and change != "added":
        # A snapshot compares whole rows: a column removed or retyped at the source changes the old rows too.
        # (An added column, empty for the old rows, changes none of them.)
        assert hub.ids(landing) == list(range(1, 16))
        changes = hub.changes(landing)
        assert changes == {i: "update" if i <= 10 else "insert" for i in range(1, 16)}
    else:
        assert hub.ids(landing) == list(range(11, 16))  # the drifted data lands, once
    assert read_landing(hub.settings.landing_dir, hub.kit.source_id, "r3").schema_changes == landing["schema_changes"]


def test_an_unknown_drift_policy_is_a_clear_error(hub: Harness) -> None:
    hub.kit.add(1, 3, day=1)
    hub.policy("ignore")
    with pytest.raises(SourceError, match="on_schema_drift"):
        hub.collect("r1")


def test_bad_input_is_handled_clearly(hub: Harness) -> None:
    hub.kit.break_source()
    if hub.kit.kind == "file":
        landing = hub.collect("r1")
        assert landing["rows"] == 5 and [r["file"] for r in landing["details"]["rejected"]] == [f"{hub.kit.broken}{hub.kit.suffix}"]
        rejected = hub.settings.data_root / "rejected" / hub.kit.source_id
        reasons = list(rejected.glob("*.reason.txt"))
        assert len(reasons) == 1 and hub.kit.broken in reasons[0].read_text(encoding="utf-8")
        assert hub.collect("r2")["details"]["rejected"] == []  # the same bad content is not tried again
        return
    with pytest.raises(SourceError) as failure:
        hub.collect("r1")
    message = str(failure.value)
    assert hub.kit.source_id in message and TOKEN not in message
    if hub.kit.kind == "http":
        assert "HTTP 500" in message and len(hub.kit.api.requests) == 3  # retried up to max_attempts
    else:
        assert "src" in message
    assert hub.runs() == 0


@pytest.mark.parametrize("kit_class", [k for k in KITS if k.snapshot], ids=kit_id)
def test_snapshot_lands_exactly_the_inserts_updates_and_deletes(kit_class, hub_settings, tmp_path: Path, monkeypatch) -> None:
    from hub.db import upgrade

    upgrade(hub_settings.database_url)
    kit = kit_class(tmp_path)
    try:
        hub = Harness(kit, hub_settings, tmp_path, monkeypatch)
        kit.add(1, 20, day=1)
        assert hub.collect("r1")["rows"] == 20
        kit.change(renamed={3: "李三", 4: "李四"}, deleted=[5, 6])
        kit.add(21, 2, day=2)  # a file drop now holds two new lists: the newer one is the snapshot
        landing = hub.collect("r2")
        assert hub.changes(landing) == {3: "update", 4: "update", 5: "delete", 6: "delete", 21: "insert", 22: "insert"}
        table = pq.read_table(landing["path"])
        names = dict(zip((int(v) for v in table.column(ID).to_pylist()), table.column(NAME).to_pylist()))
        assert names[3] == "李三" and names[4] == "李四" and names[21] == "张21"
        tombstones = table.filter(pa.compute.equal(table.column("_change"), "delete"))
        for column in tombstones.column_names:  # a tombstone is the key and _change, nothing else
            if column not in (ID, "_change"):
                assert tombstones.column(column).null_count == 2, column
        summary = landing["details"]["snapshot"]
        assert (summary["inserts"], summary["updates"], summary["deletes"], summary["unchanged"]) == (2, 2, 2, 16)
        assert summary["baseline_run"] == "r1" and summary["rows"] == 20
        if kit.kind == "file":
            assert [f["file"] for f in landing["details"]["superseded"]] == ["batch_002.csv"]
        if kit.kind == "file":  # the same list sent again (a new file, rows in another order) changes nothing
            kit.resend(reordered=True)
            again = hub.collect("r3")
            assert again["rows"] == 0 and again["details"]["snapshot"]["unchanged"] == 20
        assert hub.collect("r4")["rows"] == 0
        # Deleting the rest and re-adding a deleted key: tombstones for the rest, the key comes back as an insert.
        kit.change(renamed={}, deleted=[i for i in range(1, 23) if i not in (5, 6)])
        kit.add(5, 1, day=3)
        final = hub.changes(hub.collect("r5"))
        assert final == {i: "delete" for i in range(1, 23) if i not in (5, 6)} | {5: "insert"}
    finally:
        kit.close()
