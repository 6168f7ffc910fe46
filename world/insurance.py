"""The true social-insurance enrolments (人社): employees of living enterprises, residents, retirees."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from world import ids
from world.config import WorldConfig, rng_for
from world.persons import DAYS_PER_YEAR

EMPLOYEE = "企业职工基本养老保险"
RESIDENT = "城乡居民基本养老保险"
PAYMENT_STATES = ("正常缴费", "暂停缴费", "终止缴费")
SCHEME_START = np.datetime64("1995-01-01")


def build(cfg: WorldConfig, persons: pa.Table, entities: pa.Table) -> pa.Table:
    """One enrolment row per insured living adult."""
    rng = rng_for(cfg.seed, "insurance")
    ref = cfg.ref
    birth = persons.column("birth_date").to_numpy().astype("datetime64[D]")
    alive = pc.is_null(persons.column("death_date")).to_numpy(zero_copy_only=False)
    age = (ref - birth).astype(np.int64) / DAYS_PER_YEAR
    n = len(birth)
    u = rng.random(n)
    working = alive & (age >= 18) & (age < 60)
    employed = working & (u < 0.62)
    resident = (working & (u >= 0.62) & (u < 0.9)) | (alive & (age >= 60) & (u < 0.35))
    retired = alive & (age >= 60) & (u >= 0.35) & (u < 0.75)
    kind = entities.column("kind").to_numpy(zero_copy_only=False)
    status = entities.column("status").to_numpy(zero_copy_only=False)
    est = entities.column("established").to_numpy().astype("datetime64[D]")
    employers = np.flatnonzero((kind == "enterprise") & np.isin(status, ["存续", "在业"]) & (est < ref - 60))
    capital = entities.column("capital").to_numpy(zero_copy_only=False)[employers]
    weight = np.sqrt(np.nan_to_num(capital, nan=1.0))
    rows = np.flatnonzero(employed | resident | retired)
    m = len(rows)
    is_employee = employed[rows]
    employer = np.full(m, -1, dtype=np.int64)
    employer[is_employee] = employers[rng.choice(len(employers), int(is_employee.sum()), p=weight / weight.sum())]
    adult = birth[rows] + int(18 * DAYS_PER_YEAR) + 1
    low = np.maximum(adult, SCHEME_START)
    low = np.where(is_employee, np.maximum(low, est[np.maximum(employer, 0)]), low)
    span = np.maximum((ref - low).astype(np.int64) - 1, 1)
    enrolled = low + (rng.random(m) * span).astype(np.int64).astype("timedelta64[D]")
    state = np.where(retired[rows], "终止缴费", np.where(rng.random(m) < 0.1, "暂停缴费", "正常缴费"))
    scheme = np.where(resident[rows], RESIDENT, EMPLOYEE)
    # 更新时间: a moment between enrolment and the reference date.
    seconds = (ref - enrolled).astype(np.int64) * 86400
    updated = enrolled.astype("datetime64[s]") + (rng.random(m) * seconds).astype(np.int64).astype("timedelta64[s]")
    number = 420000000000 + ids.unique_random_ints(rng, m, 10**11)
    names = entities.column("name").combine_chunks()
    usccs = entities.column("uscc").combine_chunks()
    emp_index = pa.array(np.where(employer >= 0, employer, 0))
    has_employer = pa.array(employer >= 0)
    return pa.table({
        "insured_no": pa.array(number.astype(str).astype(object), pa.string()),
        "person_id": pa.array(rows + 1, pa.int64()),
        "scheme": pa.array(scheme.astype(object), pa.string()),
        "employer_entity_id": pa.array(np.where(employer >= 0, employer + 1, None), pa.int64()),
        "employer_name": pc.if_else(has_employer, names.take(emp_index), pa.nulls(m, pa.string())),
        "employer_uscc": pc.if_else(has_employer, usccs.take(emp_index), pa.nulls(m, pa.string())),
        "enrolled": pa.array(enrolled, pa.date32()),
        "payment_state": pa.array(state.astype(object), pa.string()),
        "updated_at": pa.array(updated, pa.timestamp("s")),
    })
