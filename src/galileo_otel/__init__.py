"""galileo-otel: OpenTelemetry traces grouped into conversational sessions, delivered to Galileo.

The public face is what ``__all__`` lists; every other module may change without notice.
"""

from galileo_otel._version import __version__
from galileo_otel.api.client import AsyncGalileoClient, GalileoClient
from galileo_otel.configure import GalileoHandle, configure
from galileo_otel.errors import (
    APIError,
    AuthError,
    ConfigError,
    GalileoError,
    NotFoundError,
    RateLimitError,
    TransportError,
    ValidationError,
)
from galileo_otel.exporter import GalileoSpanExporter
from galileo_otel.lifecycle import aforce_flush, force_flush
from galileo_otel.processor import GalileoSessionProcessor
from galileo_otel.serverless import serverless_handler
from galileo_otel.sessions.context import current_session, session
from galileo_otel.settings import GalileoSettings

__all__ = [
    "APIError",
    "AsyncGalileoClient",
    "AuthError",
    "ConfigError",
    "GalileoClient",
    "GalileoError",
    "GalileoHandle",
    "GalileoSessionProcessor",
    "GalileoSettings",
    "GalileoSpanExporter",
    "NotFoundError",
    "RateLimitError",
    "TransportError",
    "ValidationError",
    "__version__",
    "aforce_flush",
    "configure",
    "current_session",
    "force_flush",
    "serverless_handler",
    "session",
]
