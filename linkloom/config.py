"""Settings: one model, read from ``LOOM_*`` environment variables and an optional TOML/YAML file.

``load_settings()`` is called only in composition roots (the CLI callback, ``create_app``,
Alembic's ``env.py``). Nested groups use ``__``: ``LOOM_DATABASE__URL=postgresql://…``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_HOME = Path(os.environ.get("LOOM_HOME", Path.home() / ".local" / "share" / "linkloom"))
DEFAULT_SIGNING_KEY = "dev-only-signing-key-change-me"


class DatabaseSettings(BaseModel):
    url: str = Field(
        default="",
        description="SQLAlchemy URL. Empty means a SQLite file under LOOM_HOME.",
    )
    pool_size: int = 10
    echo: bool = False


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = Field(
        default="",
        description="URL user backends use to reach this server (callbacks). Empty: http://host:port.",
    )
    auth: bool = True


class EngineSettings(BaseModel):
    concurrency: int = Field(default=64, ge=1, description="Steps one worker runs at once.")
    per_host_limit: int = Field(default=32, ge=1)
    per_flow_limit: int | None = None
    per_run_limit: int | None = None
    lease_seconds: float = 30.0
    poll_interval: float = 1.0
    shell_enabled: bool = False
    max_response_bytes: int = 10_000_000
    recent_fixture_runs: int = 10


class FlowsSettings(BaseModel):
    repo: str = Field(default="", description="Path of the git flows repo. Empty: LOOM_HOME/flows.")
    seed_from: str = Field(default="", description="Directory to initialise a new repo from.")


class SchedulerSettings(BaseModel):
    enabled: bool = True
    tick_seconds: float = 1.0


class SandboxSettings(BaseModel):
    backend: Literal["auto", "docker", "process"] = "auto"
    image: str = "linkloom/sandbox:latest"
    base_image: str = "linkloom/sandbox-base:bookworm"
    memory: str = "256m"
    cpus: float = 1.0
    pids_limit: int = 64
    wall_clock_seconds: float = 60.0


class LogSettings(BaseModel):
    format: Literal["auto", "json", "console"] = "auto"
    level: str = "INFO"


class SecuritySettings(BaseModel):
    signing_key: SecretStr = SecretStr(DEFAULT_SIGNING_KEY)
    required_approvals: int = 1
    allowed_hosts: list[str] = Field(default_factory=list)
    require_timeouts: bool = False
    require_retries: bool = False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOOM_", env_nested_delimiter="__", extra="ignore")

    mode: Literal["development", "production"] = "development"
    home: Path = DEFAULT_HOME
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    flows: FlowsSettings = Field(default_factory=FlowsSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    secrets: dict[str, SecretStr] = Field(
        default_factory=dict, description="Secrets flows read as {{ secrets.NAME }}."
    )

    @model_validator(mode="after")
    def _safe_in_production(self) -> Settings:
        if self.mode == "production":
            if self.security.signing_key.get_secret_value() == DEFAULT_SIGNING_KEY:
                raise ValueError("set LOOM_SECURITY__SIGNING_KEY: the default is for development")
            if self.database_url.startswith("sqlite"):
                raise ValueError("production mode needs PostgreSQL: set LOOM_DATABASE__URL")
        return self

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite+aiosqlite:///{self.home / 'loom.db'}"

    @property
    def flows_repo(self) -> Path:
        return Path(self.flows.repo) if self.flows.repo else self.home / "flows"

    @property
    def public_url(self) -> str:
        return self.server.public_url or f"http://{self.server.host}:{self.server.port}"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment (and keyword overrides, for tests and embedding)."""
    return Settings(**overrides)  # type: ignore[arg-type]
