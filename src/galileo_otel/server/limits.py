"""Bounds on what one request may make the server read: body size, decompressed size, JSON depth.

:func:`limit_body` wraps an ASGI ``receive`` so no route reads more than ``max_body_bytes``; the
app answers 413 with a JSON body that names the limit and how to raise it. A body announced too
large by its ``Content-Length`` is answered at once, after draining (bounded) what the client
sends, so a well-behaved client reads the 413 instead of a reset connection.
"""

from __future__ import annotations

import ipaddress
import json
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "BodyTooLargeError",
    "body_too_large_response",
    "content_length",
    "gunzip_bounded",
    "is_loopback",
    "limit_body",
]

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
"""Default cap of a request body: 16 times the largest Log Traces request galileo-otel builds
(``GALILEO_BATCH_MAX_BYTES``, 4 MiB) and well above an OTLP exporter's default batch of 512 spans."""

_DRAIN_LIMIT_BYTES = 256 * 1024 * 1024

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyTooLargeError(Exception):
    """A request body (or its decompressed form) is over the server's limit: answered 413."""

    def __init__(self, limit: int, what: str = "request body") -> None:
        super().__init__(f"{what} exceeds the limit of {limit} bytes")
        self.limit = limit
        self.what = what

    def to_body(self) -> dict[str, Any]:
        """The JSON body of the 413 answer."""
        return {
            "detail": (
                f"{self.what} exceeds the server's limit of {self.limit} bytes; send smaller "
                "batches, or raise the limit (galileo-otel serve --max-body-bytes)"
            )
        }


def content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The announced ``Content-Length``, or None when absent or unreadable."""
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def limit_body(receive: Receive, limit: int) -> Receive:
    """A ``receive`` that raises :class:`BodyTooLargeError` once more than ``limit`` bytes came."""
    total = 0

    async def receive_limited() -> Message:
        nonlocal total
        message = await receive()
        if message["type"] == "http.request":
            total += len(message.get("body", b""))
            if total > limit:
                raise BodyTooLargeError(limit)
        return message

    return receive_limited


async def body_too_large_response(
    error: BodyTooLargeError, receive: Receive, send: Send, *, drain: bool
) -> None:
    """Answer 413; with ``drain``, first read and discard (bounded) the rest of the body."""
    if drain:
        drained = 0
        while drained < _DRAIN_LIMIT_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                break
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
    payload = json.dumps(error.to_body()).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode("ascii")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def gunzip_bounded(data: bytes, limit: int) -> bytes:
    """Decompress a gzip (or zlib) body, refusing to inflate past ``limit`` bytes.

    Raises:
        BodyTooLargeError: The decompressed body is over ``limit``.
        ValueError: ``data`` is not valid gzip.
    """
    inflater = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header, detected
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ValueError(f"the body is not valid gzip: {exc}") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyTooLargeError(limit, "decompressed request body")
    if not inflater.eof:
        raise ValueError("the gzip body is truncated")
    return out


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
