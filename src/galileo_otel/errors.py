"""The exception tree of galileo-otel: every error the package raises is one of these.

::

    GalileoError
    ├── ConfigError            (also a ValueError) bad setting: names the argument or env var
    └── APIError               .status_code, .retryable, .retry_after, .detail
        ├── AuthError          401 / 403: missing or wrong API key
        ├── NotFoundError      404: unknown project, log stream or session
        ├── RateLimitError     429: retryable, honours Retry-After
        ├── ValidationError    422: .detail is the server's FastAPI ``detail`` list
        └── TransportError     no HTTP answer: connection refused, timeout, broken stream
            └── APITimeoutError    the answer did not come in time (connect, read, write, pool)

No httpx exception leaks out of the package: the client maps them here with ``raise ... from``.
Messages never contain the API key.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIError",
    "APITimeoutError",
    "AuthError",
    "ConfigError",
    "GalileoError",
    "NotFoundError",
    "RateLimitError",
    "TransportError",
    "ValidationError",
]


class GalileoError(Exception):
    """Base class of every error raised by galileo-otel."""


class ConfigError(GalileoError, ValueError):
    """A setting is missing or invalid; the message names the argument or env var."""


class APIError(GalileoError):
    """The Galileo API answered with an error, or could not be reached.

    Attributes:
        status_code: The HTTP status, or ``None`` when no answer arrived.
        retryable: Whether sending the same request again may succeed.
        retry_after: Seconds the server asked us to wait (``Retry-After``), if any.
        detail: The server's error detail (a string, or FastAPI's list of errors).
        method: The HTTP method of the failed request.
        url: The URL of the failed request (never carries the API key).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        detail: Any = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retryable = retryable
        self.retry_after = retry_after
        self.detail = detail
        self.method = method
        self.url = url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status_code={self.status_code!r})"


class AuthError(APIError):
    """401 or 403: the API key is missing, wrong, or lacks access."""


class NotFoundError(APIError):
    """404: the project, log stream or session does not exist."""


class RateLimitError(APIError):
    """429: too many requests; ``retry_after`` says how long the server asked us to wait."""


class ValidationError(APIError):
    """422: the server rejected the request body; ``detail`` is FastAPI's list of errors."""


class TransportError(APIError):
    """No HTTP answer: connection refused or reset, DNS failure, or a timeout."""


class APITimeoutError(TransportError):
    """No answer in time: a connect, read, write or pool timeout (told apart by type)."""
