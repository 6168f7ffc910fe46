"""E-licence seals: canonical JSON, seal/verify round trip, tampering, key rotation, unknown keys, status, offline export."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

import pytest
import sqlalchemy as sa
from hypothesis import given, settings, strategies as st

from hub.db import engine_for, upgrade
from hub.models import Licence
from licences import keys, verify
from licences.canonical import canonical_bytes, canonical_bytes_reference, document_bytes, number_text
from licences.seal import clear_licence, seal_pending
from schemas.identifiers import LICENCE_ID_PREFIX, licence_id_check_char

AT = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
TODAY = date(2026, 12, 1)
TYPE_CODE = "11100000000013338W011"
ISSUER_A = "11420100MB00000009"
ISSUER_B = "11420200MB0000019B"
PERSON_ID = "420102199001021234"


def licence_id(issuer: str, serial: str, version: str = "001") -> str:
    """A valid GB/T 36904 identifier."""
    check = licence_id_check_char(f"{TYPE_CODE}{issuer}{serial}{version}")
    return f"{LICENCE_ID_PREFIX}{TYPE_CODE}.{issuer}.{serial}.{version}.{check}"


COMPANY_ID = licence_id(ISSUER_A, "2024000001")
PERSON_LICENCE_ID = licence_id(ISSUER_B, "2024000002")


def company_row(**changes) -> dict:
    """A licence of a company (face content in clear)."""
    row = dict(
        licence_id=COMPANY_ID, licence_name="食品经营许可证", licence_type_code=TYPE_CODE, licence_number="JY14201000001",
        issuer="武汉市市场监督管理局", issuer_code=ISSUER_A, issue_date=date(2024, 3, 1), holder_name="武汉示例餐饮有限公司",
        holder_code="91420100MA4K00002Y", holder_person_id=None, holder_code_enc=None, holder_code_type="001",
        valid_from=date(2024, 3, 1), valid_until=date(2029, 2, 28), status="1",
        face_content={"经营场所": "武汉市江岸区一路1号", "主体业态": "餐饮服务经营者", "面积": 120.5},
        face_content_enc=None, related_licence_id=None, source_id="licence_drop_scjg", run_id="run-1", updated_at=AT,
    )
    row.update(changes)
    return row


def person_row(cipher, **changes) -> dict:
    """A licence of a natural person: ID number and face content only as ciphertext."""
    row = dict(
        licence_id=PERSON_LICENCE_ID, licence_name="结婚证", licence_type_code=TYPE_CODE, licence_number="J420102-2024-0002",
        issuer="武汉市江岸区民政局", issuer_code=ISSUER_B, issue_date=date(2024, 5, 20), holder_name="张伟",
        holder_code=None, holder_person_id=cipher.person_key(PERSON_ID), holder_code_enc=cipher.encrypt(PERSON_ID),
        holder_code_type="111", valid_from=date(2024, 5, 20), valid_until=None, status="有效", face_content=None,
        face_content_enc=cipher.encrypt(json.dumps({"持证人": "张伟", "配偶": "李娜"}, ensure_ascii=False)),
        related_licence_id=None, source_id="licence_drop_minzheng", run_id="run-1", updated_at=AT,
    )
    row.update(changes)
    return row


@pytest.fixture
def licence_db(hub_db_url, hub_settings):
    """A migrated hub database (SQLite, then PostgreSQL) holding a company and a person licence, unsealed."""
    from hub.crypto import get_cipher

    get_cipher.cache_clear()
    upgrade(hub_db_url)
    engine = engine_for(hub_db_url)
    keys._cache_clear()
    with engine.begin() as connection:
        connection.execute(Licence.__table__.insert(), [company_row(), person_row(get_cipher())])
    yield engine
    get_cipher.cache_clear()
    keys._cache_clear()


def stored(engine, lid: str) -> dict:
    """The stored row of a licence as a mapping."""
    with engine.connect() as connection:
        return dict(connection.execute(sa.select(Licence.__table__).where(Licence.licence_id == lid)).one()._mapping)


def update(engine, lid: str, **values) -> None:
    """Change stored columns of a licence directly (as an attacker or a bug would)."""
    with engine.begin() as connection:
        connection.execute(Licence.__table__.update().where(Licence.licence_id == lid).values(**values))


# --- canonical JSON -------------------------------------------------------------------------------


def test_canonical_json_follows_jcs() -> None:
    value = {"b": [1, 2.5, None, True], "a": "中文\n\"x\"", "\u20ac": 1, "\U0001f600": 2, "\ufb33": 3, "d": date(2026, 1, 2)}
    text = canonical_bytes(value).decode("utf-8")
    # UTF-16 order puts U+1F600 (surrogates D83D…) before U+FB33, unlike code-point order
    assert text == '{"a":"中文\\n\\"x\\"","b":[1,2.5,null,true],"d":"2026-01-02","\u20ac":1,"\U0001f600":2,"\ufb33":3}'


@pytest.mark.parametrize(("value", "text"), [
    (1.0, "1"), (-0.0, "0"), (1e21, "1e+21"), (1e20, "100000000000000000000"), (1.5e-6, "0.0000015"),
    (1e-7, "1e-7"), (123.456, "123.456"), (5e-324, "5e-324"), (0.1 + 0.2, "0.30000000000000004"),
])
def test_numbers_as_ecmascript_writes_them(value: float, text: str) -> None:
    assert number_text(value) == text


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text() | st.dates(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(JSON_VALUES)
def test_fast_canonical_equals_the_reference_writer(value) -> None:
    fast = canonical_bytes(value)
    assert fast == canonical_bytes_reference(value)
    assert canonical_bytes(json.loads(fast)) == fast  # a parse and rewrite changes nothing


def test_canonical_refuses_nan_and_naive_datetimes() -> None:
    with pytest.raises(ValueError):
        canonical_bytes({"x": float("nan")})
    with pytest.raises(ValueError):
        canonical_bytes({"x": datetime(2026, 1, 1)})


# --- seal and verify ------------------------------------------------------------------------------


def test_seal_and_verify_round_trip(licence_db) -> None:
    result = seal_pending(licence_db, AT)
    assert (result["pending"], result["sealed"], result["issuers"]) == (2, 2, 2)
    assert seal_pending(licence_db, AT)["pending"] == 0  # idempotent
    row = stored(licence_db, COMPANY_ID)
    assert row["seal_algorithm"] == "Ed25519" and row["seal_signer"] == "武汉市市场监督管理局"
    assert row["seal_name"] == "武汉市市场监督管理局电子证照专用章" and row["sealed_at"] == AT
    for lid in (COMPANY_ID, PERSON_LICENCE_ID):
        verdict = verify.verify_licence(licence_db, lid, TODAY)
        assert verdict.ok and verdict.status == "有效", verdict
    person = stored(licence_db, PERSON_LICENCE_ID)
    assert person["holder_code"] is None  # sealing never writes the ID number in clear
    assert clear_licence(person)["holder_code"] == PERSON_ID
    assert verify.verify_stored(licence_db, TODAY)["in_force"] == 2
    # each department signs with its own key
    assert stored(licence_db, COMPANY_ID)["seal_key_id"] != person["seal_key_id"]


TAMPER = {
    "licence_name": "食品生产许可证", "licence_type_code": "11100000000013338W012", "licence_number": "JY1420100009",
    "issuer": "武汉市卫生健康委员会", "issuer_code": "11420100MB0000094Y", "issue_date": date(2024, 3, 2),
    "holder_name": "武汉另一家餐饮有限公司", "holder_code": "91420100MA4K00010R", "holder_code_type": "111",
    "valid_from": date(2024, 3, 2), "valid_until": date(2039, 2, 28), "face_content": {"经营场所": "武汉市江岸区一路2号"},
    "related_licence_id": "1.2.156.3005.2.X", "seal_signer": "某人", "seal_name": "另一个章",
    "sealed_at": datetime(2026, 12, 1, 8, 0, 1, tzinfo=timezone.utc), "seal_value": b"\x00" * 64,
}


@pytest.mark.parametrize("column", sorted(TAMPER))
def test_tampering_with_any_sealed_field_is_detected(licence_db, column: str) -> None:
    seal_pending(licence_db, AT)
    update(licence_db, COMPANY_ID, **{column: TAMPER[column]})
    verdict = verify.verify_licence(licence_db, COMPANY_ID, TODAY)
    assert not verdict.ok and "篡改" in verdict.reason, verdict


def test_tampering_with_a_person_licence_face_is_detected(licence_db) -> None:
    from hub.crypto import get_cipher

    seal_pending(licence_db, AT)
    update(licence_db, PERSON_LICENCE_ID, face_content_enc=get_cipher().encrypt('{"持证人":"张伟","配偶":"王芳"}'))
    assert "篡改" in verify.verify_licence(licence_db, PERSON_LICENCE_ID, TODAY).reason


def test_key_rotation_keeps_old_seals_verifiable(licence_db) -> None:
    seal_pending(licence_db, AT)
    old_key = stored(licence_db, COMPANY_ID)["seal_key_id"]
    new_key = keys.rotate_key(licence_db, ISSUER_A, datetime(2026, 12, 2, tzinfo=timezone.utc))
    assert new_key != old_key
    assert verify.verify_licence(licence_db, COMPANY_ID, TODAY).ok
    published = {k["kid"]: k for k in keys.jwks(licence_db, ISSUER_A)["keys"]}
    assert set(published) == {old_key, new_key} and published[old_key]["retired_at"] and not published[new_key]["retired_at"]
    assert all("d" not in k for k in published.values())  # never the private part
    # a changed licence is resealed by the new key
    update(licence_db, COMPANY_ID, holder_name="武汉示例餐饮股份有限公司", seal_value=None,
           updated_at=datetime(2026, 12, 3, tzinfo=timezone.utc))
    seal_pending(licence_db, datetime(2026, 12, 3, tzinfo=timezone.utc))
    assert stored(licence_db, COMPANY_ID)["seal_key_id"] == new_key
    assert verify.verify_licence(licence_db, COMPANY_ID, TODAY).ok


def test_a_seal_made_with_a_retired_key_after_retirement_is_refused(licence_db) -> None:
    seal_pending(licence_db, AT)
    keys.rotate_key(licence_db, ISSUER_A, datetime(2026, 11, 1, tzinfo=timezone.utc))  # retired before AT
    verdict = verify.verify_licence(licence_db, COMPANY_ID, TODAY)
    assert not verdict.ok and "停用" in verdict.reason


def test_private_keys_are_encrypted_at_rest(licence_db) -> None:
    seal_pending(licence_db, AT)
    from hub.models import LicenceSigningKey

    with licence_db.connect() as connection:
        rows = connection.execute(sa.select(LicenceSigningKey.__table__)).all()
    for row in rows:
        private = keys.decrypt_private(row.private_key_enc)
        seed = private.private_bytes_raw()
        assert seed not in bytes(row.private_key_enc) and keys.b64url(seed).encode() not in bytes(row.private_key_enc)
        assert keys.thumbprint(bytes(row.public_key)) == row.key_id


def test_unknown_key_is_refused(licence_db) -> None:
    seal_pending(licence_db, AT)
    update(licence_db, COMPANY_ID, seal_key_id="unknown-key-id")
    verdict = verify.verify_licence(licence_db, COMPANY_ID, TODAY)
    assert not verdict.ok and "密钥" in verdict.reason and "未知" in verdict.reason


def test_unsealed_and_missing_licences_are_refused(licence_db) -> None:
    assert verify.verify_licence(licence_db, COMPANY_ID, TODAY).reason == "证照未签章"
    assert "不存在" in verify.verify_licence(licence_db, "1.2.156.3005.2.nope", TODAY).reason


@pytest.mark.parametrize(("status", "name"), [("3", "吊销"), ("已注销", "注销"), ("5", "过期")])
def test_revoked_cancelled_expired_licences_are_refused(licence_db, status: str, name: str) -> None:
    seal_pending(licence_db, AT)
    update(licence_db, COMPANY_ID, status=status)
    verdict = verify.verify_licence(licence_db, COMPANY_ID, TODAY)
    assert not verdict.ok and verdict.status == name and f"已{name}" in verdict.reason


def test_a_licence_past_its_validity_is_expired_even_if_marked_valid(licence_db) -> None:
    seal_pending(licence_db, AT)
    verdict = verify.verify_licence(licence_db, COMPANY_ID, date(2029, 3, 1))
    assert not verdict.ok and verdict.status == "过期" and "2029-02-28" in verdict.reason


def test_changed_while_sealing_is_left_for_next_time(licence_db, monkeypatch) -> None:
    from licences import seal

    real = seal._sign_chunk

    def racing(*args):
        out = real(*args)
        update(licence_db, COMPANY_ID, holder_name="并发修改", updated_at=datetime(2026, 12, 1, 9, tzinfo=timezone.utc))
        return out

    monkeypatch.setattr(seal, "_sign_chunk", racing)
    result = seal.seal_pending(licence_db, AT, workers=1)
    assert result["changed_meanwhile"] == 1 and stored(licence_db, COMPANY_ID)["seal_value"] is None


def test_parallel_sealing_matches_serial(licence_db) -> None:
    with licence_db.begin() as connection:
        connection.execute(Licence.__table__.insert(), [
            company_row(licence_id=licence_id(ISSUER_A, f"2025{i:06d}"), licence_number=f"N{i}") for i in range(300)])
    result = seal_pending(licence_db, AT, workers=2, chunk_rows=64)
    assert result["sealed"] == 302 and result["workers"] == 2
    totals = verify.verify_stored(licence_db, TODAY, workers=2, chunk_rows=64)
    assert (totals["checked"], totals["in_force"], totals["seal_failed"]) == (302, 302, 0)


# --- offline export and QR ------------------------------------------------------------------------


def test_offline_export_and_qr_verify_against_published_keys(licence_db, tmp_path) -> None:
    seal_pending(licence_db, AT)
    export = verify.export_licence(licence_db, COMPANY_ID)
    published = keys.jwks(licence_db)
    offline = keys.public_keys_from_jwks(json.loads(json.dumps(published)))  # as a file would carry it
    assert export["seal"]["key_id"] == export["document"]["签章"]["密钥标识"]
    assert verify.verify_export(export, offline, TODAY).ok
    assert export["qr"].startswith("HL1.") and len(export["qr"]) < 1500
    assert verify.verify_export(export["qr"], offline, TODAY).ok
    # current status from the hub
    update(licence_db, COMPANY_ID, status="3")
    verdict = verify.verify_export(export["qr"], offline, TODAY, verify.status_lookup(licence_db))
    assert not verdict.ok and verdict.status == "吊销"
    # tampered export
    export["document"]["照面信息"]["经营场所"] = "别处"
    assert "篡改" in verify.verify_export(export, offline, TODAY).reason
    # unknown key
    assert "未知" in verify.verify_export(verify.export_licence(licence_db, PERSON_LICENCE_ID), {}, TODAY).reason
    # garbage QR
    assert not verify.verify_export("HL1.xxx.yyy", offline, TODAY).ok


def test_document_bytes_are_stable_across_the_database_round_trip(licence_db) -> None:
    seal_pending(licence_db, AT)
    licence = clear_licence(stored(licence_db, COMPANY_ID))
    assert b'"\xe9\x9d\xa2\xe7\xa7\xaf":120.5' in document_bytes(licence)  # "面积":120.5


# --- the sealing fast path ------------------------------------------------------------------------

AWKWARD_FACES = [
    {"面积": 1e-7, "数量": 2.0, "大数": 1e21, "负零": -0.0},  # floats JCS writes unlike repr
    {"\U0001f600": 1, "\ufb33": 2, "€": 3},  # keys whose code-point and UTF-16 orders differ
    {"嵌套": {"b": [1, 2.5, None, True], "a": {"深": "控制字符\u0001\n\""}}},
    {},
    None,  # no face content at all
]


@pytest.mark.parametrize("face", AWKWARD_FACES, ids=["floats", "astral-keys", "nested", "empty", "none"])
def test_the_sealing_fast_path_signs_what_verification_rebuilds(licence_db, face) -> None:
    # Sealing builds the document from driver tuples; verification rebuilds it from the stored row through
    # document_bytes. Any difference between the two paths fails every seal made on this face.
    lid = licence_id(ISSUER_A, "2026000077")
    with licence_db.begin() as connection:
        connection.execute(Licence.__table__.insert(), [company_row(licence_id=lid, licence_number="AWK", face_content=face)])
    assert seal_pending(licence_db, AT)["sealed"] == 3
    for one in (lid, COMPANY_ID, PERSON_LICENCE_ID):
        verdict = verify.verify_licence(licence_db, one, TODAY)
        assert verdict.ok, verdict


def test_chunks_cover_every_pending_row_once_dense_or_sparse(licence_db) -> None:
    from licences.seal import _pending_ranges, key_ranges, row_key

    with licence_db.begin() as connection:
        connection.execute(Licence.__table__.insert(), [
            company_row(licence_id=licence_id(ISSUER_A, f"2025{i:06d}"), licence_number=f"N{i}") for i in range(200)])
    table, pending = Licence.__table__, Licence.__table__.c.seal_value.is_(None)
    key = sa.literal_column(row_key(licence_db.dialect))

    def pending_keys() -> list:
        with licence_db.connect() as connection:
            return connection.execute(sa.select(key).select_from(table).where(pending).order_by(key)).scalars().all()

    def covered(ranges) -> list:
        ranges = list(ranges)
        assert all(first <= last for first, last in ranges)
        return [k for k in pending_keys() if sum(first <= k <= last for first, last in ranges) == 1]

    everything = pending_keys()
    dense = _pending_ranges(licence_db, pending, 16, len(everything), (everything[0], everything[-1]))
    assert covered(dense) == everything
    seal_pending(licence_db, AT)
    with licence_db.begin() as connection:  # one in ten changes: a sparse run
        connection.execute(table.update().where(table.c.licence_number.like("N%0")).values(seal_value=None))
    sparse_keys = pending_keys()
    assert len(sparse_keys) == 20
    sparse = list(_pending_ranges(licence_db, pending, 8, len(sparse_keys), (sparse_keys[0], sparse_keys[-1])))
    assert sparse == list(key_ranges(licence_db, pending, 8)) and len(sparse) == 3  # keyset: chunks of 8, 8, 4
    assert covered(sparse) == sparse_keys
    assert seal_pending(licence_db, AT, chunk_rows=8)["sealed"] == 20
