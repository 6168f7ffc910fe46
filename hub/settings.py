"""One settings object for the whole hub, read from HUB_* environment variables and an optional TOML file."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SETTINGS_FILE = "hub.toml"


def _settings_file() -> Path:
    """The optional settings file: $HUB_SETTINGS_FILE, else ./hub.toml."""
    return Path(os.environ.get("HUB_SETTINGS_FILE", DEFAULT_SETTINGS_FILE))


class Settings(BaseSettings):
    """Every setting of the hub. Environment variables win over the file, the file over defaults."""

    model_config = SettingsConfigDict(env_prefix="HUB_", extra="ignore")

    data_root: Path = Field(Path("data"), description="数据根目录 root of landing, staging, quarantine, releases, keys")
    database_url: str | None = Field(None, description="枢纽数据库 hub database URL (default: SQLite file under the data root)")
    airflow_home: Path | None = Field(None, description="Airflow home (default: <data_root>/airflow)")
    airflow_database_url: str | None = Field(None, description="Airflow metadata DB URL (default: SQLite in Airflow home)")
    world_dir: Path | None = Field(None, description="模拟省份目录 simulated province folder (default: <data_root>/world)")
    world_scale: float = Field(0.01, description="模拟规模 scale of the simulated province for `make run` (1 = 1,000,000 persons)")
    world_seed: int = Field(20261123, description="模拟随机种子 seed of the simulated province")
    keyring_file: Path | None = Field(None, description="密钥环 key file for field encryption and HMAC index (default: <data_root>/keys/keyring.json)")
    log_level: str = Field("INFO", description="日志级别 log level")
    merge_workers: int = Field(0, ge=0, description="合并重算进程数 processes that recompute a large deferred merge "
                               "(0 = one per core, 1 = none: the load's own process)")
    audit_gather_seconds: float = Field(0.001, ge=0, le=0.1, description="审计组提交聚合等待 PostgreSQL audit flusher's pause "
                                        "before a batch while calls arrive together (0 = none; see catalog.audit)")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Order of precedence: explicit arguments, HUB_* variables, the TOML file, defaults."""
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=_settings_file()))

    @model_validator(mode="after")
    def _derive_paths(self) -> "Settings":
        """Make paths absolute and fill the defaults that depend on the data root."""
        self.data_root = self.data_root.expanduser().resolve()
        if self.airflow_home is None:
            self.airflow_home = self.data_root / "airflow"
        if self.world_dir is None:
            self.world_dir = self.data_root / "world"
        if self.keyring_file is None:
            self.keyring_file = self.data_root / "keys" / "keyring.json"
        self.airflow_home = self.airflow_home.expanduser().resolve()
        self.world_dir = self.world_dir.expanduser().resolve()
        self.keyring_file = self.keyring_file.expanduser().resolve()
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.data_root / 'hub.db'}"
        if self.airflow_database_url is None:
            self.airflow_database_url = f"sqlite:///{self.airflow_home / 'airflow.db'}"
        return self

    @property
    def landing_dir(self) -> Path:
        """Immutable per-run Parquet extracts."""
        return self.data_root / "landing"

    @property
    def staging_dir(self) -> Path:
        """Rows that passed quality, ready to merge."""
        return self.data_root / "staging"

    @property
    def quarantine_dir(self) -> Path:
        """Rows that failed an error-severity rule, with reasons."""
        return self.data_root / "quarantine"

    def described(self) -> list[dict[str, Any]]:
        """Every setting with its environment variable, value and description (for `hub settings`)."""
        rows = []
        for name, field in type(self).model_fields.items():
            rows.append({"env": f"HUB_{name.upper()}", "value": str(getattr(self, name)), "description": field.description})
        return rows


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; call `get_settings.cache_clear()` after changing the environment)."""
    return Settings()
