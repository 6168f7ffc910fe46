"""E-licence sealing and verification of 1,000,000 licences end to end, next to a bare Ed25519 loop.

End to end (what `seal_pending` and `verify_stored` do, both cores):
- seal: find unsealed rows, read them (decrypting persons' ID numbers and faces), canonicalise (JCS),
  sign with the issuer's Ed25519 key, write the seal columns back;
- verify: read the sealed rows, decrypt, canonicalise, look the key up, verify the signature, judge status.
Baseline in the same run, over the same canonical payloads: a bare loop of Ed25519 sign and of verify
only (no database, no canonicalisation), on both cores (per-core loop time summed, divided by the cores).
Targets: seal 1M in ≤ 40 s, verify 1M in ≤ 90 s, each ≥ 50 % of the bare loop's rate.

Input: synthetic licences (80 % organisations, 20 % natural persons with encrypted ID and face) in a fresh
SQLite hub database under <data_root>/bench/licences (generation is timed separately, not part of the figures).
Run alone: `python -m benchmarks.licence_sealing --rows 20000`; through the harness: `hub bench --only licence_sealing`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date, datetime, timedelta, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any

AT = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
TODAY = date(2026, 12, 1)
TYPE_CODE = "11100000000013338W011"
ISSUERS = 40  # departments (issuer USCCs), each with its own key
PERSON_SHARE = 0.2
GENERATE_CHUNK = 50_000


def _uscc(head: str, org8: str) -> str:
    """A valid USCC."""
    from schemas.identifiers import org_code_check_char, uscc_check_char

    body = head + org8 + org_code_check_char(org8)
    return body + uscc_check_char(body)


def _generate(engine, rows: int) -> float:
    """Insert `rows` unsealed licences; returns seconds."""
    import numpy as np

    from hub.crypto import get_cipher
    from hub.models import Licence
    from schemas.identifiers import LICENCE_ID_PREFIX, licence_id_check_chars

    started = time.perf_counter()
    cipher = get_cipher()
    rng = np.random.default_rng(7)
    issuers = [_uscc("114201" + f"{i:02d}", f"MB{i:06d}") for i in range(ISSUERS)]
    table = Licence.__table__
    for start in range(0, rows, GENERATE_CHUNK):
        n = min(GENERATE_CHUNK, rows - start)
        idx = np.arange(start, start + n)
        issuer = [issuers[i % ISSUERS] for i in idx.tolist()]
        serial = [f"{2020 + i % 6}{i:08d}" for i in idx.tolist()]
        payload = np.array([f"{TYPE_CODE}{iss}{ser}001" for iss, ser in zip(issuer, serial)])
        checks = licence_id_check_chars(payload).tolist()
        person = rng.random(n) < PERSON_SHARE
        batch = []
        for j, i in enumerate(idx.tolist()):
            face = {"经营场所": f"武汉市江岸区示例路{i % 999}号", "主体业态": "餐饮服务经营者", "经营项目": "热食类食品制售",
                    "面积": round(20 + (i % 500) * 0.5, 1), "日常监督管理人员": "王某某"}
            lid = f"{LICENCE_ID_PREFIX}{TYPE_CODE}.{issuer[j]}.{serial[j]}.001.{checks[j]}"
            issued = date(2020 + i % 6, 1 + i % 12, 1 + i % 28)
            row = dict(licence_id=lid, licence_name="食品经营许可证", licence_type_code=TYPE_CODE, licence_number=f"JY{i:012d}",
                       issuer=f"武汉市第{i % ISSUERS}市场监督管理局", issuer_code=issuer[j], issue_date=issued,
                       holder_code_type="001", valid_from=issued, valid_until=issued + timedelta(days=3652), status="1",
                       related_licence_id=None, source_id="bench", run_id="bench-1", updated_at=AT,
                       holder_name=f"武汉示例{i}餐饮有限公司", holder_code=_uscc("91420100", f"MA{i % 1000000:06d}"),
                       holder_person_id=None, holder_code_enc=None, face_content=face, face_content_enc=None)
            if person[j]:
                resident = f"420102{1960 + i % 40}0101{i % 1000:03d}X"
                row.update(holder_name="张某某", holder_code=None, holder_code_type="111",
                           holder_person_id=cipher.index_hash(resident), holder_code_enc=cipher.encrypt(resident),
                           face_content=None, face_content_enc=cipher.encrypt(json.dumps(face, ensure_ascii=False)))
            batch.append(row)
        with engine.begin() as connection:
            connection.execute(table.insert(), batch)
    return time.perf_counter() - started


def _bare_chunk(url: str, first: Any, last: Any) -> dict:
    """Canonicalise a chunk's sealed licences (untimed), then time bare Ed25519 sign and verify over those payloads."""
    import sqlalchemy as sa

    from hub.db import engine_for
    from licences import keys
    from licences.canonical import document_bytes
    from licences.seal import ALL_COLUMNS, clear_licence, row_key

    engine = engine_for(url)
    store = keys.store_for(engine)
    key = sa.literal_column(row_key(engine.dialect))  # the key the ranges were cut on (SQLite: rowid)
    with engine.connect() as connection:
        rows = connection.execute(sa.select(*ALL_COLUMNS).where(key >= first, key <= last)).all()
    items = []
    for row in rows:
        licence = clear_licence(row)
        items.append((document_bytes(licence), store.private(licence["seal_key_id"]), store.public(licence["seal_key_id"]).key))
    started = time.perf_counter()
    signatures = [private.sign(payload) for payload, private, _ in items]
    sign_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for (payload, _, public), signature in zip(items, signatures):
        public.verify(signature, payload)
    verify_seconds = time.perf_counter() - started
    return {"n": len(items), "sign": sign_seconds, "verify": verify_seconds}


def _bare_loop(engine, workers: int) -> dict:
    """Bare sign/verify rates over the benchmark's own canonical payloads, on `workers` cores."""
    from licences.seal import key_ranges
    from hub.models import Licence

    url = engine.url.render_as_string(hide_password=False)
    ranges = list(key_ranges(engine, Licence.__table__.c.seal_value.is_not(None), 5_000))
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        parts = list(pool.map(_bare_chunk, [url] * len(ranges), [f for f, _ in ranges], [l for _, l in ranges]))
    n = sum(p["n"] for p in parts)
    return {"n": n, "sign_per_s": n / (sum(p["sign"] for p in parts) / workers),
            "verify_per_s": n / (sum(p["verify"] for p in parts) / workers)}


def run(scale: float = 1.0, rows: int | None = None, workers: int | None = None) -> dict:
    """Seals/s and verifications/s end to end, and the bare loop's rates, for `rows` licences (default 1M × scale)."""
    from hub.db import engine_for, upgrade
    from hub.settings import get_settings
    from licences import keys
    from licences.seal import seal_pending
    from licences.verify import verify_stored

    rows = rows or max(10_000, int(1_000_000 * scale))
    workers = workers or min(os.cpu_count() or 1, 2)
    folder = get_settings().data_root / "bench" / "licences"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "hub.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = engine_for(url)
    keys._cache_clear()
    load_before = os.getloadavg()[0]
    generate_seconds = _generate(engine, rows)

    started = time.perf_counter()
    sealed = seal_pending(engine, AT, workers=workers)
    seal_seconds = time.perf_counter() - started
    started = time.perf_counter()
    verified = verify_stored(engine, TODAY, workers=workers)
    verify_seconds = time.perf_counter() - started
    if sealed["sealed"] != rows or verified["in_force"] != rows:
        raise RuntimeError(f"sealed {sealed}, verified {verified}")
    bare = _bare_loop(engine, workers)
    if bare["n"] != rows:  # each licence's payload timed exactly once, or the rates mean nothing
        raise RuntimeError(f"bare loop timed {bare['n']} payloads for {rows} licences")
    seal_rate, verify_rate = rows / seal_seconds, rows / verify_seconds
    return {
        "licences": rows, "workers": workers, "issuers": ISSUERS, "person_share": PERSON_SHARE,
        "generate_seconds": round(generate_seconds, 1),
        "seal_seconds": round(seal_seconds, 1), "seals_per_s": round(seal_rate),
        "verify_seconds": round(verify_seconds, 1), "verifications_per_s": round(verify_rate),
        "bare_sign_per_s": round(bare["sign_per_s"]), "bare_verify_per_s": round(bare["verify_per_s"]),
        "seal_share_of_bare": round(seal_rate / bare["sign_per_s"], 3),
        "verify_share_of_bare": round(verify_rate / bare["verify_per_s"], 3),
        "seal_1m_projected_seconds": round(1_000_000 / seal_rate, 1),
        "verify_1m_projected_seconds": round(1_000_000 / verify_rate, 1),
        "load_average_before": round(load_before, 2), "load_average_after": round(os.getloadavg()[0], 2),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="licences (default 1,000,000; e.g. 20000 in CI)")
    parser.add_argument("--workers", type=int, help="processes (default: both cores)")
    arguments = parser.parse_args()
    print(json.dumps(run(rows=arguments.rows, workers=arguments.workers), ensure_ascii=False, indent=2))
