"""Every CXLOOP_* setting lives here, so the CLI, the server and the tests agree on them.

Paths default to ``./.cxloop/`` under the working directory: one folder holds the whole
embedded project (SQLite app database, DuckDB event store, the running server's address).
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_URL_PASSWORD = re.compile(r"(?P<head>://[^:/@]+:)(?P<password>[^@]+)(?P<tail>@)")
# What a browser sends as Origin: scheme, host and an optional port, nothing after.
_ORIGIN = re.compile(
    r"(https?)://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?", re.IGNORECASE
)
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _origin_items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _as_browsers_send(origin: str) -> str:
    """The origin as a browser's Origin header spells it (lowercase, no default port),
    so that ``https://Shop.example.com:443`` matches the header it sends."""
    match = _ORIGIN.fullmatch(origin)
    if match is None:
        return origin
    scheme, host, port = match.group(1).lower(), match.group(2).lower(), match.group(3)
    keep_port = port is not None and port != _DEFAULT_PORTS[scheme]
    return f"{scheme}://{host}:{port}" if keep_port else f"{scheme}://{host}"


class Settings(BaseSettings):
    """Effective configuration, read from the environment (and an optional ``.env``)."""

    model_config = SettingsConfigDict(env_prefix="CXLOOP_", env_file=".env", extra="ignore")

    home: Path = Field(
        default=Path(".cxloop"),
        description="Folder of the embedded project (SQLite, DuckDB, server address).",
    )
    database_url: str = Field(
        default="",
        description="App database: sqlite:///PATH (default under home) or postgresql+psycopg://…",
    )
    events_url: str = Field(
        default="",
        description="Event store: duckdb:///PATH (default under home) or postgresql://…",
    )
    timezone: str = Field(default="UTC", description="Project time zone for days and dates.")
    host: str = Field(default="127.0.0.1", description="Address `cxloop serve` binds to.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `cxloop serve` binds to.")
    secret_key: SecretStr | None = Field(
        default=None,
        description="Optional extra API secret key accepted as a Bearer token.",
    )
    tracking_origins: str = Field(
        default="*",
        description="Web pages whose browsers may send to the Tracking API: * for any, or "
        "origins separated by commas, such as https://shop.example.com,https://example.com.",
    )
    max_message_bytes: int = Field(default=32 * 1024, ge=1024)
    max_batch_bytes: int = Field(default=500 * 1024, ge=1024)
    commit_max_messages: int = Field(
        default=20_000,
        ge=1,
        description="Most messages the ingestion applier stores in one batch.",
    )
    lake_dir: Path | None = Field(
        default=None,
        description="The Parquet lake `cxloop export parquet` writes and Spark reads "
        "(default: lake/ under home).",
    )
    spark_master: str = Field(
        default="local[*]",
        description="Where `--engine spark` runs: local[N] or a cluster's master URL.",
    )
    public_url: str | None = Field(
        default=None,
        description="The address people reach cxloop at, for links in e-mails "
        "(default: http://HOST:PORT).",
    )
    smtp_host: str | None = Field(
        default=None, description="Mail server for survey e-mails (unset: no e-mail)."
    )
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["starttls", "ssl", "none"] = Field(
        default="starttls", description="starttls, ssl (implicit TLS) or none (loopback only)."
    )
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = Field(default="cxloop <feedback@localhost>", description="From: address.")
    smtp_timeout_s: float = Field(default=10.0, gt=0, le=300)
    segments_refresh_minutes: int = Field(
        default=60,
        ge=0,
        le=10_080,
        description="How often the job worker recomputes every saved segment (0: only when "
        "asked, with `cxloop segments refresh`).",
    )
    jobs_lease_s: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        description="How long a claimed job is a worker's; after that (the worker died) "
        "another worker takes it again.",
    )
    webhooks_allow_private: bool = Field(
        default=False,
        description="Let webhooks reach loopback, private and link-local addresses "
        "(refused by default, so a rule cannot be aimed at the internal network).",
    )
    webhooks_timeout_s: float = Field(default=10.0, gt=0, le=120)
    webhooks_concurrency: int = Field(
        default=8,
        ge=1,
        le=64,
        description="Webhook deliveries a worker sends at the same time (a slow receiver "
        "then holds up only its own).",
    )
    webhooks_disable_after: int = Field(
        default=20,
        ge=1,
        le=10_000,
        description="Failed attempts in a row after which an endpoint is disabled and "
        "admins are told.",
    )
    jobs_poll_s: float = Field(
        default=5.0,
        ge=0,
        description="How often the server runs due jobs and scans (0: not in the server; "
        "run `cxloop jobs run` instead).",
    )

    @field_validator("home", mode="before")
    @classmethod
    def _home_given(cls, value: Any) -> Any:
        # CXLOOP_HOME= (set but empty, as CI files often leave it) means not set: the
        # default .cxloop, not the current folder itself.
        return Path(".cxloop") if isinstance(value, str) and not value.strip() else value

    @field_validator("home")
    @classmethod
    def _home_a_folder(cls, value: Path) -> Path:
        if value.expanduser().exists() and not value.expanduser().is_dir():
            raise ValueError(f"{value} is a file, not a folder; name a folder for the project")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must start with sqlite:// or postgresql+psycopg://")
        return value

    @field_validator("events_url")
    @classmethod
    def _known_events(cls, value: str) -> str:
        if value and not value.startswith(("duckdb", "postgresql", "postgres")):
            raise ValueError("must start with duckdb:// or postgresql://")
        return value

    @field_validator("tracking_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in _origin_items(value):
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin!r} is not an origin: * or scheme://host[:port], no path")
        return value

    @field_validator("public_url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @cached_property
    def tracking_origin_list(self) -> list[str]:
        """The origins as a list; ``["*"]`` when any is allowed."""
        items = _origin_items(self.tracking_origins)
        return ["*"] if "*" in items or not items else [_as_browsers_send(i) for i in items]

    @cached_property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home_dir / 'cxloop.db'}"

    @property
    def effective_events_url(self) -> str:
        return self.events_url or f"duckdb:///{self.home_dir / 'events.duckdb'}"

    @property
    def effective_lake_dir(self) -> Path:
        return (self.lake_dir or self.home_dir / "lake").expanduser().resolve()

    @property
    def effective_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def uses_embedded_files(self) -> bool:
        return self.effective_database_url.startswith(
            "sqlite"
        ) or self.effective_events_url.startswith("duckdb")

    def public_view(self) -> dict[str, Any]:
        """The effective settings with every secret masked, for `cxloop config show`."""
        return {
            "home": str(self.home_dir),
            "database_url": mask_url(self.effective_database_url),
            "events_url": mask_url(self.effective_events_url),
            "timezone": self.timezone,
            "host": self.host,
            "port": self.port,
            "secret_key": "********" if self.secret_key else None,
            "tracking_origins": self.tracking_origins,
            "max_message_bytes": self.max_message_bytes,
            "max_batch_bytes": self.max_batch_bytes,
            "commit_max_messages": self.commit_max_messages,
            "lake_dir": str(self.effective_lake_dir),
            "spark_master": mask_url(self.spark_master),
            "public_url": self.effective_public_url,
            "smtp_host": self.smtp_host,
            "smtp_port": self.smtp_port,
            "smtp_security": self.smtp_security,
            "smtp_username": self.smtp_username,
            "smtp_password": "********" if self.smtp_password else None,
            "smtp_from": self.smtp_from,
            "jobs_poll_s": self.jobs_poll_s,
            "jobs_lease_s": self.jobs_lease_s,
            "webhooks_allow_private": self.webhooks_allow_private,
            "webhooks_timeout_s": self.webhooks_timeout_s,
            "webhooks_concurrency": self.webhooks_concurrency,
            "webhooks_disable_after": self.webhooks_disable_after,
            "segments_refresh_minutes": self.segments_refresh_minutes,
        }


def mask_url(url: str) -> str:
    """Hide the password of a database URL."""
    return _URL_PASSWORD.sub(r"\g<head>********\g<tail>", url)


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
