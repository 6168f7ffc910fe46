"""The truth of a world: every table the department sources are derived from, built in dependency order."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from world import credit, departments, entities, insurance, licences, persons
from world.config import WorldConfig


@dataclass
class Truth:
    """All truth tables of one world."""

    persons: pa.Table
    marriages: pa.Table
    departments: pa.Table
    entities: pa.Table
    insurance: pa.Table
    licences: pa.Table
    credit: dict[str, pa.Table]

    def tables(self) -> dict[str, pa.Table]:
        """Every table by file stem."""
        out = {
            "persons": self.persons, "marriages": self.marriages, "departments": self.departments,
            "entities": self.entities, "insurance": self.insurance, "licences": self.licences,
        }
        out.update({f"credit_{k}": v for k, v in self.credit.items()})
        return out


def build(cfg: WorldConfig, progress: Callable[[str], None] | None = None) -> Truth:
    """Generate the truth for a configuration (progress gets one line per table with its duration)."""
    clock = [time.perf_counter()]

    def done(what: str) -> None:
        """Report a finished step."""
        if progress:
            now = time.perf_counter()
            progress(f"  {what}: {now - clock[0]:.1f} s")
            clock[0] = now

    people, marriages = (t.combine_chunks() for t in persons.build(cfg))
    done("persons")
    depts = departments.build(cfg.seed).combine_chunks()
    ents = entities.build(cfg, people, depts).combine_chunks()
    done("entities")
    enrolments = insurance.build(cfg, people, ents)
    done("insurance")
    lic = licences.build(cfg, people, ents, marriages, depts)
    done("licences")
    records = credit.build(cfg, people, ents, lic, depts)
    done("credit")
    # One chunk per column: takes and slices downstream never have to stitch chunks together again.
    records = {k: v.combine_chunks() for k, v in records.items()}
    world = Truth(people, marriages, depts, ents, enrolments.combine_chunks(), lic.combine_chunks(), records)
    world.persons = _with_namesakes(cfg, world)
    done("namesakes")
    return world


def _with_namesakes(cfg: WorldConfig, world: Truth) -> pa.Table:
    """Persons with planted namesakes (hard negatives of record linkage; see world.linkage)."""
    from world.linkage import plant_namesakes
    from world.sources import Context

    referenced = Context(cfg, world).person_referenced
    insured = world.insurance.column("person_id").to_numpy() - 1
    return plant_namesakes(cfg, world.persons, referenced, insured).combine_chunks()


def write(truth: Truth, directory: Path) -> dict[str, str]:
    """Write every truth table as Parquet under directory; returns stem → relative path."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for stem, table in truth.tables().items():
        path = directory / f"{stem}.parquet"
        pq.write_table(table, path, compression="zstd", row_group_size=256 * 1024)
        paths[stem] = f"truth/{stem}.parquet"
    return paths


def read(directory: Path) -> Truth:
    """Read the truth tables back (worker processes use this)."""
    t = {p.stem: pq.read_table(p) for p in directory.glob("*.parquet")}
    credit_tables = {k.removeprefix("credit_"): v for k, v in t.items() if k.startswith("credit_")}
    return Truth(t["persons"], t["marriages"], t["departments"], t["entities"], t["insurance"], t["licences"], credit_tables)
