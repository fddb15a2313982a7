"""Settings: one model, read from ``LOOM_*`` environment variables and an optional TOML/YAML file.

``load_settings()`` is called only in composition roots (the CLI callback, ``create_app``,
Alembic's ``env.py``). Nested groups use ``__``: ``LOOM_DATABASE__URL=postgresql://…``.

Precedence, highest first: keyword overrides, environment variables, the config file named by
``LOOM_CONFIG_FILE`` (``.toml``, ``.yaml``/``.yml`` or ``.json``; same nesting as the model:
``[database] url = "…"``), then the defaults below. Every field carries a ``description``;
``scripts/gen-config-docs`` turns them into ``docs/configuration.md``.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from linkloom.errors import InvalidInput

DEFAULT_HOME = Path.home() / ".local" / "share" / "linkloom"
DEFAULT_SIGNING_KEY = "dev-only-signing-key-change-me"
# The shortest HMAC key accepted where a key authenticates code to run (the sandbox bundles):
# 32 bytes, what `openssl rand -hex 32` (64 characters) comfortably exceeds.
MIN_KEY_BYTES = 32
CONFIG_FILE_ENV = "LOOM_CONFIG_FILE"

# Set by ``load_settings(config_file=…)``; wins over LOOM_CONFIG_FILE.
_config_file_override: ContextVar[Path | None] = ContextVar("loom_config_file", default=None)


class SettingsInvalid(InvalidInput):
    """Invalid settings: {problems}. Fix the LOOM_* variables or the config file."""

    code = "settings_invalid"


class ConfigFileNotFound(InvalidInput):
    """Config file {path} not found; fix LOOM_CONFIG_FILE or create the file."""

    code = "config_file_not_found"


class ConfigFileUnsupported(InvalidInput):
    """Config file {path} has an unsupported suffix; use .toml, .yaml, .yml or .json."""

    code = "config_file_unsupported"


class DatabaseSettings(BaseModel):
    url: str = Field(
        default="",
        description="SQLAlchemy URL, e.g. postgresql+psycopg://loom:…@db:5432/loom. "
        "Empty means a SQLite file `loom.db` under the home directory.",
    )
    pool_size: int = Field(default=10, ge=1, description="Connections per process (PostgreSQL).")
    echo: bool = Field(default=False, description="Log every SQL statement (debugging only).")


class ServerSettings(BaseModel):
    host: str = Field(default="127.0.0.1", description="Address `loom server` binds to.")
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="Largest request body the API and web UI read, in bytes; a larger one is "
        "refused with 413 before it is read.",
    )
    max_proposal_body_bytes: int = Field(
        default=24 * 1024 * 1024,
        ge=1024,
        description="Largest request body of opening or revising a proposal (API and web "
        "editor), in bytes; `proposals.*` limits what it may commit.",
    )
    port: int = Field(default=8080, description="Port `loom server` listens on.")
    public_url: str = Field(
        default="",
        description="URL user backends use to reach this server (callbacks). "
        "Empty: http://host:port.",
    )
    auth: bool = Field(
        default=True,
        description="Require an API token. Binding a non-loopback address without it refuses "
        "to start.",
    )
    run_workers: bool = Field(
        default=True,
        description="Run step workers inside `loom server`. Set false when separate "
        "`loom worker` processes do the work.",
    )
    run_scheduler: bool = Field(
        default=True,
        description="Run the scheduler inside `loom server`. Set false when a separate "
        "`loom scheduler` process fires schedules.",
    )
    session_idle_seconds: float = Field(
        default=7200.0,
        gt=0,
        description="A web UI sign-in ends after this many seconds without a request.",
    )
    session_max_seconds: float = Field(
        default=43200.0,
        gt=0,
        description="A web UI sign-in ends this many seconds after it began, however active "
        "(the browser then signs in again with a token).",
    )


class EngineSettings(BaseModel):
    concurrency: int = Field(default=64, ge=1, description="Steps one worker runs at once.")
    per_host_limit: int = Field(
        default=32, ge=1, description="Concurrent requests one worker sends to one backend host."
    )
    per_flow_limit: int | None = Field(
        default=None, ge=1, description="Concurrent steps per flow across a worker; none: no limit."
    )
    per_run_limit: int | None = Field(
        default=None, ge=1, description="Concurrent steps per run; none: no limit."
    )
    lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long a worker holds a claimed step attempt before others may reclaim it "
        "(renewed while the step runs).",
    )
    poll_interval: float = Field(
        default=1.0,
        gt=0,
        description="Seconds between polls for ready steps when no notification wakes the worker.",
    )
    shell_enabled: bool = Field(
        default=False, description="Allow `shell` steps. Off by default: they run local commands."
    )
    max_response_bytes: int = Field(
        default=10_000_000, ge=1, description="Largest backend response body accepted, in bytes."
    )
    recent_fixture_runs: int = Field(
        default=10,
        ge=0,
        description="How many recent successful production runs a proposal is replayed against.",
    )
    recent_failed_fixture_runs: int = Field(
        default=5,
        ge=0,
        description="How many recent failed production runs a proposal is replayed against "
        "(a fix shows as newly passing).",
    )


class FlowsSettings(BaseModel):
    repo: str = Field(
        default="", description="Path of the git flows repo. Empty: `flows` under the home."
    )
    seed_from: str = Field(default="", description="Directory to initialise a new repo from.")
    remote: str = Field(
        default="",
        description="Git URL of the team's flows repo (`https://…`, `ssh://…`, `git@host:…`, "
        "`file://…`). Set, the server's flows repo mirrors it: its `branch` is production. "
        "Empty: the flows repo is private to the server.",
    )
    branch: str = Field(
        default="main", description="The remote's production branch (usually its default branch)."
    )
    remote_username: str = Field(
        default="x-access-token",
        description="User name sent with `remote_token` over https (GitHub: x-access-token, "
        "GitLab: oauth2, Gitea: the token's owner).",
    )
    remote_token: SecretStr = Field(
        default=SecretStr(""),
        description="Token for an `https://` remote (a secret: never logged or shown).",
    )
    ssh_key: str = Field(
        default="",
        description="Path of the private deploy key for an `ssh://` or scp-style remote.",
    )
    ssh_known_hosts: str = Field(
        default="",
        description="known_hosts file with the remote's host key. Empty: the key is trusted on "
        "first use and kept in the flows repo's `.git/loom_known_hosts`.",
    )
    poll_seconds: float = Field(
        default=60.0,
        ge=0,
        description="Seconds between fetches of the remote (besides push webhooks); 0: never poll.",
    )
    git_timeout: float = Field(
        default=60.0, gt=0, description="Time limit of one fetch or push to the remote, in seconds."
    )

    @field_validator("branch")
    @classmethod
    def _branch_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._/-]+", value) or ".." in value or value.startswith("/"):
            raise ValueError("use a branch name like main or master")
        return value


class ForgeSettings(BaseModel):
    kind: Literal["", "github", "gitlab", "gitea"] = Field(
        default="",
        description="The git host whose pull requests are proposals: `github`, `gitlab` or "
        "`gitea` (Gitea and Forgejo). Empty: no forge.",
    )
    api_url: str = Field(
        default="",
        description="The forge's API. Empty: https://api.github.com, https://gitlab.com/api/v4 or "
        "https://gitea.com/api/v1; GitHub Enterprise and self-hosted GitLab/Gitea set theirs.",
    )
    token: SecretStr = Field(
        default=SecretStr(""),
        description="Token the server reports statuses and comments with (a secret).",
    )
    webhook_secret: SecretStr = Field(
        default=SecretStr(""),
        description="The secret the forge's webhooks are signed with (GitHub, Gitea) or carry "
        "(GitLab's X-Gitlab-Token). Webhooks are refused while it is empty.",
    )
    repo: str = Field(
        default="",
        description="`owner/name` (GitLab: `group/project`) of the flows repo on the forge. "
        "Empty: taken from the path of `flows.remote`.",
    )
    report_max_attempts: int = Field(
        default=8,
        ge=1,
        description="Attempts to report one revision to the forge before giving up.",
    )
    report_retry_seconds: float = Field(
        default=2.0, gt=0, description="Delay before the first report retry; doubles each time."
    )


class ProposalsSettings(BaseModel):
    max_file_bytes: int | None = Field(
        default=2 * 1024 * 1024,
        ge=1,
        description="Largest file a proposal may commit, in bytes (API, web editor, pull "
        "requests). null: no limit.",
    )
    max_bytes: int | None = Field(
        default=8 * 1024 * 1024,
        ge=1,
        description="Largest total of the files one proposal or revision commits, in bytes. "
        "null: no limit.",
    )
    max_files: int | None = Field(
        default=200,
        ge=1,
        description="Most files one proposal or revision changes. null: no limit.",
    )
    author_bytes_per_hour: int | None = Field(
        default=32 * 1024 * 1024,
        ge=1,
        description="Bytes one author may commit through proposals within an hour (counted in "
        "the database: one budget for every server process). null: no limit.",
    )
    author_revisions_per_hour: int | None = Field(
        default=120,
        ge=1,
        description="Proposals and revisions one author may make within an hour (counted in "
        "the database: one budget for every server process). null: no limit.",
    )
    branch_retention_days: float | None = Field(
        default=30.0,
        gt=0,
        description="Days after which a closed proposal's branch is deleted from the flows repo "
        "(its record, checks and reviews are kept). null: keep branches forever.",
    )


class SchedulerSettings(BaseModel):
    enabled: bool = Field(
        default=True, description="Fire schedules at all (false pauses every schedule)."
    )
    tick_seconds: float = Field(
        default=1.0, gt=0, description="Seconds between scheduler ticks (due-schedule checks)."
    )
    webhook_replay_window_seconds: float = Field(
        default=30 * 24 * 3600.0,
        ge=0,
        description="How long a GitHub-style webhook's body is remembered: the same signed body "
        "again within this window is refused as a replay, even under a new X-GitHub-Delivery "
        "(GitHub's signature covers neither the delivery id nor a time). 0 turns the body check "
        "off. Link Loom v1 webhooks sign their timestamp and need no window.",
    )


class SandboxSettings(BaseModel):
    backend: Literal["auto", "docker", "process", "remote"] = Field(
        default="auto",
        description="Where proposals run: `docker` (isolated, no network), `process` (local "
        "subprocess, for development), `remote` (a `loom sandbox serve` service at "
        "`remote_url`, e.g. on Kubernetes), `auto` (docker when an engine answers).",
    )
    remote_url: str = Field(
        default="",
        description="The sandbox service for `backend=remote`: http://host:port, or "
        "unix:///path/to/socket.",
    )
    remote_key: SecretStr = Field(
        default=SecretStr(""),
        description="Key signing bundles sent to the sandbox service; the service "
        "(`loom sandbox serve`) refuses bundles not signed with it. At least 32 bytes "
        "(`openssl rand -hex 32`). Not the server's signing key: the sandbox service never "
        "holds that one.",
    )
    image: str = Field(
        default="linkloom/sandbox:latest", description="Sandbox runner image for `docker`."
    )
    base_image: str = Field(
        default="linkloom/sandbox-base:bookworm",
        description="Base image `loom sandbox build-image` builds the runner image from.",
    )
    memory: str = Field(default="256m", description="Memory limit per sandbox container.")
    cpus: float = Field(default=1.0, gt=0, description="CPU limit per sandbox container.")
    pids_limit: int = Field(default=64, ge=1, description="Process limit per sandbox container.")
    wall_clock_seconds: float = Field(
        default=60.0, gt=0, description="Wall-clock limit per sandbox run; then it is killed."
    )

    @field_validator("remote_key")
    @classmethod
    def _long_enough(cls, key: SecretStr) -> SecretStr:
        length = len(key.get_secret_value().encode())
        if 0 < length < MIN_KEY_BYTES:
            raise ValueError(
                f"{length} bytes is too short for the key the sandbox service authenticates "
                f"bundles with: use at least {MIN_KEY_BYTES} (openssl rand -hex 32)"
            )
        return key


class LogSettings(BaseModel):
    format: Literal["auto", "json", "console"] = Field(
        default="auto",
        description="`json`: one JSON object per line; `console`: human-readable; `auto`: "
        "console on a terminal, JSON otherwise.",
    )
    level: str = Field(default="INFO", description="Lowest level logged: DEBUG, INFO, WARNING…")

    @field_validator("level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("use DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return value.upper()


class MetricsSettings(BaseModel):
    enabled: bool = Field(default=True, description="Serve Prometheus metrics at `/metrics`.")
    port: int | None = Field(
        default=None,
        description="Port of a standalone `/metrics` listener for `loom worker` and "
        "`loom scheduler` processes (the API server serves `/metrics` on its own port).",
    )


class TracingSettings(BaseModel):
    enabled: bool = Field(
        default=False,
        description="Export OpenTelemetry spans (a span per run and per step attempt); needs "
        "the `tracing` extra.",
    )
    endpoint: str = Field(
        default="",
        description="OTLP/HTTP traces endpoint, e.g. http://otel-collector:4318/v1/traces. "
        "Empty: the OTEL_EXPORTER_OTLP_* environment variables, else localhost.",
    )
    service_name: str = Field(
        default="linkloom", description="The `service.name` resource attribute of the spans."
    )


def _block_promotion_default() -> list[Literal["failed", "error", "attention"]]:
    return ["failed", "error"]


class SecuritySettings(BaseModel):
    signing_key: SecretStr = Field(
        default=SecretStr(DEFAULT_SIGNING_KEY),
        description="HMAC key signing calls to user backends, callbacks and webhooks. "
        "Production refuses the default.",
    )
    previous_signing_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Older keys still accepted on inbound signatures while backends move to the "
        "new key (rotation); outbound calls always use `signing_key`.",
    )
    required_approvals: int = Field(
        default=1, ge=1, description="Approvals a proposal needs before it can be promoted."
    )
    block_promotion_on: list[Literal["failed", "error", "attention"]] = Field(
        default_factory=_block_promotion_default,
        description="Check statuses that block promotion (JSON list). A check that needs "
        "`attention` and is not listed needs an approval given after it finished.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts `http` steps may call (JSON list); empty allows any host.",
    )
    require_timeouts: bool = Field(
        default=False, description="Reject flows whose `http` steps declare no timeout."
    )
    require_retries: bool = Field(
        default=False, description="Reject flows whose `http` steps declare no retry policy."
    )


class NotificationSettings(BaseModel):
    enabled: bool = Field(
        default=True,
        description="Send notifications; channels and rules are managed with the API and "
        "`loom notify`.",
    )
    max_attempts: int = Field(
        default=6, ge=1, description="Attempts per message and channel before it counts as failed."
    )
    retry_base_seconds: float = Field(
        default=2.0, gt=0, description="Delay before the first retry; doubles after each attempt."
    )
    retry_max_seconds: float = Field(
        default=300.0, gt=0, description="Longest delay between two attempts."
    )
    timeout_seconds: float = Field(
        default=10.0, gt=0, description="Time limit of one attempt (HTTP request or SMTP session)."
    )
    poll_interval: float = Field(
        default=1.0, gt=0, description="Seconds between checks for messages due for (re)sending."
    )
    sla_check_seconds: float = Field(
        default=15.0, gt=0, description="Seconds between checks of running runs against SLA rules."
    )
    web_push_subject: str = Field(
        default="mailto:linkloom@localhost",
        description="Who push services should contact about this server's Web Push messages "
        "(a mailto: or https: URL, sent in the VAPID signature).",
    )
    web_push_insecure_endpoints: bool = Field(
        default=False,
        description="Accept Web Push subscriptions whose endpoint is plain http on this machine "
        "(a local push relay, tests); browsers' push services are always https.",
    )


class PullSettings(BaseModel):
    lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Lease of a task a pull-mode worker took; it heartbeats "
        "every third of it, and an expired lease hands the task to another worker.",
    )
    lost_after: float | None = Field(
        default=None,
        gt=0,
        description="Seconds without a heartbeat before a worker is marked "
        "lost and its tasks are requeued (default: twice the lease).",
    )
    max_wait: float = Field(
        default=20.0, ge=0, description="Longest long-poll a worker may ask for, in seconds."
    )


class RetentionSettings(BaseModel):
    runs_days: float | None = Field(
        default=None,
        gt=0,
        description="Delete finished runs (with their steps, attempts, events, logs, recorded "
        "exchanges and dead letters) older than this many days. Empty: keep every run.",
    )
    flows: dict[str, float | None] = Field(
        default_factory=dict,
        description="Per-flow days, overriding `runs_days` (JSON object, flow id → days; null "
        "keeps that flow's runs forever): LOOM_RETENTION__FLOWS='{\"noisy-poller\": 2}'.",
    )
    batch_size: int = Field(
        default=200,
        ge=1,
        le=10_000,
        description="Runs deleted per transaction; small batches keep each write short, so the "
        "engine is never blocked for long.",
    )
    pause_seconds: float = Field(
        default=0.05,
        ge=0,
        description="Shortest pause between two batches of one purge; a purge also rests at "
        "least as long as its last batch took, so it uses at most about half of the "
        "database's time.",
    )
    interval_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="Seconds between purges (run by the process that runs the scheduler).",
    )

    @field_validator("flows")
    @classmethod
    def _positive_days(cls, value: dict[str, float | None]) -> dict[str, float | None]:
        bad = [flow for flow, days in value.items() if days is not None and days <= 0]
        if bad:
            raise ValueError(f"days must be > 0 (or null to keep forever) for {', '.join(bad)}")
        return value

    @property
    def enabled(self) -> bool:
        return self.runs_days is not None or any(d is not None for d in self.flows.values())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOOM_", env_nested_delimiter="__", extra="ignore")

    mode: Literal["development", "production"] = Field(
        default="development",
        description="`production` refuses unsafe values (the default signing key, SQLite).",
    )
    home: Path = Field(
        default=DEFAULT_HOME,
        description="Directory for the embedded SQLite database, the flows repo and local state.",
    )
    config_file: str = Field(
        default="",
        description="TOML, YAML or JSON file read for settings below the environment "
        "(only as LOOM_CONFIG_FILE).",
    )
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    flows: FlowsSettings = Field(default_factory=FlowsSettings)
    proposals: ProposalsSettings = Field(default_factory=ProposalsSettings)
    forge: ForgeSettings = Field(default_factory=ForgeSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    pull: PullSettings = Field(default_factory=PullSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Secrets flows read as {{ secrets.NAME }}: LOOM_SECRETS__NAME=value "
        "(NAME keeps its case).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        env = (_EnvSecrets(settings_cls), _WithoutSecrets(settings_cls, env_settings))
        path = config_file_path()
        if path is None:
            return (init_settings, *env)
        return (init_settings, *env, _file_source(settings_cls, path))

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
    def verification_keys(self) -> list[str]:
        """Keys an inbound signature may use: the current key, then the previous ones."""
        current = self.security.signing_key.get_secret_value()
        return [current, *(key.get_secret_value() for key in self.security.previous_signing_keys)]

    @property
    def public_url(self) -> str:
        return self.server.public_url or f"http://{self.server.host}:{self.server.port}"


def config_file_path() -> Path | None:
    """The config file in effect: ``load_settings(config_file=…)``, else ``LOOM_CONFIG_FILE``."""
    override = _config_file_override.get()
    if override is not None:
        return override
    raw = os.environ.get(CONFIG_FILE_ENV, "").strip()
    return Path(raw).expanduser() if raw else None


SECRETS_ENV_PREFIX = "LOOM_SECRETS__"


class _EnvSecrets(PydanticBaseSettingsSource):
    """``LOOM_SECRETS__<NAME>`` with the name's case kept: ``secrets.MyToken`` reads MyToken.

    Every other setting's variable is matched case-insensitively, which pydantic-settings does
    by lower-casing the whole name; a secret's name is what templates read, so it keeps its case.
    """

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the environment at once

    def __call__(self) -> dict[str, Any]:
        found = {
            name[len(SECRETS_ENV_PREFIX) :]: value
            for name, value in os.environ.items()
            if name.upper().startswith(SECRETS_ENV_PREFIX) and len(name) > len(SECRETS_ENV_PREFIX)
        }
        return {"secrets": found} if found else {}


class _WithoutSecrets(PydanticBaseSettingsSource):
    """The environment source minus ``secrets`` (read, case kept, by ``_EnvSecrets``)."""

    def __init__(self, settings_cls: type[BaseSettings], inner: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._inner = inner

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._inner.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        data = dict(self._inner())
        data.pop("secrets", None)
        return data


def _file_source(settings_cls: type[BaseSettings], path: Path) -> PydanticBaseSettingsSource:
    if not path.is_file():
        raise ConfigFileNotFound(path=str(path))
    suffix = path.suffix.lower()
    if suffix == ".toml":
        return TomlConfigSettingsSource(settings_cls, toml_file=path)
    if suffix in (".yaml", ".yml"):
        return YamlConfigSettingsSource(settings_cls, yaml_file=path)
    if suffix == ".json":
        return JsonConfigSettingsSource(settings_cls, json_file=path)
    raise ConfigFileUnsupported(path=str(path))


def load_settings(*, config_file: str | Path | None = None, **overrides: object) -> Settings:
    """Read settings from overrides, the environment and the config file.

    Raises:
        SettingsInvalid: a value does not validate (the message lists each bad setting).
        ConfigFileNotFound: the named config file does not exist.
    """
    token = _config_file_override.set(Path(config_file) if config_file is not None else None)
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsInvalid(problems=_describe(exc)) from exc
    finally:
        _config_file_override.reset(token)


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = "__".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"LOOM_{location.upper()}: {message}" if location else message)
    return "; ".join(parts)
