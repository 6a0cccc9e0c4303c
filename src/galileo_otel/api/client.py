"""GalileoClient and AsyncGalileoClient: the Galileo REST API over httpx, with auth, retries and errors.

Every method raises only :mod:`galileo_otel.errors` types; the API key never leaves its header.
"""

from __future__ import annotations

import asyncio
import email.utils
import http.cookiejar
import json as jsonlib
import logging
import platform
import random
import re
import time
import urllib.request
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import httpx
import pydantic

from galileo_otel._version import __version__
from galileo_otel.api.filters import FilterInput, to_filter_list, to_filter_tree
from galileo_otel.api.models import (
    LoggingMethod,
    LogRecordsQueryCountRequest,
    LogRecordsQueryCountResponse,
    LogRecordsQueryRequest,
    LogRecordsQueryResponse,
    LogStream,
    LogStreamCreateRequest,
    LogTracesIngestRequest,
    LogTracesIngestResponse,
    Project,
    ProjectCreateRequest,
    QuerySort,
    SessionCreateRequest,
    SessionCreateResponse,
    Trace,
    to_wire,
)
from galileo_otel.api.retry import DEFAULT_RETRY, Failure, RetryPolicy, aretry_loop, retry_loop
from galileo_otel.api.suppress import suppress_instrumentation
from galileo_otel.errors import (
    APIError,
    APITimeoutError,
    AuthError,
    ConfigError,
    GalileoError,
    NotFoundError,
    RateLimitError,
    TransportError,
    ValidationError,
)
from galileo_otel.settings import GalileoSettings, merge_settings

__all__ = [
    "DEFAULT_LOG_STREAM",
    "AsyncGalileoClient",
    "Destination",
    "GalileoClient",
    "RetryPolicy",
    "parse_retry_after",
]

logger = logging.getLogger("galileo_otel.api")
# httpx's own logger: the requests sent straight to the transport log what httpx.Client would.
_httpx_log = logging.getLogger("httpx")

DEFAULT_LOG_STREAM = "default"
"""The log stream used when neither a log stream nor an experiment is configured (as the SDK does)."""

_API_KEY_HEADER = "Galileo-API-Key"
_RETRYABLE_STATUS = frozenset({408, 429})
_MAX_MESSAGE_CHARS = 500
_MAX_PAGES = 100_000  # a server that never stops paginating must not loop us forever

T = TypeVar("T")

# Everything httpx raises on its own; InvalidURL and StreamError are not HTTPError subclasses.
_PARSED_URLS_MAX = 256
_ENVELOPES_MAX = 1024
_HTTPX_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError)


# ------------------------------------------------------------------------------------------------
# Retry policy
# ------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------
# Destination
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    """Where traces go: a project and a log stream (or an experiment), as ids.

    Attributes:
        project_id: The project id.
        project_name: The project name, when it was looked up by name.
        log_stream_id: The log stream id, unless logging to an experiment.
        experiment_id: The experiment id, when logging to an experiment.
        log_stream_name: The log stream name, when it was looked up by name.
    """

    project_id: str
    project_name: str | None = None
    log_stream_id: str | None = None
    experiment_id: str | None = None
    log_stream_name: str | None = None


# ------------------------------------------------------------------------------------------------
# Sans-IO core
# ------------------------------------------------------------------------------------------------


# The high-level methods are written once, as generators that yield the HTTP requests they need
# (_Req) and receive the parsed answers; the sync and async clients only differ in how they send
# a request and how they sleep, so both follow exactly the same rules.


@dataclass(frozen=True)
class _Req:
    """One HTTP request an operation needs; the driver sends it and returns the parsed JSON."""

    method: str
    path: str
    json: Any = None
    params: Mapping[str, str] | None = None
    retry: RetryPolicy | None = None
    require_key: bool = True


_Op = Generator[_Req, Any, T]


@dataclass
class _Parsed:
    """A successful attempt's parsed answer (``None`` is an answer too, so it is wrapped)."""

    value: Any


@dataclass(frozen=True, slots=True)
class _Call:
    """One ``request_json`` call: what each of its attempts sends, and how it is retried."""

    method: str
    url: str
    body: bytes | _Spliced | None
    params: Mapping[str, str] | None
    timeout: float | None
    policy: RetryPolicy
    start: float


class _Spliced(httpx.SyncByteStream):
    """A request body sent as its parts, in order, without joining them into one copy.

    The Log Traces body is the encoded traces (the large part, as the spool holds it) between a
    short head and the envelope's tail. Handed to the transport as these parts, the traces go to
    the socket as they are, instead of being copied once more into a joined body; the bytes on
    the wire, ``Content-Length`` included, are those of the joined body. Iterable again for
    each attempt of a call.
    """

    __slots__ = ("length", "parts")

    def __init__(self, parts: tuple[bytes, ...]) -> None:
        self.parts = parts
        self.length = sum(len(part) for part in parts)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.parts)


def _keep_no_cookies(http_client: httpx.Client | httpx.AsyncClient) -> None:
    """Make the client's cookie jar keep nothing, so the client never sends a cookie.

    The API is stateless: not even a cookie a server or a load balancer in front of it set is
    sent back. Set on the client's own jar (httpx copies a jar handed to it, without its policy).
    """
    http_client.cookies.jar.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


def _encode(body: Any) -> bytes:
    try:
        return jsonlib.dumps(
            body, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"request body is not JSON-serialisable: {exc}") from None


def _id(value: Any) -> str | None:
    return None if value is None else str(value)


def _summarise_detail(detail: Any) -> str:
    """FastAPI's 422 detail list as one readable line."""
    if isinstance(detail, list):
        parts = []
        for item in detail[:5]:
            if isinstance(item, Mapping):
                loc = ".".join(str(p) for p in item.get("loc", ()))
                parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
            else:
                parts.append(str(item))
        more = f" (+{len(detail) - 5} more)" if len(detail) > 5 else ""
        return "; ".join(parts) + more
    return str(detail)


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _not_json(response: httpx.Response) -> str:
    """One line about an answer that is not JSON: an HTML page (its title) or a text excerpt.

    A URL that answers with a web page is not the Galileo API (a console URL, a proxy's login
    page...): say so, rather than pasting the page into an error or a warning.
    """
    text = response.text
    is_html = "html" in response.headers.get("content-type", "") or text.lstrip()[:1] == "<"
    if not is_html:
        return " ".join(text.split())[:_MAX_MESSAGE_CHARS]
    match = _TITLE.search(text)
    title = " ".join(match[1].split())[:80] if match else ""
    page = f"an HTML page ({title!r})" if title else "an HTML page"
    if response.status_code >= 500:
        return page  # a proxy's error page in front of the API: the API may be fine
    return (
        f"{page}, not the Galileo API: is GALILEO_API_URL the API URL "
        "(e.g. https://api.galileo.ai), not the console URL?"
    )


def _server_message(response: httpx.Response) -> tuple[str, Any]:
    """The server's own words about an error, and its ``detail`` (parsed JSON when possible)."""
    try:
        body = response.json()
    except ValueError:
        line = _not_json(response)
        return line, line or None
    if isinstance(body, Mapping):
        for key in ("detail", "message", "error", "error_message"):
            if key in body and body[key] not in (None, ""):
                return _summarise_detail(body[key])[:_MAX_MESSAGE_CHARS], body[key]
    return jsonlib.dumps(body)[:_MAX_MESSAGE_CHARS], body


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    Args:
        value: The header value, or ``None``.
        now: The current wall-clock time (seconds since the epoch), for HTTP dates.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:  # pragma: no cover - older Pythons returned None instead of raising
            return None
        seconds = when.timestamp() - now
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


class _Core:
    """Configuration, headers, error mapping and the operations shared by both clients."""

    def __init__(
        self,
        *,
        settings: GalileoSettings | None,
        api_key: str | None,
        api_url: str | None,
        project: str | None,
        project_id: str | None,
        log_stream: str | None,
        log_stream_id: str | None,
        experiment_id: str | None,
        reliable: bool | None,
        timeout: float | httpx.Timeout | None,
        retry: RetryPolicy | None,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        rand: Callable[[], float],
        logging_method: str | LoggingMethod,
        client_version: str | None,
    ) -> None:
        overrides = {
            "api_key": api_key,
            "api_url": api_url,
            "project": project,
            "project_id": project_id,
            "log_stream": log_stream,
            "log_stream_id": log_stream_id,
            "experiment_id": experiment_id,
            "reliable": reliable,
        }
        overrides = {k: v for k, v in overrides.items() if v is not None}
        # A name given here beats an id from the environment (an id given here beats both).
        if project is not None and project_id is None:
            overrides["project_id"] = None
        if log_stream is not None and log_stream_id is None and experiment_id is None:
            overrides["log_stream_id"] = None
            overrides["experiment_id"] = None
        # The package's one merge: a bad argument fails the way a bad env var does.
        settings = merge_settings(settings, overrides)
        self.settings = settings
        self.base_url = settings.resolved_api_url()
        self.project_id = settings.project_id
        self.log_stream_id = settings.log_stream_id
        self.experiment_id = settings.experiment_id
        # Destinations resolved from names, by the per-call project id they were resolved for
        # (None: the client's own project). Filled lazily, once, or by resolve_destination().
        # No lock: a dict store is atomic, and two threads resolving at once store the same
        # answer (a create race is settled by the 409 re-lookup in _op_resolve).
        self._destinations: dict[str | None, Destination] = {}
        self.reliable = settings.reliable
        try:
            self.logging_method = LoggingMethod(logging_method).value
        except ValueError:
            allowed = ", ".join(m.value for m in LoggingMethod)
            raise ConfigError(f"logging_method must be one of: {allowed}") from None
        self.client_version = client_version
        self.retry = retry or DEFAULT_RETRY
        if timeout is None:
            self.timeout = httpx.Timeout(
                settings.read_timeout,
                connect=settings.connect_timeout,
                pool=settings.connect_timeout,
            )
        elif isinstance(timeout, httpx.Timeout):
            self.timeout = timeout
        else:
            self.timeout = httpx.Timeout(float(timeout))
        self._clock = clock
        self._wall_clock = wall_clock
        self._rand = rand
        self._api_key = settings.api_key.get_secret_value() if settings.api_key else None
        self._base_headers = {
            "User-Agent": (
                f"galileo-otel/{__version__} python/{platform.python_version()} "
                f"httpx/{httpx.__version__}"
            ),
            "Accept": "application/json",
            **settings.extra_headers,
        }
        lowered = {k.lower() for k in settings.extra_headers}
        # A key or token set through GALILEO_EXTRA_HEADERS counts as credentials too.
        self._has_credentials = bool(self._api_key) or bool(
            {_API_KEY_HEADER.lower(), "authorization"} & lowered
        )
        # HTTP headers are ASCII: fail here, naming the setting, not inside httpx on first use.
        for name, value in settings.extra_headers.items():
            if not (name.isascii() and value.isascii()):
                raise ConfigError(f"GALILEO_EXTRA_HEADERS: header {name!r} is not plain ASCII")
        if self._api_key is not None and not self._api_key.isascii():
            raise ConfigError("GALILEO_API_KEY: the API key is not plain ASCII")
        # The request headers are constant per client: built (and encoded) once, so a send
        # copies a prebuilt header list instead of re-encoding a dict each time.
        fixed = dict(self._base_headers)
        if self._api_key:
            fixed[_API_KEY_HEADER] = self._api_key
        self._plain_headers = httpx.Headers(fixed)
        self._body_headers = httpx.Headers({**fixed, "Content-Type": "application/json"})
        # Parsed request URLs by absolute URL text (the Log Traces path of each project, the
        # few lookup paths); bounded, as paths carry ids. Guarded by the GIL (a lost insert
        # only costs a re-parse).
        self._parsed_urls: dict[str, httpx.URL] = {}
        # The encoded Log Traces envelope (all but the traces) by session and destination: a
        # batch's is the same as the last one of its session. Bounded; guarded by the GIL
        # like _parsed_urls.
        self._envelopes: dict[tuple[Any, ...], bytes] = {}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(api_url={self.base_url!r}, project_id={self.project_id!r}, "
            f"log_stream_id={self.log_stream_id!r}, reliable={self.reliable!r}, "
            f"api_key={'***' if self._api_key else None})"
        )

    # --- request plumbing ------------------------------------------------------------------------

    def _check_key(self, require_key: bool) -> None:
        if require_key and not self._has_credentials:
            raise ConfigError(
                "no Galileo API key: set GALILEO_API_KEY or pass api_key= "
                "(the local server `galileo-otel serve` needs one too)"
            )

    def _merge_client_headers(self, client_headers: httpx.Headers) -> None:
        """The request headers as httpx merges them (its defaults, then ours), merged once.

        ``Client.build_request`` merges the client's default headers (``Accept-Encoding``,
        ``Connection``...) with a request's on every call; the result is the same for every
        request of this client, so :meth:`_build` starts from these.
        """
        merged = []
        for ours in (self._plain_headers, self._body_headers):
            headers = httpx.Headers(client_headers)
            headers.update(ours)
            merged.append(headers)
        self._wire_plain, self._wire_body = merged

    def _build(
        self,
        http: httpx.Client | httpx.AsyncClient,
        method: str,
        url: str,
        body: bytes | _Spliced | None,
        params: Mapping[str, str] | None,
        timeout: httpx.Timeout,
    ) -> httpx.Request:
        """The request ``http.build_request`` would build, from the prebuilt URL and headers.

        What ``build_request`` adds per call is constant for this client (its default headers,
        no base URL to merge into an absolute one), except query parameters and cookies: a
        request with parameters goes through ``build_request`` itself, and so would one from a
        jar holding a cookie (it keeps none, see :func:`_keep_no_cookies`), so the wire is the
        same either way. A spliced body goes as its parts, under the headers ``content=`` would
        have given the joined body (``Host`` first, ``Content-Length`` last).
        """
        if isinstance(body, _Spliced):
            if params or http.cookies:
                body = b"".join(body.parts)
            else:
                parsed = self._parsed_url(url)
                headers = [(b"Host", parsed.netloc), *self._wire_body.raw]
                headers.append((b"Content-Length", str(body.length).encode("ascii")))
                return httpx.Request(
                    method,
                    parsed,
                    headers=headers,
                    stream=body,
                    extensions={"timeout": timeout.as_dict()},
                )
        if params or http.cookies:
            return http.build_request(
                method,
                self._parsed_url(url),
                content=body,
                params=params,
                headers=self._body_headers if body is not None else self._plain_headers,
                timeout=timeout,
            )
        return httpx.Request(
            method,
            self._parsed_url(url),
            content=body,
            headers=self._wire_body if body is not None else self._wire_plain,
            extensions={"timeout": timeout.as_dict()},
        )

    # The one request loop of both clients: request_json opens a call, then each attempt sends
    # _next_request(...) its own way (sent or awaited) and classifies the answer with
    # _outcome(...); the retry loop (slept or awaited) runs the attempts and _result(...) ends it.

    def _open_call(
        self,
        method: str,
        path: str,
        json: Any,
        content: bytes | _Spliced | None,
        params: Mapping[str, str] | None,
        retry: RetryPolicy | None,
        timeout: float | None,
        require_key: bool,
    ) -> _Call:
        """A call's body, URL and policy, its key checked and its deadline's clock started."""
        body = content if content is not None else (None if json is None else _encode(json))
        self._check_key(require_key)
        return _Call(
            method, self._url(path), body, params, timeout, retry or self.retry, self._clock()
        )

    def _next_request(self, http: httpx.Client | httpx.AsyncClient, call: _Call) -> httpx.Request:
        """The request of the call's next attempt, its timeout capped by the call's deadline."""
        return self._build(
            http,
            call.method,
            call.url,
            call.body,
            call.params,
            self._attempt_timeout(call.timeout, call.policy, call.start),
        )

    def _outcome(self, call: _Call, response: httpx.Response) -> _Parsed | Failure:
        """An attempt's answer: parsed on success, else the failure its status says."""
        if response.is_success:
            return _Parsed(self._parse_success(response, call.method, call.url))
        return self._status_failure(response, call.method, call.url)

    @staticmethod
    def _result(result: _Parsed | Failure) -> Any:
        """The call's parsed answer, or its last failure raised."""
        if isinstance(result, Failure):
            raise result.error from result.cause
        return result.value

    def _redact(self, text: str) -> str:
        # A server may echo what it was sent; the key must not reach a message or log line.
        if self._api_key and self._api_key in text:
            text = text.replace(self._api_key, "***")
        return text

    def _redact_any(self, value: Any) -> Any:
        if not self._api_key:
            return value
        if isinstance(value, str):
            return self._redact(value)
        if isinstance(value, list):
            return [self._redact_any(v) for v in value]
        if isinstance(value, dict):
            return {k: self._redact_any(v) for k, v in value.items()}
        return value

    def _attempt_timeout(
        self, timeout: float | None, policy: RetryPolicy, start: float
    ) -> httpx.Timeout:
        base = httpx.Timeout(timeout) if timeout is not None else self.timeout
        if policy.deadline_s is None:
            return base
        # No single attempt may outlive the request's deadline.
        remaining = max(0.001, policy.deadline_s - (self._clock() - start))

        def cap(value: float | None) -> float:
            return remaining if value is None else min(value, remaining)

        return httpx.Timeout(
            connect=cap(base.connect),
            read=cap(base.read),
            write=cap(base.write),
            pool=cap(base.pool),
        )

    def _transport_failure(self, exc: Exception, method: str, url: str) -> Failure:
        never_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
        transient = isinstance(
            exc,
            (
                httpx.TimeoutException,
                httpx.NetworkError,
                httpx.RemoteProtocolError,
            ),
        )
        kind = type(exc).__name__
        reason = self._redact(str(exc)) or kind
        timed_out = isinstance(exc, httpx.TimeoutException)
        cls = APITimeoutError if timed_out else TransportError
        return Failure(
            cls(
                f"{method} {url} {'timed out' if timed_out else 'failed'}: {kind}: {reason}",
                retryable=transient,
                method=method,
                url=url,
            ),
            never_sent=never_sent,
            cause=exc,
        )

    def _status_failure(self, response: httpx.Response, method: str, url: str) -> Failure:
        status = response.status_code
        message, detail = _server_message(response)
        message = self._redact(message)
        detail = self._redact_any(detail)
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=self._wall_clock())
        retryable = status in _RETRYABLE_STATUS or status >= 500
        text = f"{method} {url} failed: HTTP {status} {response.reason_phrase}"
        if message:
            text += f": {message}"
        cls: type[APIError]
        if status in (401, 403):
            cls = AuthError
            if status == 401:
                text += " (check GALILEO_API_KEY)"
        elif status == 404:
            cls = NotFoundError
        elif status == 422:
            cls = ValidationError
        elif status == 429:
            cls = RateLimitError
        else:
            cls = APIError
        error = cls(
            text,
            status_code=status,
            retryable=retryable,
            retry_after=retry_after,
            detail=detail,
            method=method,
            url=url,
        )
        return Failure(error)

    def _parse_success(self, response: httpx.Response, method: str, url: str) -> Any:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise APIError(
                f"{method} {url}: HTTP {response.status_code} answer is not JSON: "
                f"{self._redact(_not_json(response))}",
                status_code=response.status_code,
                method=method,
                url=url,
            ) from None

    def _log_retry(self, policy: RetryPolicy) -> Callable[[Failure, float, int], None]:
        def log(failure: Failure, delay: float, attempt: int) -> None:
            logger.info(
                "retrying in %.2fs (attempt %d of %d): %s",
                delay,
                attempt + 1,
                policy.max_attempts,
                failure.error.message,
            )

        return log

    def _url(self, path: str) -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def _parsed_url(self, url: str) -> httpx.URL:
        # httpx parses and validates a text URL on every request; parse each one once.
        # Called inside the attempt, so a malformed URL still fails as a transport failure.
        parsed = self._parsed_urls.get(url)
        if parsed is None:
            if len(self._parsed_urls) >= _PARSED_URLS_MAX:
                self._parsed_urls.clear()
            parsed = self._parsed_urls[url] = httpx.URL(url)
        return parsed

    # --- defaults --------------------------------------------------------------------------------

    def _project(self, project_id: Any) -> str:
        pid = _id(project_id) or self.project_id
        if not pid:
            raise ConfigError(
                "no project: set GALILEO_PROJECT (a name) or GALILEO_PROJECT_ID, "
                "or pass project= / project_id= to the client or project_id= to the call"
            )
        try:
            # It goes into the URL path: only a UUID may.
            return str(uuid.UUID(pid))
        except ValueError:
            raise ConfigError(f"project_id {pid!r} is not a UUID") from None

    def _names_to_resolve(self) -> bool:
        """Whether the client's project or log stream is known only by name."""
        s = self.settings
        by_name_project = not self.project_id and bool(s.project)
        by_name_stream = not self.log_stream_id and not self.experiment_id and bool(s.log_stream)
        return by_name_project or by_name_stream

    def _remember(self, dest: Destination, key: str | None) -> None:
        self._destinations[key] = dest
        self._destinations.setdefault(dest.project_id, dest)

    def _op_where(
        self, project_id: Any, log_stream_id: Any, experiment_id: Any, *, create: bool
    ) -> _Op[tuple[str, str | None, str | None]]:
        """The project, log stream and experiment of a call: per-call ids win, then the client's.

        Names (``GALILEO_PROJECT``, ``GALILEO_LOG_STREAM``, ``project=``, ``log_stream=``) are
        resolved on first need, as configure() does, and remembered. ``create`` says whether
        that may create what is missing (writes, when ``create_missing`` is on) or only look it
        up (reads).
        """
        if log_stream_id is not None or experiment_id is not None:
            pid = yield from self._op_project_id(project_id)
            lsid, eid = self._target(log_stream_id, experiment_id)
            return pid, lsid, eid
        key = _id(project_id)
        dest = self._destinations.get(key)
        if dest is None and self._names_to_resolve():
            # With a per-call project id, the client's log stream name is resolved in it.
            dest = yield from self._op_resolve(
                None, key, None, None, None, create and self.settings.create_missing
            )
            self._remember(dest, key)
        if dest is None:
            lsid, eid = self._target(None, None)
            return self._project(key), lsid, eid
        return dest.project_id, dest.log_stream_id, dest.experiment_id

    def _op_project_id(self, project_id: Any) -> _Op[str]:
        """The project of a call that needs no log stream: a per-call id, the client's id or name."""
        pid = _id(project_id)
        if pid is None and not self.project_id:
            dest = self._destinations.get(None)
            if dest is not None:
                return dest.project_id
            name = self.settings.project
            if name:
                found = yield from self._op_get_project(name)
                if found is None:
                    raise NotFoundError(
                        f"project {name!r} does not exist (GALILEO_PROJECT / project=)",
                        status_code=404,
                    )
                return str(found.id)
        return self._project(pid)

    def _target(self, log_stream_id: Any, experiment_id: Any) -> tuple[str | None, str | None]:
        """The log stream / experiment of a request: explicit ones win, else the client's."""
        if log_stream_id is not None or experiment_id is not None:
            return _id(log_stream_id), _id(experiment_id)
        if self.experiment_id:
            return None, self.experiment_id
        return self.log_stream_id, None

    def _validated(self, model: type[pydantic.BaseModel], data: dict[str, Any], what: str) -> Any:
        try:
            return model.model_validate(data)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg'].removeprefix('Value error, ')}"
                for err in exc.errors(include_url=False)[:5]
            )
            raise ConfigError(f"invalid {what}: {problems}") from None

    def _answer(self, model: type[pydantic.BaseModel], data: Any, what: str) -> Any:
        try:
            return model.model_validate(data)
        except pydantic.ValidationError as exc:
            raise APIError(
                f"unexpected {what} answer from {self.base_url}: "
                f"{exc.error_count()} problem(s), first: {exc.errors(include_url=False)[0]['msg']}"
            ) from None

    # --- operations (sans-IO) --------------------------------------------------------------------

    def _op_healthcheck(self) -> _Op[bool]:
        try:
            yield _Req("GET", "/healthcheck", retry=RetryPolicy.none(), require_key=False)
        except APIError:
            return False
        return True

    def _op_get_project(self, name: str) -> _Op[Project | None]:
        data = yield _Req("GET", "/projects", params={"project_name": name, "type": "gen_ai"})
        if isinstance(data, Mapping):
            data = data.get("projects", data.get("items", []))
        if not isinstance(data, list):
            raise APIError(f"unexpected GET /projects answer from {self.base_url}: not a list")
        for item in data:
            project: Project = self._answer(Project, item, "GET /projects")
            # The lookup may match loosely; only an exact name is this project.
            if project.name == name:
                return project
        return None

    def _op_create_project(self, name: str) -> _Op[Project]:
        body = to_wire(self._validated(ProjectCreateRequest, {"name": name}, "project"))
        data = yield _Req("POST", "/projects", json=body)
        project: Project = self._answer(Project, data, "POST /projects")
        return project

    def _op_list_log_streams(self, project_id: Any) -> _Op[list[LogStream]]:
        pid = yield from self._op_project_id(project_id)
        data = yield _Req("GET", f"/v2/projects/{pid}/log_streams")
        if isinstance(data, Mapping):
            data = data.get("log_streams", data.get("items", []))
        if not isinstance(data, list):
            raise APIError(f"unexpected GET log_streams answer from {self.base_url}: not a list")
        return [self._answer(LogStream, item, "GET log_streams") for item in data]

    def _op_create_log_stream(self, project_id: Any, name: str) -> _Op[LogStream]:
        pid = yield from self._op_project_id(project_id)
        body = to_wire(self._validated(LogStreamCreateRequest, {"name": name}, "log stream"))
        data = yield _Req("POST", f"/v2/projects/{pid}/log_streams", json=body)
        stream: LogStream = self._answer(LogStream, data, "POST log_streams")
        return stream

    def _op_resolve(
        self,
        project: str | None,
        project_id: Any,
        log_stream: str | None,
        log_stream_id: Any,
        experiment_id: Any,
        create: bool,
    ) -> _Op[Destination]:
        s = self.settings
        # An id wins over a name; arguments win over settings.
        pid = _id(project_id)
        if pid is None and not project:
            pid, project = (s.project_id, None) if s.project_id else (None, s.project)
        lsid = _id(log_stream_id)
        if lsid is None and not log_stream:
            lsid, log_stream = (s.log_stream_id, None) if s.log_stream_id else (None, s.log_stream)
        eid = _id(experiment_id)
        if eid is None and lsid is None and not log_stream:
            eid = s.experiment_id
        project_name: str | None = None

        if pid is None:
            if not project:
                raise ConfigError("no project: set GALILEO_PROJECT (a name) or GALILEO_PROJECT_ID")
            found = yield from self._op_get_project(project)
            if found is None:
                if not create:
                    raise NotFoundError(
                        f"project {project!r} does not exist and creation is off "
                        "(create=False); create it or set GALILEO_PROJECT_ID"
                    )
                found = yield from self._create_or_refind_project(project)
            pid, project_name = str(found.id), found.name
        else:
            pid = self._project(pid)

        # Listing the log streams also proves the project id exists (404 otherwise).
        try:
            streams = yield from self._op_list_log_streams(pid)
        except NotFoundError as exc:
            raise NotFoundError(
                f"project {pid} not found: {exc.message}",
                status_code=404,
                method=exc.method,
                url=exc.url,
            ) from None
        if eid is not None:
            return Destination(pid, project_name, None, eid)
        if lsid is not None:
            try:
                lsid = str(uuid.UUID(lsid))  # compare in canonical form
            except ValueError:
                raise ConfigError(f"log_stream_id {lsid!r} is not a UUID") from None
            if not any(str(st.id) == lsid for st in streams):
                raise NotFoundError(
                    f"log stream {lsid} not found in project {pid}", status_code=404
                )
            return Destination(pid, project_name, lsid, None)
        name = log_stream or DEFAULT_LOG_STREAM
        for st in streams:
            if st.name == name:
                return Destination(pid, project_name, str(st.id), None, st.name)
        if not create:
            raise NotFoundError(
                f"log stream {name!r} does not exist in project {pid} and creation is off "
                "(create=False); create it or set GALILEO_LOG_STREAM_ID"
            )
        try:
            created = yield from self._op_create_log_stream(pid, name)
        except APIError as exc:
            if exc.status_code != 409:
                raise
            # Another process created it first: use theirs.
            streams = yield from self._op_list_log_streams(pid)
            match = [st for st in streams if st.name == name]
            if not match:
                raise
            created = match[0]
        return Destination(pid, project_name, str(created.id), None, created.name)

    def _op_resolve_and_remember(
        self,
        project: str | None,
        project_id: Any,
        log_stream: str | None,
        log_stream_id: Any,
        experiment_id: Any,
        create: bool,
    ) -> _Op[Destination]:
        dest = yield from self._op_resolve(
            project, project_id, log_stream, log_stream_id, experiment_id, create
        )
        self._remember(dest, None)
        return dest

    def _create_or_refind_project(self, name: str) -> _Op[Project]:
        try:
            return (yield from self._op_create_project(name))
        except APIError as exc:
            if exc.status_code != 409:
                raise
            # Another process created it first: use theirs.
            found = yield from self._op_get_project(name)
            if found is None:
                raise
            return found

    def _logging_method(self, per_call: str | LoggingMethod | None) -> str:
        """The logging method of one request: ``per_call`` when given, else the client's."""
        if per_call is None:
            return self.logging_method
        try:
            return LoggingMethod(per_call).value
        except ValueError:
            allowed = ", ".join(m.value for m in LoggingMethod)
            raise ConfigError(f"logging_method must be one of: {allowed}") from None

    def _op_create_session(self, **kw: Any) -> _Op[SessionCreateResponse]:
        logging_method = self._logging_method(kw.pop("logging_method", None))
        pid, lsid, eid = yield from self._op_where(
            kw.pop("project_id"), kw.pop("log_stream_id"), kw.pop("experiment_id"), create=True
        )
        reliable = kw.pop("reliable")
        body = {
            **{k: v for k, v in kw.items() if v is not None},
            "log_stream_id": lsid,
            "experiment_id": eid,
            "logging_method": logging_method,
            "client_version": self.client_version,
            "reliable": self.reliable if reliable is None else reliable,
        }
        request = self._validated(SessionCreateRequest, body, "create_session arguments")
        data = yield _Req("POST", f"/v2/projects/{pid}/sessions", json=to_wire(request))
        response: SessionCreateResponse = self._answer(
            SessionCreateResponse, data, "Create Session"
        )
        return response

    def _query_body(
        self,
        filters: Any,
        filter_tree: Any,
        log_stream_id: Any,
        experiment_id: Any,
        metrics_testing_id: Any,
    ) -> dict[str, Any]:
        lsid, eid = self._target(log_stream_id, experiment_id)
        body: dict[str, Any] = {
            "log_stream_id": lsid,
            "experiment_id": eid,
            "metrics_testing_id": _id(metrics_testing_id),
        }
        if filters is not None:
            body["filters"] = to_filter_list(filters)
        if filter_tree is not None:
            body["filter_tree"] = to_filter_tree(filter_tree)
        return body

    def _op_count_sessions(self, project_id: Any, **kw: Any) -> _Op[int]:
        pid, lsid, eid = yield from self._op_where(
            project_id, kw.pop("log_stream_id"), kw.pop("experiment_id"), create=False
        )
        body = self._query_body(log_stream_id=lsid, experiment_id=eid, **kw)
        request = self._validated(LogRecordsQueryCountRequest, body, "count_sessions arguments")
        data = yield _Req("POST", f"/v2/projects/{pid}/sessions/count", json=to_wire(request))
        answer: LogRecordsQueryCountResponse = self._answer(
            LogRecordsQueryCountResponse, data, "Count Sessions"
        )
        return answer.total_count

    def _op_search_sessions(
        self,
        project_id: Any,
        starting_token: int,
        limit: int,
        sort: QuerySort | Mapping[str, Any] | str | None,
        **kw: Any,
    ) -> _Op[LogRecordsQueryResponse]:
        pid, lsid, eid = yield from self._op_where(
            project_id, kw.pop("log_stream_id"), kw.pop("experiment_id"), create=False
        )
        body = self._query_body(log_stream_id=lsid, experiment_id=eid, **kw)
        if isinstance(sort, str):
            sort = {"column_id": sort}  # a column name sorts ascending
        body.update(starting_token=starting_token, limit=limit, sort=sort)
        request = self._validated(LogRecordsQueryRequest, body, "search_sessions arguments")
        data = yield _Req("POST", f"/v2/projects/{pid}/sessions/search", json=to_wire(request))
        answer: LogRecordsQueryResponse = self._answer(
            LogRecordsQueryResponse, data, "Query Sessions"
        )
        return answer

    def _op_log_traces(
        self,
        traces: Sequence[Trace | Mapping[str, Any]],
        project_id: Any,
        reliable: bool | None,
        log_stream_id: Any,
        experiment_id: Any,
        **kw: Any,
    ) -> _Op[LogTracesIngestResponse]:
        pid, lsid, eid = yield from self._op_where(
            project_id, log_stream_id, experiment_id, create=True
        )
        body = {
            **{k: v for k, v in kw.items() if v is not None},
            "traces": list(traces),
            "log_stream_id": lsid,
            "experiment_id": eid,
            "logging_method": self.logging_method,
            "client_version": self.client_version,
            "reliable": self.reliable if reliable is None else reliable,
        }
        request = self._validated(LogTracesIngestRequest, body, "log_traces arguments")
        data = yield _Req("POST", f"/v2/projects/{pid}/traces", json=to_wire(request))
        answer: LogTracesIngestResponse = self._answer(LogTracesIngestResponse, data, "Log Traces")
        return answer

    def build_log_traces_body(
        self,
        traces: list[dict[str, Any]],
        *,
        session_id: str | None = None,
        session_external_id: str | None = None,
        reliable: bool | None = None,
        is_complete: bool = True,
        include_trace_ids: bool = False,
        log_stream_id: str | None = None,
        experiment_id: str | None = None,
        logging_method: str | LoggingMethod | None = None,
    ) -> dict[str, Any]:
        """The Log Traces body for already-converted trace dicts, without pydantic (hot path).

        Stamps ``logging_method`` (``logging_method``, else the client's), ``client_version``
        and ``reliable`` like :meth:`log_traces`; encode it and hand it to ``log_traces_raw``.
        """
        lsid, eid = self._target(log_stream_id, experiment_id)
        body: dict[str, Any] = {
            "traces": traces,
            "logging_method": self._logging_method(logging_method),
            "reliable": self.reliable if reliable is None else reliable,
            "is_complete": is_complete,
            "include_trace_ids": include_trace_ids,
        }
        if self.client_version is not None:
            body["client_version"] = self.client_version
        for key, value in (
            ("log_stream_id", lsid),
            ("experiment_id", eid),
            ("session_id", session_id),
            ("session_external_id", session_external_id),
        ):
            if value is not None:
                body[key] = value
        return body


# ------------------------------------------------------------------------------------------------
# Sync client
# ------------------------------------------------------------------------------------------------


class GalileoClient(_Core):
    """A synchronous Galileo API client; use it as a context manager (or call :meth:`close`).

    Args:
        settings: Where missing values come from; built from ``GALILEO_*`` env vars when ``None``.
        api_key: The API key (``GALILEO_API_KEY``).
        api_url: The API base URL (``GALILEO_API_URL``; else derived from ``GALILEO_CONSOLE_URL``).
        project: Default project of every call, by name (``GALILEO_PROJECT``); resolved to an
            id on first use and remembered.
        project_id: Default project of every call, by id (``GALILEO_PROJECT_ID``; wins over a
            name from the environment, loses to ``project=``).
        log_stream: Default log stream, by name (``GALILEO_LOG_STREAM``; ``"default"`` when a
            project is named and no log stream is); resolved like the project.
        log_stream_id: Default log stream of every call, by id.
        experiment_id: Default experiment (wins over the log stream when both are set).
        reliable: The ``reliable`` flag stamped on Create Session and Log Traces.
        timeout: Seconds (or an ``httpx.Timeout``) per attempt; default from the settings'
            connect and read timeouts.
        transport: An httpx transport, e.g. ``httpx.MockTransport`` in tests.
        retry: The default :class:`RetryPolicy`.
        sleep: How to wait between attempts (injected by tests).
        clock: A monotonic clock for deadlines (injected by tests).
        wall_clock: Seconds since the epoch, for ``Retry-After`` HTTP dates.
        rand: A uniform [0, 1) source for jitter.
        logging_method: Stamped on Create Session and Log Traces.
        client_version: Stamped on Create Session and Log Traces.

    Raises:
        ConfigError: A setting or argument is invalid.
    """

    def __init__(
        self,
        *,
        settings: GalileoSettings | None = None,
        api_key: str | None = None,
        api_url: str | None = None,
        project: str | None = None,
        project_id: str | None = None,
        log_stream: str | None = None,
        log_stream_id: str | None = None,
        experiment_id: str | None = None,
        reliable: bool | None = None,
        timeout: float | httpx.Timeout | None = None,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        logging_method: str | LoggingMethod = LoggingMethod.python_client,
        client_version: str | None = __version__,
    ) -> None:
        super().__init__(
            settings=settings,
            api_key=api_key,
            api_url=api_url,
            project=project,
            project_id=project_id,
            log_stream=log_stream,
            log_stream_id=log_stream_id,
            experiment_id=experiment_id,
            reliable=reliable,
            timeout=timeout,
            retry=retry,
            clock=clock,
            wall_clock=wall_clock,
            rand=rand,
            logging_method=logging_method,
            client_version=client_version,
        )
        self._sleep = sleep
        if transport is None:
            transport = httpx.HTTPTransport()  # the transport httpx.Client would make
        self._http = httpx.Client(base_url=self.base_url, timeout=self.timeout, transport=transport)
        _keep_no_cookies(self._http)
        self._merge_client_headers(self._http.headers)
        # Requests go straight to the transport (see _send) unless a proxy is configured in
        # the environment: then the client routes each URL to its proxy or not, as usual.
        self._direct: httpx.BaseTransport | None = (
            None if urllib.request.getproxies() else transport
        )

    def __enter__(self) -> GalileoClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _send(self, request: httpx.Request) -> httpx.Response:
        """Send a built request and read its answer: ``httpx.Client.send``, minus its layers.

        ``Client.send`` runs an auth flow, a redirect loop, event hooks, a proxy lookup and a
        cookie jar around the transport, none of which this client uses (no auth object, no
        redirects followed, no hooks, no proxy when ``_direct`` is set); on the export's
        requests they cost about as much CPU as the transport itself. The transport gets the
        same request (timeouts in its extensions); httpx's log line is kept. The client keeps no
        cookies (see _keep_no_cookies), so skipping the jar changes nothing.
        """
        direct = self._direct
        if direct is None or self._http.is_closed:
            return self._http.send(request)  # a closed client raises as httpx does
        response = direct.handle_request(request)
        try:
            response.read()
        except BaseException:
            response.close()
            raise
        response.request = request
        if _httpx_log.isEnabledFor(logging.INFO):
            _httpx_log.info(
                'HTTP Request: %s %s "%s %d %s"',
                request.method,
                request.url,
                response.http_version,
                response.status_code,
                response.reason_phrase,
            )
        return response

    # --- low level -------------------------------------------------------------------------------

    def request_json(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        require_key: bool = True,
    ) -> Any:
        """Send one request (with retries) and return the parsed JSON answer (``None`` if empty).

        Args:
            method: The HTTP method.
            path: The path under the API base URL, e.g. ``/v2/projects/<id>/traces``.
            json: A JSON-able body, encoded here.
            content: An already-encoded JSON body (wins over ``json``).
            params: Query parameters.
            retry: The retry policy of this request (default: the client's).
            timeout: Seconds per attempt (default: the client's).
            require_key: Fail with ConfigError before sending when no API key is configured.

        Raises:
            ConfigError: No API key, or a body that is not JSON-able.
            APIError: The server answered an error, or no answer came (TransportError).
        """
        call = self._open_call(method, path, json, content, params, retry, timeout, require_key)
        return self._perform(call)

    def _perform(self, call: _Call) -> Any:
        """Run a call's attempts (sent, retried as its policy says); its answer, or raise."""

        def attempt() -> _Parsed | Failure:
            try:
                # Our own request must never be traced: a traced export is exported, and so on.
                with suppress_instrumentation():
                    response = self._send(self._next_request(self._http, call))
            except _HTTPX_ERRORS as exc:
                return self._transport_failure(exc, call.method, call.url)
            return self._outcome(call, response)

        result = retry_loop(
            attempt,
            call.policy,
            wait=self._sleep,
            clock=self._clock,
            rand=self._rand,
            on_retry=self._log_retry(call.policy),
        )
        return self._result(result)

    def log_traces_raw(
        self, body: bytes, *, project_id: str, retry: RetryPolicy | None = None
    ) -> dict[str, Any]:
        """POST an already-encoded Log Traces body; return the answer as a plain dict.

        Raises:
            APIError: The server answered an error, or no answer came (TransportError).
        """
        answer = self.request_json(
            "POST", f"/v2/projects/{project_id}/traces", content=body, retry=retry
        )
        return answer if isinstance(answer, dict) else {}

    def log_traces_encoded(
        self,
        traces_json: bytes,
        *,
        project_id: str,
        session_id: str | None = None,
        session_external_id: str | None = None,
        reliable: bool | None = None,
        log_stream_id: str | None = None,
        experiment_id: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        logging_method: str | LoggingMethod | None = None,
    ) -> dict[str, Any]:
        """POST a Log Traces request whose ``traces`` array is already encoded JSON.

        The export pipeline's one way onto the wire: it encodes each trace once, and this
        method owns the path and the envelope (``logging_method``, ``client_version``,
        ``reliable``, destination and session), spliced around the bytes without re-encoding.

        Args:
            traces_json: The encoded ``traces`` array (``b"[...]"``).
            project_id: The project to log to.
            session_id: The Galileo session of every trace in the array.
            session_external_id: The app's own key of that session.
            reliable: Stamped ``reliable`` (default: the client's).
            log_stream_id: The log stream (or ``experiment_id``; default: the client's).
            experiment_id: The experiment.
            retry: The retry policy of this request (default: the client's).
            timeout: Seconds per attempt (default: the client's).
            logging_method: Who logged these traces (default: the client's); the gateway
                stamps the sending app's client.

        Raises:
            APIError: The server answered an error, or no answer came (TransportError,
                APITimeoutError), chained from the httpx exception.
            ConfigError: ``logging_method`` is not a ``LoggingMethod``.
        """
        # The client's own fields count too: they are plain attributes a caller may change.
        key = (
            logging_method,
            session_id,
            session_external_id,
            reliable,
            log_stream_id,
            experiment_id,
            self.reliable,
            self.log_stream_id,
            self.experiment_id,
            self.logging_method,
            self.client_version,
        )
        tail = self._envelopes.get(key)
        if tail is None:
            envelope = self.build_log_traces_body(
                [],
                session_id=session_id,
                session_external_id=session_external_id,
                reliable=reliable,
                log_stream_id=log_stream_id,
                experiment_id=experiment_id,
                logging_method=logging_method,
            )
            del envelope["traces"]
            tail = b"," + _encode(envelope)[1:]
            if len(self._envelopes) >= _ENVELOPES_MAX:
                self._envelopes.clear()
            self._envelopes[key] = tail
        # The (large) traces array goes to the transport as it is, between head and tail.
        body = _Spliced((b'{"traces":', traces_json, tail))
        path = f"/v2/projects/{project_id}/traces"
        answer = self._perform(
            self._open_call("POST", path, None, body, None, retry, timeout, True)
        )
        return answer if isinstance(answer, dict) else {}

    def _run(self, op: _Op[T]) -> T:
        try:
            req = next(op)
            while True:
                try:
                    result = self.request_json(
                        req.method,
                        req.path,
                        json=req.json,
                        params=req.params,
                        retry=req.retry,
                        require_key=req.require_key,
                    )
                except GalileoError as exc:
                    req = op.throw(exc)
                else:
                    req = op.send(result)
        except StopIteration as stop:
            value: T = stop.value
            return value
        finally:
            op.close()

    # --- API -------------------------------------------------------------------------------------

    def healthcheck(self) -> bool:
        """Whether the API answers ``GET /healthcheck`` with success (one attempt, no key needed)."""
        return self._run(self._op_healthcheck())

    def get_project(self, name: str) -> Project | None:
        """The gen_ai project called ``name``, or ``None``."""
        return self._run(self._op_get_project(name))

    def create_project(self, name: str) -> Project:
        """Create a gen_ai project called ``name``."""
        return self._run(self._op_create_project(name))

    def list_log_streams(self, project_id: str | None = None) -> list[LogStream]:
        """The log streams of a project (404 -> NotFoundError when the project does not exist)."""
        return self._run(self._op_list_log_streams(project_id))

    def create_log_stream(self, project_id: str | None, name: str) -> LogStream:
        """Create a log stream called ``name`` in a project."""
        return self._run(self._op_create_log_stream(project_id, name))

    def resolve_destination(
        self,
        *,
        project: str | None = None,
        project_id: str | None = None,
        log_stream: str | None = None,
        log_stream_id: str | None = None,
        experiment_id: str | None = None,
        create: bool = True,
    ) -> Destination:
        """Turn names into ids: find (or create) the project and the log stream.

        Missing arguments come from the settings. An id wins over a name; with no log stream and
        no experiment, the log stream ``"default"`` is used (as the official SDK does). The
        client remembers the answer: later calls without ``project_id=`` / ``log_stream_id=``
        go there. (Calls resolve the client's own names by themselves; this is for choosing
        another destination, or for creating it up front.)

        Raises:
            ConfigError: Neither a project name nor id is known.
            NotFoundError: An id does not exist, or a name does not and ``create`` is False.
        """
        return self._run(
            self._op_resolve_and_remember(
                project, project_id, log_stream, log_stream_id, experiment_id, create
            )
        )

    def create_session(
        self,
        *,
        project_id: str | None = None,
        name: str | None = None,
        external_id: str | None = None,
        previous_session_id: str | None = None,
        user_metadata: Mapping[str, str] | None = None,
        log_stream_id: str | None = None,
        experiment_id: str | None = None,
        metrics_testing_id: str | None = None,
        reliable: bool | None = None,
        logging_method: str | LoggingMethod | None = None,
    ) -> SessionCreateResponse:
        """Create a session; stamps ``logging_method``, ``client_version`` and ``reliable``.

        ``logging_method`` overrides the client's for this session (who logged it).
        """
        return self._run(
            self._op_create_session(
                project_id=project_id,
                name=name,
                external_id=external_id,
                previous_session_id=_id(previous_session_id),
                user_metadata=None if user_metadata is None else dict(user_metadata),
                log_stream_id=log_stream_id,
                experiment_id=experiment_id,
                metrics_testing_id=metrics_testing_id,
                reliable=reliable,
                logging_method=logging_method,
            )
        )

    def count_sessions(
        self,
        *,
        project_id: str | None = None,
        filters: FilterInput | Iterable[FilterInput] | None = None,
        filter_tree: FilterInput | None = None,
        log_stream_id: str | None = None,
        experiment_id: str | None = None,
        metrics_testing_id: str | None = None,
    ) -> int:
        """How many sessions match. ``filters`` are and-ed; ``filter_tree`` adds and/or/not.

        Both take :mod:`galileo_otel.api.filters` objects, filter models or plain dicts.
        """
        return self._run(
            self._op_count_sessions(
                project_id,
                filters=filters,
                filter_tree=filter_tree,
                log_stream_id=log_stream_id,
                experiment_id=experiment_id,
                metrics_testing_id=metrics_testing_id,
            )
        )

    def search_sessions(
        self,
        *,
        project_id: str | None = None,
        filters: FilterInput | Iterable[FilterInput] | None = None,
        filter_tree: FilterInput | None = None,
        log_stream_id: str | None = None,
        experiment_id: str | None = None,
        metrics_testing_id: str | None = None,
        starting_token: int = 0,
        limit: int = 100,
        sort: QuerySort | Mapping[str, Any] | str | None = None,
    ) -> LogRecordsQueryResponse:
        """One page of sessions that match (see :meth:`iter_sessions` for all of them)."""
        return self._run(
            self._op_search_sessions(
                project_id,
                starting_token,
                limit,
                sort,
                filters=filters,
                filter_tree=filter_tree,
                log_stream_id=log_stream_id,
                experiment_id=experiment_id,
                metrics_testing_id=metrics_testing_id,
            )
        )

    def iter_sessions(
        self,
        *,
        project_id: str | None = None,
        filters: FilterInput | Iterable[FilterInput] | None = None,
        filter_tree: FilterInput | None = None,
        log_stream_id: str | None = None,
        experiment_id: str | None = None,
        metrics_testing_id: str | None = None,
        limit: int = 100,
        sort: QuerySort | Mapping[str, Any] | str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every session that matches, page after page."""
        if filters is not None and not isinstance(filters, (list, tuple)):
            filters = to_filter_list(filters)  # a one-shot iterable must survive every page
        token = 0
        for _ in range(_MAX_PAGES):
            page = self.search_sessions(
                project_id=project_id,
                filters=filters,
                filter_tree=filter_tree,
                log_stream_id=log_stream_id,
                experiment_id=experiment_id,
                metrics_testing_id=metrics_testing_id,
                starting_token=token,
                limit=limit,
                sort=sort,
            )
            yield from page.records
            nxt = page.next_starting_token
            if not page.paginated or nxt is None or nxt <= token or not page.records:
                return
            token = nxt

    def log_traces(
        self,
        traces: Sequence[Trace | Mapping[str, Any]],
        *,
        project_id: str | None = None,
        session_id: str | None = None,
        session_external_id: str | None = None,
        reliable: bool | None = None,
        is_complete: bool = True,
        include_trace_ids: bool = False,
        log_stream_id: str | None = None,
        experiment_id: str | None = None,
        metrics_testing_id: str | None = None,
    ) -> LogTracesIngestResponse:
        """Log traces (models or dicts); stamps ``logging_method``, ``client_version``, ``reliable``."""
        return self._run(
            self._op_log_traces(
                traces,
                project_id,
                reliable,
                log_stream_id,
                experiment_id,
                session_id=_id(session_id),
                session_external_id=session_external_id,
                is_complete=is_complete,
                include_trace_ids=include_trace_ids,
                metrics_testing_id=_id(metrics_testing_id),
            )
        )


# ------------------------------------------------------------------------------------------------
# Async client
# ------------------------------------------------------------------------------------------------


class AsyncGalileoClient(_Core):
    """The asyncio twin of :class:`GalileoClient`: same arguments, awaitable methods.

    ``sleep`` is awaited (default :func:`asyncio.sleep`) and ``transport`` is an
    ``httpx.AsyncBaseTransport``. Use ``async with`` (or ``await client.aclose()``).
    """

    def __init__(
        self,
        *,
        settings: GalileoSettings | None = None,
        api_key: str | None = None,
        api_url: str | None = None,
        project: str | None = None,
        project_id: str | None = None,
        log_stream: str | None = None,
        log_stream_id: str | None = None,
        experiment_id: str | None = None,
        reliable: bool | None = None,
        timeout: float | httpx.Timeout | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        logging_method: str | LoggingMethod = LoggingMethod.python_client,
        client_version: str | None = __version__,
    ) -> None:
        super().__init__(
            settings=settings,
            api_key=api_key,
            api_url=api_url,
            project=project,
            project_id=project_id,
            log_stream=log_stream,
            log_stream_id=log_stream_id,
            experiment_id=experiment_id,
            reliable=reliable,
            timeout=timeout,
            retry=retry,
            clock=clock,
            wall_clock=wall_clock,
            rand=rand,
            logging_method=logging_method,
            client_version=client_version,
        )
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=self.timeout, transport=transport
        )
        _keep_no_cookies(self._http)
        self._merge_client_headers(self._http.headers)

    async def __aenter__(self) -> AsyncGalileoClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        require_key: bool = True,
    ) -> Any:
        """Send one request (with retries) and return the parsed JSON answer (``None`` if empty).

        See :meth:`GalileoClient.request_json`.

        Raises:
            ConfigError: No API key, or a body that is not JSON-able.
            APIError: The server answered an error, or no answer came (TransportError).
        """
        call = self._open_call(method, path, json, content, params, retry, timeout, require_key)

        async def attempt() -> _Parsed | Failure:
            try:
                # Our own request must never be traced: a traced export is exported, and so on.
                with suppress_instrumentation():
                    response = await self._http.send(self._next_request(self._http, call))
            except _HTTPX_ERRORS as exc:
                return self._transport_failure(exc, call.method, call.url)
            return self._outcome(call, response)

        result = await aretry_loop(
            attempt,
            call.policy,
            wait=self._sleep,
            clock=self._clock,
            rand=self._rand,
            on_retry=self._log_retry(call.policy),
        )
        return self._result(result)

    async def log_traces_raw(
        self, body: bytes, *, project_id: str, retry: RetryPolicy | None = None
    ) -> dict[str, Any]:
        """POST an already-encoded Log Traces body; return the answer as a plain dict."""
        answer = await self.request_json(
            "POST", f"/v2/projects/{project_id}/traces", content=body, retry=retry
        )
        return answer if isinstance(answer, dict) else {}

    async def _run(self, op: _Op[T]) -> T:
        try:
            req = next(op)
            while True:
                try:
                    result = await self.request_json(
                        req.method,
                        req.path,
                        json=req.json,
                        params=req.params,
                        retry=req.retry,
                        require_key=req.require_key,
                    )
                except GalileoError as exc:
                    req = op.throw(exc)
                else:
                    req = op.send(result)
        except StopIteration as stop:
            value: T = stop.value
            return value
        finally:
            op.close()

    async def healthcheck(self) -> bool:
        """Whether the API answers ``GET /healthcheck`` with success."""
        return await self._run(self._op_healthcheck())

    async def get_project(self, name: str) -> Project | None:
        """The gen_ai project called ``name``, or ``None``."""
        return await self._run(self._op_get_project(name))

    async def create_project(self, name: str) -> Project:
        """Create a gen_ai project called ``name``."""
        return await self._run(self._op_create_project(name))

    async def list_log_streams(self, project_id: str | None = None) -> list[LogStream]:
        """The log streams of a project."""
        return await self._run(self._op_list_log_streams(project_id))

    async def create_log_stream(self, project_id: str | None, name: str) -> LogStream:
        """Create a log stream called ``name`` in a project."""
        return await self._run(self._op_create_log_stream(project_id, name))

    async def resolve_destination(
        self,
        *,
        project: str | None = None,
        project_id: str | None = None,
        log_stream: str | None = None,
        log_stream_id: str | None = None,
        experiment_id: str | None = None,
        create: bool = True,
    ) -> Destination:
        """Turn names into ids (see :meth:`GalileoClient.resolve_destination`)."""
        return await self._run(
            self._op_resolve_and_remember(
                project, project_id, log_stream, log_stream_id, experiment_id, create
            )
        )

    async def create_session(
        self,
        *,
        project_id: str | None = None,
        name: str | None = None,
        external_id: str | None = None,
        previous_session_id: str | None = None,
        user_metadata: Mapping[str, str] | None = None,
        log_stream_id: str | None = None,
        experiment_id: str | None = None,
        metrics_testing_id: str | None = None,
        reliable: bool | None = None,
        logging_method: str | LoggingMethod | None = None,
    ) -> SessionCreateResponse:
        """Create a session; stamps ``logging_method``, ``client_version`` and ``reliable``.

        ``logging_method`` overrides the client's for this session (who logged it).
        """
        return await self._run(
            self._op_create_session(
                project_id=project_id,
                name=name,
                external_id=external_id,
                previous_session_id=_id(previous_session_id),
                user_metadata=None if user_metadata is None else dict(user_metadata),
                log_stream_id=log_stream_id,
                experiment_id=experiment_id,
                metrics_testing_id=metrics_testing_id,
                reliable=reliable,
                logging_method=logging_method,
            )
        )

    async def count_sessions(
        self,
        *,
        project_id: str | None = None,
        filters: FilterInput | Iterable[FilterInput] | None = None,
        filter_tree: FilterInput | None = None,
        log_stream_id: str | None = None,
        experiment_id: str | None = None,
        metrics_testing_id: str | None = None,
    ) -> int:
        """How many sessions match (see :meth:`GalileoClient.count_sessions`)."""
        return await self._run(
            self._op_count_sessions(
                project_id,
                filters=filters,
                filter_tree=filter_tree,
                log_stream_id=log_stream_id,
                experiment_id=experiment_id,
                metrics_testing_id=metrics_testing_id,
            )
        )

    async def search_sessions(
        self,
        *,
        project_id: str | None = None,
        filters: FilterInput | Iterable[FilterInput] | None = None,
        filter_tree: FilterInput | None = None,
        log_stream_id: str | None = None,
        experiment_id: str | None = None,
        metrics_testing_id: str | None = None,
        starting_token: int = 0,
        limit: int = 100,
        sort: QuerySort | Mapping[str, Any] | str | None = None,
    ) -> LogRecordsQueryResponse:
        """One page of sessions that match."""
        return await self._run(
            self._op_search_sessions(
                project_id,
                starting_token,
                limit,
                sort,
                filters=filters,
                filter_tree=filter_tree,
                log_stream_id=log_stream_id,
                experiment_id=experiment_id,
                metrics_testing_id=metrics_testing_id,
            )
        )

    async def iter_sessions(
        self,
        *,
        project_id: str | None = None,
        filters: FilterInput | Iterable[FilterInput] | None = None,
        filter_tree: FilterInput | None = None,
        log_stream_id: str | None = None,
        experiment_id: str | None = None,
        metrics_testing_id: str | None = None,
        limit: int = 100,
        sort: QuerySort | Mapping[str, Any] | str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every session that matches, page after page (``async for``)."""
        if filters is not None and not isinstance(filters, (list, tuple)):
            filters = to_filter_list(filters)
        token = 0
        for _ in range(_MAX_PAGES):
            page = await self.search_sessions(
                project_id=project_id,
                filters=filters,
                filter_tree=filter_tree,
                log_stream_id=log_stream_id,
                experiment_id=experiment_id,
                metrics_testing_id=metrics_testing_id,
                starting_token=token,
                limit=limit,
                sort=sort,
            )
            for record in page.records:
                yield record
            nxt = page.next_starting_token
            if not page.paginated or nxt is None or nxt <= token or not page.records:
                return
            token = nxt

    async def log_traces(
        self,
        traces: Sequence[Trace | Mapping[str, Any]],
        *,
        project_id: str | None = None,
        session_id: str | None = None,
        session_external_id: str | None = None,
        reliable: bool | None = None,
        is_complete: bool = True,
        include_trace_ids: bool = False,
        log_stream_id: str | None = None,
        experiment_id: str | None = None,
        metrics_testing_id: str | None = None,
    ) -> LogTracesIngestResponse:
        """Log traces (models or dicts); stamps ``logging_method``, ``client_version``, ``reliable``."""
        return await self._run(
            self._op_log_traces(
                traces,
                project_id,
                reliable,
                log_stream_id,
                experiment_id,
                session_id=_id(session_id),
                session_external_id=session_external_id,
                is_complete=is_complete,
                include_trace_ids=include_trace_ids,
                metrics_testing_id=_id(metrics_testing_id),
            )
        )
