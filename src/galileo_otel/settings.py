"""GalileoSettings: every option of galileo-otel, from arguments or env vars, validated once.

Precedence, first wins: a keyword argument, the ``GALILEO_*`` env var, the matching ``OTEL_*``
env var (converted to our units: OTel's batch settings are in milliseconds), the default.
A bad value raises :class:`~galileo_otel.errors.ConfigError` naming the argument or env var and
what is wrong with it, never the API key.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import pydantic
from pydantic import BeforeValidator, Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.exceptions import SettingsError

from galileo_otel.errors import ConfigError

__all__ = [
    "OFFICIAL_SDK_ENV_VARS",
    "GalileoSettings",
    "known_env_vars",
    "mask_secret",
    "merge_settings",
    "parse_duration",
    "unknown_env_vars",
]

_log = logging.getLogger(__name__)

DEFAULT_CONSOLE_URL = "https://app.galileo.ai"
DEFAULT_LOCAL_API_URL = "http://localhost:8088"
DEFAULT_SESSION_IDLE_TIMEOUT_S = 1800.0
DEFAULT_BATCH_DELAY_S = 1.0
DEFAULT_EXPORT_TIMEOUT_S = 30.0
DEFAULT_MAX_QUEUE_SPANS = 20_480
DEFAULT_BATCH_MAX_TRACES = 100
DEFAULT_SPOOL_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_SPOOL_DEAD_MAX_BYTES = 64 * 1024 * 1024

_DURATION = re.compile(
    r"^\s*(?P<num>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?P<unit>ms|s|m|h)?\s*$"
)
_UNIT_S = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "h": 3600.0}
_DISABLED_WORDS = {"off", "none", "false", "0", "disabled"}
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def parse_duration(value: Any) -> float:
    """Parse a duration in seconds: ``1.5``, ``"30"``, ``"500ms"``, ``"2m"``, ``"1h"``.

    Raises:
        ValueError: The value is not a non-negative duration.
    """
    if isinstance(value, bool):
        raise ValueError(_NOT_A_DURATION)
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(_NOT_A_DURATION)
        seconds = float(match["num"]) * _UNIT_S[match["unit"]]
    else:
        raise ValueError(_NOT_A_DURATION)
    if seconds < 0 or seconds != seconds:  # negative or NaN
        raise ValueError(_NOT_A_DURATION)
    return seconds


_NOT_A_DURATION = (
    "not a duration in seconds: use a number >= 0, optionally with a unit, "
    "e.g. 30, 1.5, 500ms, 2m, 1h"
)


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "galileo-otel"


def _check_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL with a host, e.g. https://api.galileo.ai")
    return value.strip().rstrip("/")


def _check_uuid(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ValueError("not a UUID") from None


# OTel env vars that fill a Galileo setting when its GALILEO_* var is unset, with the factor that
# turns the OTel unit into ours.
_OTEL_FALLBACKS: dict[str, tuple[str, float | None]] = {
    "max_queue_spans": ("OTEL_BSP_MAX_QUEUE_SIZE", None),
    "batch_delay": ("OTEL_BSP_SCHEDULE_DELAY", 0.001),
    "export_timeout": ("OTEL_BSP_EXPORT_TIMEOUT", 0.001),
    "logging_disabled": ("OTEL_SDK_DISABLED", None),
    "service_name": ("OTEL_SERVICE_NAME", None),
}


class _OtelEnvSource(PydanticBaseSettingsSource):
    """Reads the ``OTEL_*`` fallbacks, converting milliseconds to seconds."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        env_name, factor = _OTEL_FALLBACKS.get(field_name, ("", None))
        raw = os.environ.get(env_name) if env_name else None
        if raw is None or raw.strip() == "":
            return None, field_name, False
        if factor is not None:
            try:
                return float(raw) * factor, field_name, False
            except ValueError:
                return raw, field_name, False  # let the field's validator word the error
        return raw, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = value
        return values


class GalileoSettings(BaseSettings):
    """Every option of galileo-otel. Each field names its env var; arguments win over env vars.

    Example:
        >>> settings = GalileoSettings(api_key="k", project="my-app", reliable=False)
        >>> settings.resolved_api_url()
        'https://api.galileo.ai'
    """

    model_config = SettingsConfigDict(
        env_prefix="GALILEO_",
        case_sensitive=False,
        env_ignore_empty=True,
        extra="forbid",
        validate_default=True,
    )

    # --- where to send -----------------------------------------------------------------------
    api_key: SecretStr | None = Field(
        None, description="GALILEO_API_KEY: the API key (required to send)."
    )
    api_url: str | None = Field(
        None,
        description="GALILEO_API_URL: the API base URL; derived from the console URL if unset.",
    )
    console_url: str = Field(
        DEFAULT_CONSOLE_URL,
        description="GALILEO_CONSOLE_URL: the console URL the API URL is derived from.",
    )
    project: str | None = Field(None, description="GALILEO_PROJECT: project name.")
    project_id: str | None = Field(
        None, description="GALILEO_PROJECT_ID: project id (wins over the name)."
    )
    log_stream: str | None = Field(None, description="GALILEO_LOG_STREAM: log stream name.")
    log_stream_id: str | None = Field(
        None, description="GALILEO_LOG_STREAM_ID: log stream id (wins over the name)."
    )
    experiment_id: str | None = Field(
        None, description="GALILEO_EXPERIMENT_ID: log to this experiment instead of a log stream."
    )
    create_missing: bool = Field(
        True,
        description="GALILEO_CREATE_MISSING: create the named project / log stream when it does not exist.",
    )
    extra_headers: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="GALILEO_EXTRA_HEADERS: a JSON object of extra HTTP headers for every request.",
    )
    logging_disabled: bool = Field(
        False, description="GALILEO_LOGGING_DISABLED (or OTEL_SDK_DISABLED): export nothing."
    )
    service_name: str | None = Field(
        None,
        description="GALILEO_SERVICE_NAME (or OTEL_SERVICE_NAME): stamped in session metadata.",
    )
    startup_message: bool = Field(
        True,
        description="GALILEO_STARTUP_MESSAGE: configure() prints where traces go (and that export is disabled) on stderr when the app has set up no logging.",
    )
    connect_timeout: Duration = Field(
        5.0, description="GALILEO_CONNECT_TIMEOUT: seconds to connect."
    )
    read_timeout: Duration = Field(
        30.0, description="GALILEO_READ_TIMEOUT: seconds to wait for an answer."
    )

    # --- delivery ------------------------------------------------------------------------------
    reliable: bool = Field(
        True,
        description="GALILEO_RELIABLE: true = confirmed delivery (wait, retry, spool); false = fire-and-forget.",
    )
    export_process: bool = Field(
        False,
        description="GALILEO_EXPORT_PROCESS: true = assemble, convert and send in a child process (off the app's GIL).",
    )
    batch_max_traces: int = Field(
        DEFAULT_BATCH_MAX_TRACES,
        ge=1,
        description="GALILEO_BATCH_MAX_TRACES: traces per Log Traces request.",
    )
    batch_max_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        description="GALILEO_BATCH_MAX_BYTES: encoded size cap of one request.",
    )
    batch_delay: Duration = Field(
        DEFAULT_BATCH_DELAY_S,
        description=(
            "GALILEO_BATCH_DELAY (or OTEL_BSP_SCHEDULE_DELAY, ms): the shortest time between two "
            "timed sends, in seconds; the first batch after a quiet period leaves after 50 ms "
            "(or this delay, if shorter), a full batch at once."
        ),
    )
    max_queue_spans: int = Field(
        DEFAULT_MAX_QUEUE_SPANS,
        ge=1,
        description="GALILEO_MAX_QUEUE_SPANS (or OTEL_BSP_MAX_QUEUE_SIZE): spans held before dropping.",
    )
    max_in_flight: int = Field(
        4, ge=1, description="GALILEO_MAX_IN_FLIGHT: Log Traces requests sent at once."
    )
    export_timeout: Duration = Field(
        DEFAULT_EXPORT_TIMEOUT_S,
        description="GALILEO_EXPORT_TIMEOUT (or OTEL_BSP_EXPORT_TIMEOUT, ms): deadline for one batch, retries included.",
    )
    spool_dir: str | None = Field(
        None,
        description="GALILEO_SPOOL_DIR: durable queue for reliable mode; unset: ~/.cache/galileo-otel/spool (under $XDG_CACHE_HOME when set); 'off' disables.",
    )
    spool_max_bytes: int = Field(
        DEFAULT_SPOOL_MAX_BYTES,
        ge=0,
        description="GALILEO_SPOOL_MAX_BYTES: disk cap of the spool directory (database with pending batches and dead letters, its WAL and index), within 256 KiB; when full, new batches are dropped and counted (dropped.spool_full) and the oldest dead letters make room.",
    )
    spool_dead_max_bytes: int = Field(
        DEFAULT_SPOOL_DEAD_MAX_BYTES,
        ge=0,
        description="GALILEO_SPOOL_DEAD_MAX_BYTES: disk cap of dead-lettered batches; the oldest are removed to make room.",
    )
    max_spans_per_trace: int = Field(
        5_000,
        ge=1,
        description="GALILEO_MAX_SPANS_PER_TRACE: spans kept per trace; the rest are counted and cut.",
    )
    max_open_traces: int = Field(
        10_000, ge=1, description="GALILEO_MAX_OPEN_TRACES: traces assembled at once."
    )
    trace_timeout: Duration = Field(
        300.0,
        description="GALILEO_TRACE_TIMEOUT: seconds before a trace whose root never ends ships incomplete.",
    )
    exit_timeout: Duration = Field(
        5.0,
        description="GALILEO_EXIT_TIMEOUT: seconds a process that ends (interpreter exit, SIGTERM, a pool child that exits) spends delivering what it holds; what is in the spool by then goes with the next process.",
    )
    handle_sigterm: bool = Field(
        True,
        description="GALILEO_HANDLE_SIGTERM: on SIGTERM, when the app has no handler of its own, deliver (bounded by exit_timeout) and then terminate as by default; false leaves SIGTERM alone.",
    )

    # --- sessions ------------------------------------------------------------------------------
    session_idle_timeout: Duration = Field(
        DEFAULT_SESSION_IDLE_TIMEOUT_S,
        description="GALILEO_SESSION_IDLE_TIMEOUT: seconds of quiet that close a session.",
    )
    session_max_age: Duration | None = Field(
        None,
        description="GALILEO_SESSION_MAX_AGE: seconds after which a session rotates even if busy; unset: no limit.",
    )
    session_store: str = Field(
        "memory",
        description="GALILEO_SESSION_STORE: 'memory' (one process), 'sqlite' or 'sqlite:///path' (processes of one host), or a Redis URL 'redis://host:port/db', 'rediss://...', 'unix:///path.sock' (many hosts; extra [redis]).",
    )
    session_store_ttl: Duration = Field(
        7 * 24 * 3600.0,
        gt=0,
        description="GALILEO_SESSION_STORE_TTL: seconds a Redis store remembers a conversation, user or session after its last use.",
    )
    session_sample_rate: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="GALILEO_SESSION_SAMPLE_RATE: share of sessions kept (0..1), decided per session key, the same on every host.",
    )
    session_baggage: bool = Field(
        False, description="GALILEO_SESSION_BAGGAGE: propagate session() through OTel baggage."
    )
    session_metadata_attributes: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="GALILEO_SESSION_METADATA_ATTRIBUTES: comma-separated span attributes copied to session metadata.",
    )
    max_tracked_sessions: int = Field(
        10_000,
        ge=1,
        description="GALILEO_MAX_TRACKED_SESSIONS: session keys remembered for rotation and chaining.",
    )

    _secret_fields: ClassVar[frozenset[str]] = frozenset({"api_key", "extra_headers"})

    def __init__(self, **values: Any) -> None:
        _warn_unknown_env()
        try:
            super().__init__(**values)
        except pydantic.ValidationError as exc:
            raise ConfigError(_describe(exc, set(values))) from None
        except SettingsError as exc:  # pragma: no cover - pydantic-settings decoding errors
            raise ConfigError(str(exc)) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Argument > ``GALILEO_*`` > ``OTEL_*`` > default."""
        return (init_settings, env_settings, _OtelEnvSource(settings_cls))

    # --- validators ----------------------------------------------------------------------------
    @field_validator("api_url", "console_url", mode="before")
    @classmethod
    def _url(cls, value: Any) -> Any:
        return _check_url(value) if isinstance(value, str) else value

    @field_validator("project_id", "log_stream_id", "experiment_id", mode="before")
    @classmethod
    def _uuid(cls, value: Any) -> Any:
        return _check_uuid(value) if value is not None else None

    @field_validator("extra_headers", mode="before")
    @classmethod
    def _headers(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON ({exc.msg} at position {exc.pos})") from None
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ValueError('must be a JSON object of string values, e.g. {"X-Team": "ml"}')
        return value

    @field_validator("session_metadata_attributes", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("session_store")
    @classmethod
    def _store(cls, value: str) -> str:
        if value == "memory" or value == "sqlite" or value.startswith("sqlite:///"):
            return value
        if value.startswith(_REDIS_SCHEMES):
            parts = urlsplit(value)
            if parts.scheme == "unix" and not parts.path:
                raise ValueError("a unix:// Redis URL needs a socket path: unix:///path/redis.sock")
            if parts.scheme != "unix" and not parts.hostname:
                raise ValueError("a Redis URL needs a host: redis://host:port/db")
            return value
        raise ValueError(
            "must be 'memory', 'sqlite', 'sqlite:///path/to/file.db' or a Redis URL "
            "(redis://host:port/db, rediss://host:port/db, unix:///path/redis.sock)"
        )

    # --- derived values ------------------------------------------------------------------------
    def resolved_api_url(self) -> str:
        """The API base URL: ``api_url`` if set, else derived from ``console_url``.

        ``app.galileo.ai`` maps to ``https://api.galileo.ai``; ``localhost`` / ``127.0.0.1``
        to ``http://localhost:8088``; any other host has ``console`` replaced by ``api``.
        """
        if self.api_url:
            return self.api_url
        return derive_api_url(self.console_url)

    def spool_path(self) -> Path | None:
        """Where reliable mode keeps undelivered batches, or ``None`` when spooling is off."""
        if not self.reliable:
            return None
        if self.spool_dir is None:
            return _user_cache_dir() / "spool"
        if self.spool_dir.strip().lower() in _DISABLED_WORDS:
            return None
        return Path(self.spool_dir).expanduser()

    def session_store_url(self) -> str | None:
        """The Redis URL of the session store, or ``None`` when it is not Redis."""
        return self.session_store if self.session_store.startswith(_REDIS_SCHEMES) else None

    def session_store_path(self) -> Path | None:
        """The SQLite file of the session store, or ``None`` for the memory (or Redis) store."""
        if self.session_store == "memory" or self.session_store_url() is not None:
            return None
        if self.session_store == "sqlite":
            return _user_cache_dir() / "sessions.db"
        return Path(self.session_store[len("sqlite:///") :]).expanduser()

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name == "extra_headers" and value:
                yield name, {k: "**********" for k in value}
            elif name == "session_store" and isinstance(value, str) and "@" in value:
                yield name, _redact_password(value)
            else:
                yield name, value


def mask_secret(secret: str) -> str:
    """A secret as it may be shown: its first 3 and last 2 characters of 12 or more, else stars."""
    if len(secret) < 12:
        return "*" * len(secret)
    return f"{secret[:3]}{'*' * 6}{secret[-2:]}"


def _redact_password(url: str) -> str:
    """``url`` with its password (a Redis URL's) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
    except ValueError:
        return "<unparsable URL>"


def merge_settings(
    settings: GalileoSettings | None = None, overrides: Mapping[str, Any] | None = None
) -> GalileoSettings:
    """The one way settings and overrides are merged: both validated, errors name the setting.

    Args:
        settings: Settings built earlier; ``None`` reads ``GALILEO_*`` / ``OTEL_*`` env vars.
        overrides: Field values that win over ``settings`` and env vars.

    Raises:
        ConfigError: An override is unknown or invalid (the message names it).
    """
    overrides = dict(overrides or {})
    if settings is None:
        return GalileoSettings(**overrides)
    if not overrides:
        return settings
    # Rebuilt through the constructor (not model_copy(update=...), which skips validation);
    # only the overrides are new, so only they can fail, and the error names them.
    current = {name: getattr(settings, name) for name in type(settings).model_fields}
    return type(settings)(**{**current, **overrides})


def derive_api_url(console_url: str) -> str:
    """Derive the API base URL from a console URL, as the official Galileo SDK does."""
    parts = urlsplit(console_url)
    host = parts.hostname or ""
    if "app.galileo.ai" in console_url:
        return "https://api.galileo.ai"
    if host in ("localhost", "127.0.0.1"):
        return DEFAULT_LOCAL_API_URL
    return f"{parts.scheme}://{parts.netloc.replace('console', 'api')}"


def _source_of(field: str, init_keys: set[str]) -> str:
    """Name where a field's value came from, the way the user would write it."""
    if field in init_keys:
        return f"argument {field!r}"
    env = f"GALILEO_{field.upper()}"
    if env in os.environ:
        return env
    otel = _OTEL_FALLBACKS.get(field)
    if otel and otel[0] in os.environ:
        return otel[0]
    return f"setting {field!r}"


# What a value of each pydantic error type should have been, in the user's words.
_ACCEPTED = {
    "bool_parsing": "not true or false: use true or false (1/0, yes/no, on/off also work)",
    "bool_type": "not true or false: use true or false (1/0, yes/no, on/off also work)",
    "int_parsing": "not a whole number",
    "int_type": "not a whole number",
    "int_from_float": "not a whole number",
    "float_parsing": "not a number",
    "float_type": "not a number",
    "string_type": "not text",
    "dict_type": 'not a JSON object, e.g. {"X-Team": "ml"}',
}
_BOUNDS = {
    "greater_than_equal": ("ge", ">="),
    "greater_than": ("gt", ">"),
    "less_than_equal": ("le", "<="),
    "less_than": ("lt", "<"),
}


def _message(err: Any, field: str) -> str:
    """One pydantic error in words that name the accepted values or range."""
    kind = err.get("type", "")
    if kind in _ACCEPTED:
        return _ACCEPTED[kind]
    if kind in _BOUNDS:
        key, op = _BOUNDS[kind]
        bound = (err.get("ctx") or {}).get(key)
        what = "a whole number" if _is_int_field(field) else "a number"
        return f"out of range: must be {what} {op} {bound}"
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(field, GalileoSettings.model_fields, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"not a galileo-otel setting{hint}"
    return str(err["msg"]).removeprefix("Value error, ")


def _is_int_field(field: str) -> bool:
    info = GalileoSettings.model_fields.get(field)
    return info is not None and info.annotation is int


_NOT_MILLISECONDS = "not a duration in milliseconds: use a whole number >= 0, e.g. 5000"


def _describe(exc: pydantic.ValidationError, init_keys: set[str]) -> str:
    """Turn pydantic's errors into one line per bad setting, hiding secret values."""
    lines = []
    for err in exc.errors(include_url=False, include_input=True):
        field = str(err["loc"][0]) if err["loc"] else "?"
        where = _source_of(field, init_keys)
        msg = _message(err, field)
        otel_name, factor = _OTEL_FALLBACKS.get(field, ("", None))
        if factor is not None and where == otel_name:
            # OTel's batch variables are milliseconds: say so, and show what the user wrote
            # (not the value after our conversion to seconds).
            lines.append(f"{where}={os.environ.get(where)!r}: {_NOT_MILLISECONDS}")
        elif field in GalileoSettings._secret_fields or field not in GalileoSettings.model_fields:
            lines.append(f"{where}: {msg}")
        elif field == "session_store" and isinstance(err.get("input"), str):
            lines.append(f"{where}={_redact_password(err['input'])!r}: {msg}")
        else:
            lines.append(f"{where}={err.get('input')!r}: {msg}")
    return "invalid galileo-otel configuration: " + "; ".join(lines)


# --- unknown GALILEO_* env vars ----------------------------------------------------------------

# GALILEO_* names read outside GalileoSettings (the export worker's private hand-off).
_OTHER_ENV_PREFIXES = ("GALILEO_OTEL_",)
# The official galileo SDK's variables (galileo 2.7 and galileo-core 4.5: GalileoConfig's fields
# under its GALILEO_ prefix and the names it reads with getenv). An app may use both packages,
# so these are someone's settings, not misspellings of ours.
OFFICIAL_SDK_ENV_VARS = frozenset(
    {
        "GALILEO_CODE_VALIDATION_BACKOFF_MULTIPLIER",
        "GALILEO_CODE_VALIDATION_INITIAL_DELAY",
        "GALILEO_CODE_VALIDATION_MAX_DELAY",
        "GALILEO_CODE_VALIDATION_TIMEOUT",
        "GALILEO_CONFIG_FILENAME",
        "GALILEO_CURRENT_USER",
        "GALILEO_DEFAULT_SCORER_JUDGES",
        "GALILEO_DEFAULT_SCORER_MODEL",
        "GALILEO_HEADER_PREFIX",
        "GALILEO_HOME_DIR",
        "GALILEO_INGEST_BETA_DISABLED",
        "GALILEO_JWT_TOKEN",
        "GALILEO_LOG_LEVEL",
        "GALILEO_MODE",
        "GALILEO_PASSWORD",
        "GALILEO_PROJECT_NAME",
        "GALILEO_REFRESH_TOKEN",
        "GALILEO_SSL_CONTEXT",
        "GALILEO_SSO_ID_TOKEN",
        "GALILEO_SSO_PROVIDER",
        "GALILEO_STAGE_ID",
        "GALILEO_STAGE_NAME",
        "GALILEO_STAGE_VERSION",
        "GALILEO_USERNAME",
    }
)
_warned_lock = threading.Lock()  # guards _warned_env
_warned_env: set[str] = set()


def known_env_vars() -> frozenset[str]:
    """Every ``GALILEO_*`` env var galileo-otel reads as a setting."""
    return frozenset(f"GALILEO_{name.upper()}" for name in GalileoSettings.model_fields)


def unknown_env_vars(environ: Any = None) -> list[tuple[str, str]]:
    """``GALILEO_*`` env vars that are not settings but look like a misspelt one.

    Args:
        environ: The environment to read (default ``os.environ``).

    Returns:
        ``(name, closest setting env var)`` pairs, sorted by name. A ``GALILEO_*`` variable
        close to none of ours (another tool's) is not listed, nor one the official ``galileo``
        SDK reads (:data:`OFFICIAL_SDK_ENV_VARS`).
    """
    env = os.environ if environ is None else environ
    known = known_env_vars()
    found = []
    for name in env:
        upper = name.upper()
        if not upper.startswith("GALILEO_") or upper in known:
            continue
        if upper.startswith(_OTHER_ENV_PREFIXES) or upper in OFFICIAL_SDK_ENV_VARS:
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.8)
        if close:
            found.append((name, close[0]))
    return sorted(found)


def _warn_unknown_env() -> None:
    """Log a did-you-mean warning once per misspelt ``GALILEO_*`` variable."""
    for name, suggestion in unknown_env_vars():
        with _warned_lock:
            if name in _warned_env:
                continue
            _warned_env.add(name)
        _log.warning(
            "galileo-otel: %s is not a galileo-otel setting and is ignored; did you mean %s?",
            name,
            suggestion,
        )
