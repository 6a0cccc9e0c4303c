"""The spool's batch header: one versioned codec, the only writer and reader of its fields.

A closed batch travels as an encoded traces array (the payload) and this header: which session
the traces belong to, where they go, which API key made them, how many traces and spans. The
spool (``spool.py``) stores the header as a JSON object and reads nothing from it but
``traces``; everything else is read here. A header of another version (written by a newer or
older galileo-otel sharing the spool) or one that does not parse raises
:class:`ForeignHeader`: the batch is set aside with the dead letters, never sent half-understood
and never crashed on.

Who logged a batch's traces (its ``logging_method``: the gateway forwards spans from apps in
other languages) travels in the session record (``session.logging_method``), an optional key:
a header without it (every in-process batch, and every batch written before it existed) is sent
as the client's own, ``python_client``, and an older galileo-otel reading a header with it
ignores the key, as it ignores any key of the session it does not know. So the version stays 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["LOGGING_METHODS", "VERSION", "BatchHeader", "ForeignHeader"]

VERSION = 1

LOGGING_METHODS = frozenset(("playground", "python_client", "typescript_client", "api_direct"))
"""The values of Galileo's ``LoggingMethod`` a header may name (anything else is ignored)."""


class ForeignHeader(ValueError):
    """A header this version cannot read (another version, or malformed)."""


@dataclass(frozen=True)
class BatchHeader:
    """What a batch says about itself.

    Attributes:
        reliable: Made in reliable mode.
        session: The session record, as ``SessionRecord.to_dict()``.
        local_id: The session's local id; stands in for the Galileo id in the payload until the
            session exists (``placeholder``).
        external_id: The app's session key, sent as ``session_external_id``.
        placeholder: The payload holds ``local_id`` where the Galileo session id belongs.
        destination: Project / log stream / experiment ids, when known at batching time.
        target: The settings' project and log stream (names or ids), to resolve later.
        origin: A truncated hash of the API key the batch was made with.
        traces: Traces in the batch.
        spans: Spans in the batch.
    """

    reliable: bool
    session: Mapping[str, Any]
    local_id: str
    external_id: str | None
    placeholder: bool
    destination: Mapping[str, Any] | None
    target: Mapping[str, Any] | None
    origin: str
    traces: int
    spans: int

    def encode(self) -> dict[str, Any]:
        """The header as the spool stores it (a JSON object with ``v``)."""
        return {
            "v": VERSION,
            "reliable": self.reliable,
            "session": dict(self.session),
            "local_id": self.local_id,
            "external_id": self.external_id,
            "placeholder": self.placeholder,
            "destination": None if self.destination is None else dict(self.destination),
            "target": None if self.target is None else dict(self.target),
            "origin": self.origin,
            "traces": self.traces,
            "spans": self.spans,
        }

    @property
    def logging_method(self) -> str | None:
        """Who logged the batch's traces, from its session record; ``None``: the client's own.

        A value that is not a ``LoggingMethod`` (a newer version's) reads as ``None``.
        """
        method = self.session.get("logging_method")
        return method if method in LOGGING_METHODS else None

    @classmethod
    def decode(cls, data: Any) -> BatchHeader:
        """Read a stored header.

        Raises:
            ForeignHeader: Another version, or fields missing or of the wrong type.
        """
        if not isinstance(data, Mapping):
            raise ForeignHeader("header is not an object")
        version = data.get("v")
        if version != VERSION:
            raise ForeignHeader(f"header version {version!r} (this galileo-otel reads {VERSION})")
        try:
            session = data["session"]
            local_id = data.get("local_id") or session.get("local_id")
            destination = data.get("destination")
            target = data.get("target")
            if not isinstance(session, Mapping) or not isinstance(local_id, str):
                raise TypeError("session")
            if destination is not None and not isinstance(destination, Mapping):
                raise TypeError("destination")
            if target is not None and not isinstance(target, Mapping):
                raise TypeError("target")
            external_id = data.get("external_id")
            return cls(
                reliable=bool(data.get("reliable", True)),
                session=session,
                local_id=local_id,
                external_id=None if external_id is None else str(external_id),
                placeholder=bool(data.get("placeholder", False)),
                destination=destination,
                target=target,
                origin=str(data.get("origin") or ""),
                traces=int(data.get("traces", 0)),
                spans=int(data.get("spans", 0)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ForeignHeader(f"malformed header: {exc!r}") from None
