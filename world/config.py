"""Parameters of a simulated province and the seeded random streams everything draws from."""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np

DEFAULT_REFERENCE_DATE = dt.date(2026, 11, 1)

# Rows per unit of scale.
BASE_COUNTS = {
    "persons": 1_000_000,
    "enterprises": 92_000,
    "individuals": 100_000,
    "social_orgs": 8_000,
}

# Default share of a source's rows that receives each defect kind (before the --defect-rate multiplier).
DEFECT_RATES: dict[str, float] = {
    "bad_check_char": 0.008,
    "id_birth_mismatch": 0.006,
    "id_gender_mismatch": 0.006,
    "unknown_region": 0.005,
    "future_date": 0.005,
    "missing_required": 0.008,
    "duplicate": 0.008,
    "cross_source_conflict": 0.006,
    "orphan_holder": 0.006,
    "orphan_subject": 0.006,
    "expired_still_valid": 0.01,
    "invalid_code": 0.006,
}

# Share of rows (of the fields concerned) carrying each kind of harmless messiness.
MESSINESS_RATES: dict[str, float] = {
    "traditional_characters": 0.02,
    "stray_spaces": 0.015,
    "inner_double_spaces": 0.01,
    "full_width": 0.01,
    "legacy_15_digit_id": 0.03,
}

# How often each date style appears in text date columns (iso, compact, slash, chinese, fullwidth).
DATE_STYLE_MIX = {
    "gongan": (0.55, 0.25, 0.10, 0.07, 0.03),
    "scjg": (0.70, 0.10, 0.10, 0.08, 0.02),
    "minzheng": (0.50, 0.10, 0.25, 0.13, 0.02),
    "renshe": (0.60, 0.20, 0.15, 0.05, 0.0),
    "licence": (0.90, 0.05, 0.0, 0.05, 0.0),
    "credit": (0.75, 0.10, 0.10, 0.05, 0.0),
    "court": (0.30, 0.0, 0.0, 0.70, 0.0),
}


@dataclass(frozen=True)
class WorldConfig:
    """Everything that determines a generated world (same config ⇒ same bytes)."""

    scale: float = 0.01
    seed: int = 1
    reference_date: dt.date = DEFAULT_REFERENCE_DATE
    defect_rate: float = 1.0
    pg_url: str | None = None
    mysql_url: str | None = None
    workers: int | None = None
    court_token: str = field(default="")

    def count(self, key: str, minimum: int = 20) -> int:
        """Rows of a truth table at this scale."""
        return max(minimum, int(round(BASE_COUNTS[key] * self.scale)))

    def rate(self, kind: str) -> float:
        """Effective rate of a defect kind."""
        return DEFECT_RATES[kind] * self.defect_rate

    @property
    def ref(self) -> np.datetime64:
        """The world's today as a numpy day."""
        return np.datetime64(self.reference_date, "D")

    @property
    def token(self) -> str:
        """Bearer token of the court API (derived from the seed unless given)."""
        return self.court_token or f"court-{zlib.crc32(f'token/{self.seed}'.encode()):08x}"

    def described(self) -> dict[str, object]:
        """JSON-ready description (no database URLs: those go with the sources)."""
        out = asdict(self)
        out["reference_date"] = self.reference_date.isoformat()
        for key in ("pg_url", "mysql_url", "workers", "court_token"):
            out.pop(key)
        return out


def rng_for(seed: int, *names: str) -> np.random.Generator:
    """An independent random stream per (seed, purpose): results never depend on generation order."""
    keys = [zlib.crc32(name.encode("utf-8")) for name in names]
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, seed >> 32, *keys]))
