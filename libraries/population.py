"""人口库 as the merge sees it: keyed by the HMAC of the resident ID; three kinds of source record.

- 公安 户籍人口 (gongan_hjrk): a full record of the person;
- 人社 社保参保 (renshe_sbcb): a partial record (ID number and name);
- 民政 婚姻登记 (minzheng_hydj): an event: one registration names two people, each of whom gets a claim with the
  marital status the registration gave them, valid from the registration date.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from hub.crypto import get_cipher, mask_phone, mask_resident_id
from hub.models import Person
from libraries.adapt import column, is_deleted, local_utc, plain, resident_ids, standard_codes
from libraries.spec import Claims


def mask_address(address: str) -> str:
    """Keep the first six characters (province/city/district), hide the rest: 武汉市江岸区****."""
    text = address.strip()
    return text[:6] + "*" * max(len(text) - 6, 0)


class PopulationLibrary:
    """The population library: person rows keyed by person_id (HMAC of the 18-character resident ID)."""

    name = "population"
    table: sa.Table = Person.__table__
    key_column = "person_id"
    shared_subjects = True
    fields: tuple[str, ...] = ("id_number", "name", "gender", "birth_date", "ethnicity", "region_code", "address",
                               "phone", "marital_status", "death_date")
    masks = {"id_number": mask_resident_id, "address": mask_address, "phone": mask_phone}

    def lookup_key(self, text: str) -> str:
        """The person_id of a resident ID number as a user types it."""
        ids = resident_ids([text.strip()])
        if not ids or ids[0] is None:
            raise ValueError("公民身份号码无效 invalid resident ID number")
        return get_cipher().index_hash(ids[0])

    def claims(self, rows: pa.Table, source_id: str) -> Claims:
        """Staged rows → claims, by the shape of the source's records."""
        if source_id == "minzheng_hydj" or "husband_resident_id" in rows.column_names:
            return self._registration_claims(rows)
        return self._person_claims(rows)

    def _person_claims(self, rows: pa.Table) -> Claims:
        """A full (公安) or partial (人社) person record: one claim per row, with what the source carries."""
        out = Claims()
        deleted = is_deleted(rows)
        ids = resident_ids(column(rows, "resident_id"))
        keys = get_cipher().index_hash_many(ids)
        source_keys = column(rows, "_source_key")
        present = set(rows.column_names)
        values = {
            "name": column(rows, "name"),
            "gender": standard_codes(column(rows, "gender"), "gender") if "gender" in present else column(rows, "gender"),
            "birth_date": column(rows, "birth_date"), "ethnicity": column(rows, "ethnicity"),
            "region_code": column(rows, "household_region"), "address": column(rows, "household_address"),
            "phone": column(rows, "phone"), "marital_status": column(rows, "marital_status"),
            "death_date": column(rows, "death_date"),
        }
        updated = column(rows, "updated_at")
        for i in range(rows.num_rows):
            if deleted[i]:
                continue  # a snapshot's delete row carries no ID: the load withdraws it by source key
            if keys[i] is None:
                raise ValueError("人口库入库行缺少有效身份号码 a population row without a valid resident ID reached the merge")
            fields = {"id_number": ids[i], **{name: plain(v[i]) for name, v in values.items()}}
            out.add(keys[i], fields, local_utc(updated[i]), i, source_key=str(source_keys[i]))
        return out

    def _registration_claims(self, rows: pa.Table) -> Claims:
        """A marriage registration: a claim for each party (ID, name, the marital status it gave them)."""
        out = Claims()
        deleted = is_deleted(rows)
        source_keys = column(rows, "_source_key")
        status = column(rows, "marital_status")
        when = column(rows, "registration_date")
        cipher = get_cipher()
        for side in ("husband", "wife"):
            ids = resident_ids(column(rows, f"{side}_resident_id"))
            keys = cipher.index_hash_many(ids)
            names = column(rows, f"{side}_name")
            for i in range(rows.num_rows):
                if deleted[i]:
                    continue
                if keys[i] is None:
                    raise ValueError(f"婚姻登记缺少有效的{'男' if side == 'husband' else '女'}方身份号码 "
                                     f"a registration without a valid {side} resident ID reached the merge")
                fields = {"id_number": ids[i], "name": plain(names[i]), "marital_status": plain(status[i])}
                out.add(keys[i], fields, local_utc(when[i]), i, source_key=str(source_keys[i]))
        return out

    def database_rows(self, keys: list[str], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Golden records → person rows: ID number hashed, encrypted and masked; address and phone encrypted.
        A person only a partial source knows may have no name yet: the column is NOT NULL, so it holds '' until one arrives."""
        cipher = get_cipher()
        ids = [r.get("id_number") for r in records]
        ids_enc = cipher.encrypt_many(ids)
        addresses = cipher.encrypt_many([r.get("address") for r in records])
        phones = cipher.encrypt_many([r.get("phone") for r in records])
        return [
            {"person_id": keys[i], "id_number_enc": ids_enc[i], "id_number_masked": mask_resident_id(ids[i] or ""),
             "name": r.get("name") or "", "gender": r.get("gender"), "birth_date": r.get("birth_date"), "ethnicity": r.get("ethnicity"),
             "region_code": r.get("region_code"), "address_enc": addresses[i], "phone_enc": phones[i],
             "marital_status": r.get("marital_status"), "death_date": r.get("death_date")}
            for i, r in enumerate(records)
        ]


__all__ = ["PopulationLibrary", "mask_address"]
