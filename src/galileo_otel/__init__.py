"""galileo-otel: OpenTelemetry traces grouped into conversational sessions, delivered to Galileo."""

from galileo_otel._version import __version__
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
from galileo_otel.settings import GalileoSettings

__all__ = [
    "APIError",
    "AuthError",
    "ConfigError",
    "GalileoError",
    "GalileoSettings",
    "NotFoundError",
    "RateLimitError",
    "TransportError",
    "ValidationError",
    "__version__",
]
