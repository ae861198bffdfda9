"""Settings: every GB_* variable, read once, here and nowhere else."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse


class ConfigError(ValueError):
    """A GB_* variable holds a value the server cannot use."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"  # where `gbserver serve` listens (--host overrides)
    port: int = 8080  # (--port overrides)
    data_dir: Path = Path("./data")
    database_url: str = ""
    admin_token: str = ""
    max_body_bytes: int = 1_048_576
    consistency_timeout: float = 5.0
    auth_cache_ttl: float = 60.0
    log_level: str = "info"
    log_format: str = "text"  # or "json"; from_env picks json when stderr is not a terminal
    metrics_listen: str = ""  # host:port of a Prometheus listener of its own; empty: none
    llm_url: str = ""
    llm_model: str = "gpt-4o-mini"
    llm_key: str = ""
    llm_timeout: float = 30.0
    kafka_bootstrap: str = ""
    kafka_topic: str = "gbserver.events"
    kafka_partitions: int = 6
    kafka_group: str = "gbserver.events.projectors"
    # One dialog turn (commands.turn.TurnLimits); sizes are bytes of JSON.
    turn_max_state_bytes: int = 256 * 1024
    turn_max_value_bytes: int = 64 * 1024
    turn_max_event_bytes: int = 384 * 1024
    turn_max_calls: int = 10
    turn_seconds: float = 10.0
    # Drive and mail content (infra.blobs): files under data_dir/blobs, or an S3 bucket.
    max_upload_mb: int = 1024
    s3_endpoint: str = ""
    s3_bucket: str = "gbserver"
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_region: str = "us-east-1"
    # Mail: the outgoing relay, the incoming listener, IMAP accounts (infra.mail*).
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_security: str = "starttls"  # or "tls" (implicit) or "none"
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = ""
    smtp_timeout: float = 30.0
    smtp_retry_seconds: float = 60.0  # the first retry's delay; each next one doubles
    smtp_listen: str = ""
    max_mail_mb: int = 25
    imap_poll_seconds: float = 60.0
    imap_allow_private: bool = False  # IMAP accounts on loopback/private addresses
    secret_key: str = ""
    # Knowledge base (infra.kb*): an index under data_dir/kb, or an OpenSearch node.
    opensearch_url: str = ""
    opensearch_index: str = "gbserver-kb"

    @property
    def uses_opensearch(self) -> bool:
        return bool(self.opensearch_url)

    @property
    def uses_s3(self) -> bool:
        return bool(self.s3_endpoint)

    @property
    def uses_kafka(self) -> bool:
        return bool(self.kafka_bootstrap)

    @property
    def uses_postgres(self) -> bool:
        return self.database_url.startswith(("postgresql://", "postgres://"))

    def metrics_address(self) -> tuple[str, int] | None:
        """GB_METRICS_LISTEN as (host, port); None when unset. `:9100` listens on every
        interface, `[::1]:9100` on an IPv6 address."""
        return _listen_address("GB_METRICS_LISTEN", self.metrics_listen, "127.0.0.1:9100")

    def smtp_listen_address(self) -> tuple[str, int] | None:
        """GB_SMTP_LISTEN as (host, port); None when unset."""
        return _listen_address("GB_SMTP_LISTEN", self.smtp_listen, "127.0.0.1:2525")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        url = env.get("GB_DATABASE_URL", "").strip()
        topic = env.get("GB_KAFKA_TOPIC", "").strip() or "gbserver.events"
        if url and not url.startswith(("postgresql://", "postgres://", "sqlite://")):
            raise ConfigError(
                f"GB_DATABASE_URL must be a postgresql:// URL (or empty for SQLite), got {url!r}"
            )
        settings = cls(
            host=env.get("GB_HOST", "").strip() or "127.0.0.1",
            port=_int(env, "GB_PORT", 8080, minimum=1, maximum=65535),
            data_dir=Path(env.get("GB_DATA_DIR", "./data")),
            database_url="" if url.startswith("sqlite://") else url,
            admin_token=env.get("GB_ADMIN_TOKEN", ""),
            max_body_bytes=_int(env, "GB_MAX_BODY_BYTES", 1_048_576, minimum=1024),
            consistency_timeout=_float(env, "GB_CONSISTENCY_TIMEOUT", 5.0),
            auth_cache_ttl=_float(env, "GB_AUTH_CACHE_TTL", 60.0),
            log_level=_choice(env, "GB_LOG_LEVEL", LOG_LEVELS, "info"),
            log_format=_choice(env, "GB_LOG_FORMAT", LOG_FORMATS, _default_log_format()),
            metrics_listen=env.get("GB_METRICS_LISTEN", "").strip(),
            llm_url=env.get("GB_LLM_URL", "").strip(),
            llm_model=env.get("GB_LLM_MODEL", "").strip() or "gpt-4o-mini",
            llm_key=env.get("GB_LLM_KEY", ""),
            llm_timeout=_float(env, "GB_LLM_TIMEOUT", 30.0),
            kafka_bootstrap=env.get("GB_KAFKA_BOOTSTRAP", "").strip(),
            kafka_topic=topic,
            kafka_partitions=_int(env, "GB_KAFKA_PARTITIONS", 6, minimum=1),
            kafka_group=env.get("GB_KAFKA_GROUP", "").strip() or f"{topic}.projectors",
            turn_max_state_bytes=_int(env, "GB_TURN_MAX_STATE_BYTES", 256 * 1024, minimum=1024),
            turn_max_value_bytes=_int(env, "GB_TURN_MAX_VALUE_BYTES", 64 * 1024, minimum=256),
            turn_max_event_bytes=_int(env, "GB_TURN_MAX_EVENT_BYTES", 384 * 1024, minimum=4096),
            turn_max_calls=_int(env, "GB_TURN_MAX_CALLS", 10, minimum=1),
            turn_seconds=_float(env, "GB_TURN_SECONDS", 10.0),
            max_upload_mb=_int(env, "GB_MAX_UPLOAD_MB", 1024, minimum=1),
            s3_endpoint=env.get("GB_S3_ENDPOINT", "").strip(),
            s3_bucket=env.get("GB_S3_BUCKET", "").strip() or "gbserver",
            s3_access_key=env.get("GB_S3_ACCESS_KEY", "").strip(),
            s3_secret_key=env.get("GB_S3_SECRET_KEY", ""),
            s3_region=env.get("GB_S3_REGION", "").strip() or "us-east-1",
            smtp_host=env.get("GB_SMTP_HOST", "").strip(),
            smtp_port=_int(env, "GB_SMTP_PORT", 587, minimum=1, maximum=65535),
            smtp_security=_choice(env, "GB_SMTP_SECURITY", SMTP_SECURITY, "starttls"),
            smtp_user=env.get("GB_SMTP_USER", "").strip(),
            smtp_password=env.get("GB_SMTP_PASSWORD", ""),
            smtp_from=env.get("GB_SMTP_FROM", "").strip(),
            smtp_timeout=_float(env, "GB_SMTP_TIMEOUT", 30.0),
            smtp_retry_seconds=_float(env, "GB_SMTP_RETRY_SECONDS", 60.0),
            smtp_listen=env.get("GB_SMTP_LISTEN", "").strip(),
            max_mail_mb=_int(env, "GB_MAX_MAIL_MB", 25, minimum=1, maximum=1024),
            imap_poll_seconds=_float(env, "GB_IMAP_POLL_SECONDS", 60.0),
            imap_allow_private=_choice(env, "GB_IMAP_ALLOW_PRIVATE", BOOLEANS, "0") in TRUE,
            secret_key=env.get("GB_SECRET_KEY", ""),
            opensearch_url=env.get("GB_OPENSEARCH_URL", "").strip().rstrip("/"),
            opensearch_index=env.get("GB_OPENSEARCH_INDEX", "").strip().lower() or "gbserver-kb",
        )
        _check_turn_limits(settings)
        settings.metrics_address()  # a malformed listener is a config error at startup
        settings.smtp_listen_address()
        if settings.uses_postgres:
            settings.postgres_env()  # a malformed URL is a config error, not a crash later
        return settings

    def postgres_env(self) -> dict[str, str]:
        """The eventsourcing library's settings for the PostgreSQL URL.

        The event store and the read store each open a pool with these settings, on the
        same database: POOL_SIZE connections stay open, up to POOL_SIZE + MAX_OVERFLOW
        under load. Kept small so that several servers (tests, replicas) fit in the
        server's default max_connections of 100.
        """
        url = urlparse(self.database_url)
        dbname = unquote(url.path.lstrip("/"))
        if not dbname or "/" in dbname:
            raise ConfigError("GB_DATABASE_URL must name a database, e.g. postgresql://u:p@h/db")
        if url.query or url.fragment:
            # The library connects with fixed keywords: options such as sslmode would be
            # silently dropped. Use the libpq environment (PGSSLMODE, ...) instead.
            raise ConfigError(
                "GB_DATABASE_URL takes no ?options; set libpq's PG* environment variables"
                f" (e.g. PGSSLMODE) instead, got {url.query or url.fragment!r}"
            )
        try:
            port = url.port or 5432
        except ValueError:
            host_port = url.netloc.rpartition("@")[2]  # never echo the password
            raise ConfigError(f"GB_DATABASE_URL has an invalid port: {host_port!r}") from None
        return {
            "POSTGRES_DBNAME": dbname,
            "POSTGRES_HOST": unquote(url.hostname or "") or "127.0.0.1",
            "POSTGRES_PORT": str(port),
            "POSTGRES_USER": unquote(url.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(url.password or ""),
            # The library's pools wait this long for a free connection (our own connections,
            # infra.eventstore.connect, take it as their connect timeout): it bounds how long
            # an operation waits while PostgreSQL is unreachable before answering 503
            # (see infra.eventstore.Breaker).
            "POSTGRES_CONNECT_TIMEOUT": "2",
            "POSTGRES_POOL_SIZE": "2",
            "POSTGRES_MAX_OVERFLOW": "8",
            "POSTGRES_PRE_PING": "y",
            # Both stores share one database and its public schema: the library's objects
            # (gbserver_events, gbserver_read_tracking, type stored_event_uuid, function
            # es_insert_events_uuid) and ours (tasks, api_tokens, paper_documents) do not
            # collide.
            "POSTGRES_SCHEMA": "public",
        }


def _listen_address(name: str, value: str, example: str) -> tuple[str, int] | None:
    """A host:port setting as (host, port); None when unset. `:9100` listens on every
    interface, `[::1]:9100` on an IPv6 address."""
    if not value:
        return None
    host, sep, port = value.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    if (
        not sep
        or not (port.isascii() and port.isdigit())
        or not 0 < int(port) < 65536
        or (":" in host and not bracketed)
        or any(c in host for c in "[]/ ")
    ):
        raise ConfigError(
            f"{name} must be host:port (e.g. {example} or :{example.rpartition(':')[2]}),"
            f" got {value!r}"
        )
    return host or "0.0.0.0", int(port)


# A turn's events must stay well inside the event store's 512 KiB per event
# (commands.ports.MAX_EVENT_BYTES), with room for the rest of each event.
TURN_EVENT_BYTES_CEILING = 448 * 1024


def _check_turn_limits(s: Settings) -> None:
    if s.turn_max_event_bytes > TURN_EVENT_BYTES_CEILING:
        raise ConfigError(
            f"GB_TURN_MAX_EVENT_BYTES must be at most {TURN_EVENT_BYTES_CEILING}"
            f" (events are at most 512 KiB), got {s.turn_max_event_bytes}"
        )
    if s.turn_max_state_bytes > s.turn_max_event_bytes:
        raise ConfigError(
            "GB_TURN_MAX_STATE_BYTES must be at most GB_TURN_MAX_EVENT_BYTES"
            f" ({s.turn_max_event_bytes}), got {s.turn_max_state_bytes}"
        )
    if s.turn_max_value_bytes > s.turn_max_state_bytes:
        raise ConfigError(
            "GB_TURN_MAX_VALUE_BYTES must be at most GB_TURN_MAX_STATE_BYTES"
            f" ({s.turn_max_state_bytes}), got {s.turn_max_value_bytes}"
        )


def _int(
    env: Mapping[str, str], name: str, default: int, minimum: int = 0, maximum: int | None = None
) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("json", "text")
SMTP_SECURITY = ("starttls", "tls", "none")
BOOLEANS = ("0", "1", "false", "true", "no", "yes")
TRUE = ("1", "true", "yes")


def _default_log_format() -> str:
    """Text for a person at a terminal, one JSON object per line for a log collector."""
    return "text" if sys.stderr is not None and sys.stderr.isatty() else "json"


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if raw.lower() not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw.lower()


@dataclass(frozen=True)
class Documented:
    """One GB_* variable as `gbserver serve --help` (and the README's table) shows it."""

    name: str
    default: str  # as shown; "" for empty
    meaning: str


# Every variable Settings.from_env reads, in the order a newcomer meets them
# (tests/test_cli.py checks that none is missing and that the defaults match).
DOCUMENTED: tuple[Documented, ...] = (
    Documented("GB_HOST", "127.0.0.1", "address `serve` listens on (--host)"),
    Documented("GB_PORT", "8080", "port `serve` listens on (--port)"),
    Documented(
        "GB_DATA_DIR",
        "./data",
        "the embedded stores (SQLite); one running server at a time (data/gbserver.lock)",
    ),
    Documented(
        "GB_DATABASE_URL",
        "",
        "postgresql://user:pass@host:5432/db for the scaled profile; empty: SQLite",
    ),
    Documented(
        "GB_ADMIN_TOKEN", "", "a fixed admin token; empty: the first start prints one, once"
    ),
    Documented("GB_MAX_BODY_BYTES", "1048576", "largest request body (larger: 413)"),
    Documented(
        "GB_CONSISTENCY_TIMEOUT", "5", "seconds a write waits for its read models before a 202"
    ),
    Documented("GB_AUTH_CACHE_TTL", "60", "seconds a validated token stays cached"),
    Documented("GB_LOG_LEVEL", "info", "debug, info, warning, error or critical"),
    Documented("GB_LOG_FORMAT", "text on a terminal, else json", "json: one object per line; text"),
    Documented(
        "GB_METRICS_LISTEN", "", "host:port of a Prometheus listener without auth; empty: none"
    ),
    Documented("GB_LLM_URL", "", "an OpenAI-compatible API base for the LLM; empty: no LLM"),
    Documented("GB_LLM_MODEL", "gpt-4o-mini", "the model name sent to it"),
    Documented("GB_LLM_KEY", "", "its bearer key"),
    Documented("GB_LLM_TIMEOUT", "30", "seconds one completion may take"),
    Documented("GB_TURN_MAX_STATE_BYTES", "262144", "largest dialog state kept between turns"),
    Documented("GB_TURN_MAX_VALUE_BYTES", "65536", "largest value a dialog stores"),
    Documented("GB_TURN_MAX_EVENT_BYTES", "393216", "all one turn writes (at most 458752)"),
    Documented("GB_TURN_MAX_CALLS", "10", "outside calls (LLM, ...) one dialog turn may make"),
    Documented("GB_TURN_SECONDS", "10", "wall time of one dialog turn"),
    Documented(
        "GB_KAFKA_BOOTSTRAP", "", "host:port of a Kafka broker feeding the read models; empty: none"
    ),
    Documented("GB_KAFKA_TOPIC", "gbserver.events", "the topic the relay publishes the log to"),
    Documented("GB_KAFKA_PARTITIONS", "6", "partitions of that topic"),
    Documented("GB_KAFKA_GROUP", "<topic>.projectors", "the projectors' consumer group"),
    Documented("GB_MAX_UPLOAD_MB", "1024", "largest drive upload in MiB (larger: 413)"),
    Documented(
        "GB_S3_ENDPOINT", "", "an S3 endpoint URL for drive and mail content; empty: data/blobs"
    ),
    Documented("GB_S3_BUCKET", "gbserver", "the bucket (created when missing)"),
    Documented("GB_S3_ACCESS_KEY", "", "its access key"),
    Documented("GB_S3_SECRET_KEY", "", "its secret key"),
    Documented("GB_S3_REGION", "us-east-1", "its region"),
    Documented("GB_SMTP_HOST", "", "the relay outgoing mail goes through; empty: not delivered"),
    Documented("GB_SMTP_PORT", "587", "its port"),
    Documented("GB_SMTP_SECURITY", "starttls", "starttls, tls (implicit TLS) or none"),
    Documented("GB_SMTP_USER", "", "its login; empty: no AUTH"),
    Documented("GB_SMTP_PASSWORD", "", "its password"),
    Documented("GB_SMTP_FROM", "", "the envelope sender; empty: the sending user's address"),
    Documented("GB_SMTP_TIMEOUT", "30", "seconds one delivery attempt may take"),
    Documented(
        "GB_SMTP_RETRY_SECONDS", "60", "delay before a failed delivery's first retry (then doubled)"
    ),
    Documented(
        "GB_SMTP_LISTEN", "", "host:port where `serve` accepts mail for its users; empty: none"
    ),
    Documented("GB_MAX_MAIL_MB", "25", "largest mail sent or received, in MiB"),
    Documented("GB_IMAP_POLL_SECONDS", "60", "seconds between syncs of connected IMAP accounts"),
    Documented(
        "GB_IMAP_ALLOW_PRIVATE", "0", "1: IMAP accounts may be on loopback or private addresses"
    ),
    Documented(
        "GB_SECRET_KEY",
        "",
        "key that encrypts stored IMAP passwords; empty: data/secret.key (made once)",
    ),
    Documented(
        "GB_OPENSEARCH_URL",
        "",
        "an OpenSearch node for the knowledge base; empty: data/kb (SQLite)",
    ),
    Documented("GB_OPENSEARCH_INDEX", "gbserver-kb", "the index (created when missing)"),
)
