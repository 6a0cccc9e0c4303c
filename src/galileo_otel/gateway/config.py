"""The gateway's own settings (``GALILEO_GATEWAY_*``); where traces go is ``GalileoSettings``."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["GatewaySettings"]


class GatewaySettings(BaseSettings):
    """How the gateway takes OTLP in: inbound key, state directory, bounds.

    Where traces go (API URL and key, project, log stream, reliable, spool, session store) is
    the ordinary :class:`~galileo_otel.settings.GalileoSettings` (``GALILEO_*``).
    """

    model_config = SettingsConfigDict(
        env_prefix="GALILEO_GATEWAY_",
        case_sensitive=False,
        env_ignore_empty=True,
        extra="forbid",
        validate_default=True,
    )

    key: SecretStr | None = Field(
        None,
        description="GALILEO_GATEWAY_KEY: the key OTLP clients must send (Galileo-API-Key or Authorization: Bearer); required to listen beyond loopback.",
    )
    dir: str | None = Field(
        None,
        description="GALILEO_GATEWAY_DIR: state directory (write-ahead log; default session store); default <user cache>/galileo-otel/gateway.",
    )
    wal_max_bytes: int = Field(
        256 * 1024 * 1024,
        ge=0,
        description="GALILEO_GATEWAY_WAL_MAX_BYTES: disk cap of the write-ahead log; when full, requests are answered 503 with Retry-After (0: no cap).",
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        description="GALILEO_GATEWAY_MAX_BODY_BYTES: largest request body, before and after gzip; more is answered 413.",
    )
    retry_after: float = Field(
        5.0,
        gt=0,
        description="GALILEO_GATEWAY_RETRY_AFTER: seconds sent in Retry-After with 429/503.",
    )
    checkpoint_interval: float = Field(
        1.0,
        gt=0,
        description="GALILEO_GATEWAY_CHECKPOINT_INTERVAL: seconds between attempts to delete write-ahead rows the pipeline made durable.",
    )
    flush_timeout: float = Field(
        5.0,
        gt=0,
        description="GALILEO_GATEWAY_FLUSH_TIMEOUT: longest wait of one checkpoint for the pipeline's confirmation.",
    )
    shutdown_timeout: float = Field(
        10.0,
        gt=0,
        description="GALILEO_GATEWAY_SHUTDOWN_TIMEOUT: bound of the stop after SIGTERM (pipeline flush included).",
    )
    max_destinations: int = Field(
        64,
        ge=1,
        description="GALILEO_GATEWAY_MAX_DESTINATIONS: distinct project / log stream / experiment targets served at once.",
    )

    def state_dir(self) -> Path:
        """The state directory (not created here)."""
        if self.dir:
            return Path(self.dir).expanduser()
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(base) / "galileo-otel" / "gateway"
