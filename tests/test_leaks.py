"""Personal data protection: after a small pipeline run, no clear resident ID, phone number or household address of
the world's persons is anywhere it should not be — any table of the hub database (SQLite via `hub run`, PostgreSQL via
the same stages), any log or report under the data root (Airflow's included), the open-data releases — and the
repository holds no secret. Key rotation with rewrap keeps lookups by ID working.

Ciphertext columns (LargeBinary, *_enc) are skipped: they are random bytes. Landing, staging, quarantine Parquet and
rejected copies are the departments' own data, kept by design, and are not scanned. With HUB_RELIABILITY_DIR set,
the findings go to leaks.json for docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
SCALE, SEED = 0.001, 20261205
DIGIT_RUN = re.compile(r"(?<![0-9])[0-9]{11,17}[0-9Xx]?(?![0-9])")
# Departmental raw data kept on purpose (immutable landing, staging, quarantine, rejected copies), the generated
# source systems, the key ring and spool space: not places where personal data may not be.
NOT_SCANNED = ("world", "landing", "staging", "quarantine", "rejected", "keys", "tmp", "state")
TEXT_SUFFIXES = {".log", ".txt", ".json", ".jsonl", ".html", ".md", ".csv", ".jsonld", ".xml", ".yaml", ".sig", ".out"}
FINDINGS: dict[str, list[str]] = {}


@pytest.fixture(scope="module", autouse=True)
def summary() -> Iterator[None]:
    """Write what the scans looked at and found, when asked to."""
    yield
    target = os.environ.get("HUB_RELIABILITY_DIR")
    if target and FINDINGS:
        Path(target).mkdir(parents=True, exist_ok=True)
        (Path(target) / "leaks.json").write_text(json.dumps(FINDINGS, ensure_ascii=False, indent=2), encoding="utf-8")


class Needles:
    """The world's persons' clear identifiers: resident IDs (18 and legacy 15), phones, household addresses."""

    def __init__(self, world: Path) -> None:
        persons = pq.read_table(world / "truth" / "persons.parquet").to_pylist()
        self.ids = {str(p["id_number"]).upper() for p in persons if p["id_number"]}
        self.ids |= {str(p["legacy_id15"]) for p in persons if p.get("legacy_id15")}
        self.phones = {str(p["phone"]) for p in persons if p["phone"]}
        addresses = sorted({str(p["address"]) for p in persons if p["address"] and len(str(p["address"])) >= 8}, key=len, reverse=True)
        self.addresses = re.compile("|".join(re.escape(a) for a in addresses)) if addresses else None

    def find(self, text: str) -> list[str]:
        """Clear identifiers in a text (masked: never print what was found in full)."""
        found = [f"ID {m[:6]}…" for m in DIGIT_RUN.findall(text) if m.upper() in self.ids]
        found += [f"phone {m[:3]}…" for m in DIGIT_RUN.findall(text) if m in self.phones]
        if self.addresses is not None:
            found += [f"address {m.group(0)[:6]}…" for m in self.addresses.finditer(text)]
        return found


def _run(command: list[str], env: dict[str, str], log: Path) -> None:
    """Run a command, its output to a log under the data root (itself scanned); fail with its tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as handle:
        done = subprocess.run(command, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, timeout=1800)
    assert done.returncode == 0, log.read_text(encoding="utf-8")[-3000:]


def _env(data_root: Path, **extra: str) -> dict[str, str]:
    """A clean hub environment on its own data root."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "AIRFLOW"))}
    return env | {"HUB_DATA_ROOT": str(data_root), "HUB_SETTINGS_FILE": str(data_root / "absent.toml")} | extra


@pytest.fixture(scope="module")
def sqlite_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`hub run` (Airflow, dag.test) at a tiny scale on SQLite; returns the data root."""
    root = tmp_path_factory.mktemp("leaks") / "data"
    _run([str(Path(sys.executable).with_name("hub")), "run", "--scale", str(SCALE), "--seed", str(SEED)], _env(root),
         root / "console.log")
    return root


@pytest.fixture(scope="module")
def postgres_run(sqlite_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The same stages (hub.fault_campaign's runner) into a PostgreSQL hub database; (data root, URL)."""
    from conftest import PG_ADMIN_URL, _throwaway_database

    databases = _throwaway_database(PG_ADMIN_URL, "PostgreSQL")
    url = next(databases)
    root = tmp_path_factory.mktemp("leaks-pg") / "data"
    _run([sys.executable, "-m", "hub.fault_campaign", "stages"],
         _env(root, HUB_DATABASE_URL=url, HUB_WORLD_DIR=str(sqlite_run / "world")), root / "console.log")
    yield root, url
    next(databases, None)


def scan_database(url: str, needles: Needles) -> dict[str, list[str]]:
    """Every text or JSON value of every table (binary ciphertext skipped): table.column → findings."""
    engine = sa.create_engine(url)
    found: dict[str, list[str]] = {}
    try:
        inspector = sa.inspect(engine)
        with engine.connect() as connection:
            for table in inspector.get_table_names():
                columns = [c["name"] for c in inspector.get_columns(table) if not isinstance(c["type"], sa.LargeBinary)]
                if not columns:
                    continue
                quoted = ", ".join(engine.dialect.identifier_preparer.quote(c) for c in columns)
                for row in connection.execute(sa.text(f"SELECT {quoted} FROM {table}")):
                    for column, value in zip(columns, row):
                        if isinstance(value, (bytes, memoryview)) or value is None:
                            continue
                        text = json.dumps(value, ensure_ascii=False, default=str) if isinstance(value, (dict, list)) else str(value)
                        hits = needles.find(text)
                        if hits:
                            found.setdefault(f"{table}.{column}", []).extend(hits[:3])
    finally:
        engine.dispose()
    return found


def scan_files(root: Path, needles: Needles, under: tuple[str, ...] = ()) -> tuple[int, dict[str, list[str]]]:
    """Text files under the data root outside NOT_SCANNED (or only under `under`): (files scanned, path → findings)."""
    scanned, found = 0, {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        parts = path.relative_to(root).parts
        if parts[0] in NOT_SCANNED or (under and parts[0] not in under):
            continue
        if path.suffix.lower() not in TEXT_SUFFIXES and not path.name.endswith(".log"):
            continue
        scanned += 1
        hits = needles.find(path.read_text(encoding="utf-8", errors="replace"))
        if hits:
            found[str(path.relative_to(root))] = hits[:5]
    return scanned, found


def _record(name: str, scanned: int, found: dict[str, list[str]]) -> None:
    """Keep one scan's outcome for the summary."""
    FINDINGS[name] = [f"scanned {scanned}"] + [f"{where}: {', '.join(hits)}" for where, hits in found.items()]


@pytest.mark.slow
@pytest.mark.airflow
def test_no_clear_personal_data_in_any_table_of_the_sqlite_hub_database(sqlite_run: Path) -> None:
    needles = Needles(sqlite_run / "world")
    found = scan_database(f"sqlite:///{sqlite_run / 'hub.db'}", needles)
    _record("hub database (SQLite)", len(sa.inspect(sa.create_engine(f"sqlite:///{sqlite_run / 'hub.db'}")).get_table_names()), found)
    assert not found, found


@pytest.mark.slow
@pytest.mark.postgres
def test_no_clear_personal_data_in_any_table_of_the_postgresql_hub_database(sqlite_run: Path, postgres_run: tuple[Path, str]) -> None:
    _, url = postgres_run
    found = scan_database(url, Needles(sqlite_run / "world"))  # the PostgreSQL run read the same world
    _record("hub database (PostgreSQL)", len(sa.inspect(sa.create_engine(url)).get_table_names()), found)
    assert not found, found


@pytest.mark.slow
@pytest.mark.airflow
def test_no_clear_personal_data_in_logs_and_reports(sqlite_run: Path, postgres_run: tuple[Path, str]) -> None:
    needles = Needles(sqlite_run / "world")
    logs = list((sqlite_run / "airflow" / "logs").rglob("*"))
    assert any(p.is_file() for p in logs), "the Airflow run left no log to scan"
    scanned, found = scan_files(sqlite_run, needles, under=("airflow", "quality", "licences", "console.log"))
    more, found_pg = scan_files(postgres_run[0], needles, under=("quality", "licences", "console.log"))
    _record("logs and reports (Airflow logs, console, quality reports, Data Docs)", scanned + more, found | found_pg)
    assert scanned > 0 and not found and not found_pg, found | found_pg


@pytest.mark.slow
@pytest.mark.airflow
def test_no_clear_personal_data_in_the_open_data_releases(sqlite_run: Path) -> None:
    scanned, found = scan_files(sqlite_run, Needles(sqlite_run / "world"), under=("opendata",))
    _record("open-data releases", scanned, found)
    assert scanned > 0 and not found, found


# ------------------------------------------------------------------------------------------------
# Secrets in the repository
# ------------------------------------------------------------------------------------------------


SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----"),
    "hub key ring": re.compile(r'"(?:index_key|key)"\s*:\s*"[A-Za-z0-9+/_-]{42,}={0,2}"'),  # 32 random bytes, base64
    "password in a URL": re.compile(r"[a-z+]+://[^:/\s\"'@]+:(?!\$\{|\{|<|\*)[^@\s\"'/]{4,}@"),
    "password assignment": re.compile(r"(?i)\b(?:password|passwd|secret|api_key|token)\s*[:=]\s*[\"'][^\"'\s{}<$]{8,}[\"']"),
    "cloud key": re.compile(r"\b(?:AKIA[0-9A-Z]{16}|ghp_[A-Za-z0-9]{36}|xox[bp]-[A-Za-z0-9-]{20,})\b"),
}
SECRET_FILES = re.compile(r"(?:^|/)(?:\.env|keyring\.json|id_rsa|id_ed25519|.*\.pem|.*\.key|.*\.p12|.*\.pfx)$")
# Test fixtures that must look like secrets to prove they never leak (each checked to be a made-up test value).
ALLOWED = {
    ("tests/test_collect_failures.py", "password assignment"),  # PASSWORD = "Pw-7f3kQz9-never-logged": proves it is not logged
    ("tests/test_connector_http.py", "password assignment"),  # the fake court API's token
    ("tests/test_db_migrations.py", "password in a URL"), ("tests/test_db_migrations.py", "password assignment"),  # hidden in output
    ("tests/test_sql_connector.py", "password in a URL"),  # proves a connection password never reaches an error
    ("tests/test_leaks.py", "password assignment"), ("tests/test_leaks.py", "private key"),  # these patterns themselves
}


def repository_files() -> list[str]:
    """Tracked and not-ignored untracked files of the repository (what a commit could carry)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    return sorted({f for f in listed if (ROOT / f).is_file()})


def test_the_repository_holds_no_secret() -> None:
    files = repository_files()
    assert len(files) > 50
    found = [f"{f}: secret-like file name" for f in files if SECRET_FILES.search(f)]
    for name in files:
        path = ROOT / name
        if path.stat().st_size > 2_000_000:
            continue
        text = path.read_text(encoding="utf-8", errors="ignore")
        for kind, pattern in SECRET_PATTERNS.items():
            if pattern.search(text) and (name, kind) not in ALLOWED:
                found.append(f"{name}: {kind}")
    FINDINGS["repository (git ls-files)"] = [f"scanned {len(files)}"] + found
    assert not found, found


def test_the_data_root_and_build_outputs_are_ignored_by_git() -> None:
    """data/ holds the key ring and the hub database: it must never be committable."""
    ignored = subprocess.run(["git", "check-ignore", "data/keys/keyring.json", "data/hub.db", ".venv/bin/python"], cwd=ROOT,
                             capture_output=True, text=True).stdout.split()
    assert ignored == ["data/keys/keyring.json", "data/hub.db", ".venv/bin/python"]


# ------------------------------------------------------------------------------------------------
# Key rotation keeps lookups by ID working
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.airflow
def test_key_rotation_and_rewrap_keep_lookups_by_id_working(sqlite_run: Path) -> None:
    hub = str(Path(sys.executable).with_name("hub"))
    env = _env(sqlite_run)
    person = next(p for p in pq.read_table(sqlite_run / "world" / "truth" / "persons.parquet").to_pylist()
                  if _profile(env, p["id_number"]) is not None)
    before = _profile(env, person["id_number"])
    _run([hub, "keys", "rotate"], env, sqlite_run / "rotate.log")
    _run([hub, "keys", "rewrap"], env, sqlite_run / "rewrap.log")
    assert "已重加密" in (sqlite_run / "rewrap.log").read_text(encoding="utf-8")
    after = _profile(env, person["id_number"])
    assert after == before and after["person"]["id_number"] == person["id_number"]
    engine = sa.create_engine(f"sqlite:///{sqlite_run / 'hub.db'}")
    keyring = json.loads((sqlite_run / "keys" / "keyring.json").read_text(encoding="utf-8"))
    with engine.connect() as connection:
        tokens = connection.execute(sa.text("SELECT id_number_enc FROM person")).scalars().all()
    engine.dispose()
    from hub.crypto import FieldCipher, Keyring

    cipher = FieldCipher(Keyring(keyring, source="test"))
    assert len(keyring["data_keys"]) == 2 and {cipher.key_id_of(t) for t in tokens} == {keyring["primary"]}


def _profile(env: dict[str, str], resident_id: str) -> dict | None:
    """一人一档 of a resident ID, revealed, read in a child process under `env` (None: not in the libraries)."""
    code = ("import json, sys\nfrom hub.db import engine_for\nfrom libraries.views import person_profile, SubjectNotFound\n"
            "try:\n    p = person_profile(engine_for(), sys.argv[1], reveal=True, today=__import__('datetime').date(2026, 6, 1))\n"
            "except SubjectNotFound:\n    p = None\nprint(json.dumps(p, ensure_ascii=False, default=str))\n")
    done = subprocess.run([sys.executable, "-c", code, resident_id], env=env, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_scanners_find_planted_leaks(tmp_path: Path) -> None:
    """A scanner that finds nothing proves nothing: plant one of each and expect it found."""
    world = tmp_path / "world" / "truth"
    world.mkdir(parents=True)
    import pyarrow as pa

    pq.write_table(pa.table({"id_number": ["42010219900102123X"], "legacy_id15": ["420102900102123"], "phone": ["13912345678"],
                             "address": ["湖北省武汉市江岸区解放大道100号"]}), world / "persons.parquet")
    needles = Needles(tmp_path / "world")
    planted = "日志 resident 42010219900102123x called from 13912345678 at 湖北省武汉市江岸区解放大道100号 (old 420102900102123)"
    assert len(needles.find(planted)) == 4 and not needles.find("4201021990010212345 139123456789 湖北省武汉市")
    key = "-----BEGIN " + "PRIVATE KEY-----"
    ring = '{"index_key": "' + "A" * 43 + '="}'
    url = "postgresql://hub:" + "hunter22" + "@db/hub"
    assert SECRET_PATTERNS["private key"].search(key) and SECRET_PATTERNS["hub key ring"].search(ring)
    assert SECRET_PATTERNS["password in a URL"].search(url) and not SECRET_PATTERNS["password in a URL"].search("postgresql://hub@db/x")
