"""Round trips of every hub table on SQLite and PostgreSQL (hub.models, hub.db.session_scope)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa

from hub import crypto, db
from hub.db_cli import encrypted_columns, rewrap_database
from hub.models import CreditRecord, LegalEntity, Licence, Person, SourceRun

LEARNT = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)
CHINA = timezone(timedelta(hours=8))
ID_NUMBER = "110105194912310021"
REP_ID = "11010519491231002X"


@pytest.fixture
def url(hub_db_url: str) -> Iterator[str]:
    """A migrated hub database on each backend."""
    db.upgrade(hub_db_url)
    yield hub_db_url
    db.dispose_engines()


@pytest.fixture
def cipher() -> crypto.FieldCipher:
    """A cipher over an in-memory key ring."""
    return crypto.FieldCipher(crypto.Keyring.in_memory())


def _stamp(run: str = "run-1") -> dict:
    """Provenance columns of a test row."""
    return {"source_id": "gongan_hukou", "run_id": run, "updated_at": LEARNT}


def _person(cipher: crypto.FieldCipher, id_number: str = ID_NUMBER, **changes) -> Person:
    """A person row with encrypted ID, address and phone."""
    values = {
        "person_id": cipher.person_key(id_number),
        "id_number_enc": cipher.encrypt(id_number),
        "id_number_masked": crypto.mask_resident_id(id_number),
        "name": "段志强",
        "gender": "1",
        "birth_date": date(1949, 12, 31),
        "ethnicity": "01",
        "region_code": "110105",
        "address_enc": cipher.encrypt("北京市朝阳区建国路1号"),
        "phone_enc": cipher.encrypt("18012341999"),
        "marital_status": "20",
        "death_date": None,
        **_stamp(),
    }
    values.update(changes)
    return Person(**values)


def test_source_run_round_trip(url: str) -> None:
    """A run row keeps counts, timestamps (as aware UTC) and watermarks; (source_id, run_id) is unique."""
    started = datetime(2026, 11, 23, 10, 0, tzinfo=CHINA)
    with db.session_scope(url) as session:
        session.add(
            SourceRun(
                source_id="scjg_qiye", run_id="scheduled__2026-11-23T00:00:00+00:00", status="succeeded",
                started_at=started, finished_at=started + timedelta(minutes=3), rows_extracted=1000,
                rows_loaded=990, rows_rejected=10, landing_path="landing/scjg_qiye/run=x/data.parquet",
                landing_sha256="ab" * 32, watermark_from=None, watermark_to="2026-11-22 23:59:59",
            )
        )
    with db.session_scope(url) as session:
        run = session.scalars(sa.select(SourceRun)).one()
        assert run.id is not None
        assert run.started_at == started and run.started_at.tzinfo == timezone.utc
        assert (run.rows_extracted, run.rows_loaded, run.rows_rejected) == (1000, 990, 10)
        assert run.watermark_to == "2026-11-22 23:59:59"
    with pytest.raises(sa.exc.IntegrityError):
        with db.session_scope(url) as session:
            session.add(SourceRun(source_id="scjg_qiye", run_id=run.run_id, status="running", started_at=started))
    with db.session_scope(url) as session:  # server defaults fill the counters
        session.add(SourceRun(source_id="scjg_qiye", run_id="manual__1", status="running", started_at=started))
    with db.session_scope(url) as session:
        fresh = session.scalars(sa.select(SourceRun).where(SourceRun.run_id == "manual__1")).one()
        assert (fresh.rows_extracted, fresh.rows_loaded, fresh.rows_rejected, fresh.finished_at) == (0, 0, 0, None)


def test_person_round_trip_and_lookup_by_id(url: str, cipher: crypto.FieldCipher) -> None:
    """A person is found by the HMAC of the ID (never stored in clear) and decrypts back."""
    with db.session_scope(url) as session:
        session.add(_person(cipher))
    with db.session_scope(url) as session:
        person = session.get(Person, cipher.person_key("１１０１０５１９４９１２３１００２１"))
        assert person is not None
        assert cipher.decrypt(person.id_number_enc) == ID_NUMBER
        assert cipher.decrypt(person.address_enc) == "北京市朝阳区建国路1号"
        assert cipher.decrypt(person.phone_enc) == "18012341999"
        assert person.id_number_masked == "110105********0021"
        assert (person.name, person.birth_date, person.updated_at) == ("段志强", date(1949, 12, 31), LEARNT)
        by_name = session.scalars(
            sa.select(Person).where(Person.name == "段志强", Person.birth_date == date(1949, 12, 31))
        ).all()
        assert by_name == [person]
    with db.engine_for(url).connect() as connection:  # nothing in clear anywhere in the row
        row = connection.execute(sa.text("SELECT * FROM person")).one()
        assert ID_NUMBER not in " ".join(str(v) for v in row)
        assert not any(isinstance(v, (bytes, memoryview)) and ID_NUMBER.encode() in bytes(v) for v in row)


def test_legal_entity_round_trip(url: str, cipher: crypto.FieldCipher) -> None:
    """A company keeps its decimal capital exactly and links its representative by HMAC."""
    with db.session_scope(url) as session:
        session.add(_person(cipher, REP_ID, name="王芳", gender="2"))
        session.add(
            LegalEntity(
                uscc="91350100M000100Y43", name="福州示例科技有限公司", entity_kind="enterprise",
                entity_type="有限责任公司", legal_rep_name="王芳", legal_rep_person_id=cipher.person_key(REP_ID),
                legal_rep_id_enc=cipher.encrypt(REP_ID), registered_capital=Decimal("12345678.123456"),
                established_date=date(2015, 6, 1), registration_authority="福州市市场监督管理局", status="存续",
                address="福建省福州市鼓楼区五四路1号", region_code="350102", business_scope="软件开发；信息技术咨询服务",
                **_stamp(),
            )
        )
    with db.session_scope(url) as session:
        entity = session.get(LegalEntity, "91350100M000100Y43")
        assert entity.registered_capital == Decimal("12345678.123456")
        assert cipher.decrypt(entity.legal_rep_id_enc) == REP_ID
        rep = session.scalars(sa.select(Person).where(Person.person_id == entity.legal_rep_person_id)).one()
        assert rep.name == "王芳"


def test_licence_round_trip(url: str, cipher: crypto.FieldCipher) -> None:
    """Licence metadata, JSON face content, encrypted holder ID and seal survive the round trip."""
    licence_id = "1.2.156.3005.2.11100000000013338W011.11350100003632785E.0001.001.K"
    sealed = datetime(2026, 11, 23, 9, 30, 15, 123456, tzinfo=CHINA)
    face = {"姓名": "段志强", "准驾车型": "C1", "nested": {"list": [1, 2, 3]}}
    with db.session_scope(url) as session:
        session.add(
            Licence(
                licence_id=licence_id, licence_name="机动车驾驶证", licence_type_code="11100000000013338W011",
                licence_number="350102194912310021", issuer="福州市公安局交通警察支队", issuer_code="11350100003632785E",
                issue_date=date(2020, 1, 2), holder_name="段志强", holder_code=None,
                holder_person_id=cipher.person_key(ID_NUMBER), holder_code_enc=cipher.encrypt(ID_NUMBER),
                holder_code_type="111", valid_from=date(2020, 1, 2), valid_until=date(2026, 1, 2), status="有效",
                face_content=None, face_content_enc=cipher.encrypt(str(face)), related_licence_id=None,
                seal_signer="福州市公安局", seal_name="电子证照专用章", seal_algorithm="Ed25519", seal_key_id="seal-2026",
                seal_value=bytes(range(64)), sealed_at=sealed, **_stamp(),
            )
        )
        session.add(
            Licence(
                licence_id=licence_id.replace("0001", "0002"), licence_name="营业执照",
                licence_type_code="11100000000013338W001",
                issuer="福州市市场监督管理局", issuer_code="11350100003632785E", holder_name="福州示例科技有限公司",
                holder_code="91350100M000100Y43", holder_code_type="001", face_content=face, **_stamp(),
            )
        )
    with db.session_scope(url) as session:
        personal = session.get(Licence, licence_id)
        assert personal.holder_code is None and cipher.decrypt(personal.holder_code_enc) == ID_NUMBER
        assert personal.seal_value == bytes(range(64)) and personal.sealed_at == sealed
        assert cipher.decrypt(personal.face_content_enc) == str(face)
        mine = session.scalars(sa.select(Licence).where(Licence.holder_person_id == cipher.person_key(ID_NUMBER))).all()
        assert [lic.licence_id for lic in mine] == [licence_id]
        company = session.scalars(sa.select(Licence).where(Licence.holder_code == "91350100M000100Y43")).one()
        assert company.face_content == face and company.valid_until is None
    with pytest.raises(sa.exc.IntegrityError):  # a licence must name its holder one way or the other
        with db.session_scope(url) as session:
            session.add(
                Licence(
                    licence_id="x", licence_name="x", licence_type_code="x", issuer="x", issuer_code="x",
                    holder_name="x", holder_code_type="111", **_stamp(),
                )
            )


def test_credit_record_round_trip_and_checks(url: str, cipher: crypto.FieldCipher) -> None:
    """Credit records keep type-specific JSON; unknown record types and subject kinds are refused."""
    content = {"处罚类别": ["警告", "罚款"], "罚款金额(万元)": "0.5", "违法事实": "未按规定公示年度报告"}
    with db.session_scope(url) as session:
        session.add(
            CreditRecord(
                record_id="cf-2026-0001", record_type="行政处罚", subject_name="福州示例科技有限公司", subject_kind="02",
                subject_code="91350100M000100Y43", decision_no="榕市监罚〔2026〕1号", decision_date=date(2026, 3, 1),
                authority="福州市市场监督管理局", authority_code="11350100003632785E", content=content,
                valid_until=date(2029, 3, 1), status="1", **_stamp(),
            )
        )
        session.add(
            CreditRecord(
                record_id="sx-2026-0001", record_type="失信被执行人", subject_name="段志强", subject_kind="01",
                subject_person_id=cipher.person_key(ID_NUMBER), subject_id_enc=cipher.encrypt(ID_NUMBER),
                decision_no="(2026)闽0102执1号", authority="福州市鼓楼区人民法院", content={"履行情况": "全部未履行"},
                **_stamp(),
            )
        )
    with db.session_scope(url) as session:
        penalty = session.get(CreditRecord, "cf-2026-0001")
        assert penalty.content == content and penalty.decision_date == date(2026, 3, 1)
        debtor = session.scalars(
            sa.select(CreditRecord).where(CreditRecord.subject_person_id == cipher.person_key(ID_NUMBER))
        ).one()
        assert debtor.subject_code is None and cipher.decrypt(debtor.subject_id_enc) == ID_NUMBER
    for bad in ({"record_type": "表扬"}, {"subject_kind": "05"}, {"subject_code": None}):
        values = {
            "record_id": "bad", "record_type": "行政许可", "subject_name": "x", "subject_kind": "02",
            "subject_code": "91350100M000100Y43", **_stamp(), **bad,
        }
        with pytest.raises(sa.exc.IntegrityError):
            with db.session_scope(url) as session:
                session.add(CreditRecord(**values))


def test_person_gender_checked_and_naive_time_refused(url: str, cipher: crypto.FieldCipher) -> None:
    """Gender outside GB/T 2261.1 violates a CHECK; a naive timestamp is refused before reaching the database."""
    with pytest.raises(sa.exc.IntegrityError):
        with db.session_scope(url) as session:
            session.add(_person(cipher, gender="3"))
    with pytest.raises(sa.exc.StatementError, match="timezone-aware"):
        with db.session_scope(url) as session:
            session.add(_person(cipher, updated_at=datetime(2026, 11, 23, 10, 0)))


def test_session_scope_rolls_back_on_error(url: str, cipher: crypto.FieldCipher) -> None:
    """An exception inside the block leaves nothing behind."""
    with pytest.raises(RuntimeError):
        with db.session_scope(url) as session:
            session.add(_person(cipher))
            session.flush()
            raise RuntimeError("boom")
    with db.session_scope(url) as session:
        assert session.scalars(sa.select(sa.func.count()).select_from(Person)).one() == 0


def test_rewrap_database_after_rotation(url: str, tmp_path) -> None:
    """After a rotation, rewrap_database re-encrypts every *_enc value under the new key; a second pass finds none."""
    cipher = crypto.FieldCipher(crypto.load_keyring(tmp_path / "keyring.json"))
    with db.session_scope(url) as session:
        session.add_all([_person(cipher, f"11010519491231{i:03d}1", name=f"人{i}") for i in range(25)])
    old_key = cipher.keyring.primary
    new_key = cipher.rotate()
    counts = rewrap_database(url, cipher, batch_size=7)
    assert counts["person.id_number_enc"] == 25 and counts["person.phone_enc"] == 25
    assert set(counts) == {f"{c.table.name}.{c.name}" for c in encrypted_columns()}
    with db.session_scope(url) as session:
        people = session.scalars(sa.select(Person)).all()
        assert {cipher.key_id_of(p.id_number_enc) for p in people} == {new_key} != {old_key}
        assert sorted(cipher.decrypt(p.id_number_enc) for p in people)[0] == "110105194912310001"
    assert sum(rewrap_database(url, cipher).values()) == 0
