"""Sessions that heal: when Galileo answers that a session does not exist, make it again.

A server restored from a backup, wiped, or replaced by a new local server no longer knows the
sessions a shared store (SQLite, Redis) remembers. Its Log Traces answer (422, or 404) says so;
:func:`session_missing` recognises that answer, and the tracker's
:meth:`~galileo_otel.sessions.tracker.SessionTracker.heal` forgets the mapping (compare-and-
delete in the store) so that the batch's session is created again and the batch resent.
Create Session's answer that a *previous* session does not exist is recognised by
:func:`previous_missing`: the session is then created without that link.

The answers are read from the error's ``status_code``, ``message`` and ``detail`` (FastAPI's
422 ``detail`` list, or a plain text ``detail``), never from the transport. Knows nothing of HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = [
    "SESSION_MISSING_STATUSES",
    "describe_store",
    "previous_missing",
    "session_missing",
]

#: The statuses of an answer that may say a session does not exist: the local server and the
#: Galileo API validate ``session_id`` (422, FastAPI's validation error); a path-style lookup
#: answers 404.
SESSION_MISSING_STATUSES = frozenset({404, 422})

# "does not exist", "doesn't exist", "not found", "no such ...", "unknown ...": the words a
# server uses; "session" must be the subject ("session X does not exist in project P", "Session
# not found", "No such session", "unknown session_id").
_MISSING = r"(?:does\s*n[o']t\s+exist|not\s+exist|not\s+found|no\s+such|unknown|invalid)"
_SESSION_THEN_MISSING = re.compile(r"\bsession(?:[ _]id)?\b[^.;\n]{0,120}?" + _MISSING, re.I)
_MISSING_THEN_SESSION = re.compile(r"\b(?:no\s+such|unknown)\s+session\b", re.I)
_PREVIOUS = re.compile(r"\bprevious[ _]session", re.I)


def _entries(detail: Any, depth: int = 0) -> Iterator[tuple[tuple[str, ...], str]]:
    """``(loc, text)`` of each message in an error ``detail`` (list, dict or text)."""
    if depth > 3 or detail is None:
        return
    if isinstance(detail, str):
        yield (), detail
    elif isinstance(detail, list):
        for item in detail[:50]:
            yield from _entries(item, depth + 1)
    elif isinstance(detail, dict):
        loc = detail.get("loc")
        text = detail.get("msg") or detail.get("message") or detail.get("detail")
        where = tuple(str(x) for x in loc) if isinstance(loc, Sequence) else ()
        if isinstance(text, str):
            yield where, text
        elif text is not None:
            yield from _entries(text, depth + 1)


def session_missing(exc: BaseException) -> bool:
    """Whether a Log Traces error says the request's session (or a trace's) does not exist.

    True for a 404 or 422 whose detail points at a ``session_id`` field with a "does not exist"
    / "not found" message, or whose text says a session does not exist. A message about the
    *previous* session, the project or the log stream is not this.

    Args:
        exc: The error (an :class:`~galileo_otel.errors.APIError`, or anything with
            ``status_code``, ``message`` and ``detail``).
    """
    if getattr(exc, "status_code", None) not in SESSION_MISSING_STATUSES:
        return False
    found = list(_entries(getattr(exc, "detail", None)))
    message = getattr(exc, "message", None)
    if not found and isinstance(message, str):
        found.append(((), message))
    for loc, text in found:
        field = loc[-1] if loc else ""
        if field == "previous_session_id":
            continue
        if field == "session_id" and re.search(_MISSING, text, re.I):
            return True
        if field in ("", "detail", "body", "session_id") and _about_session(text):
            return True
    return False


def _about_session(text: str) -> bool:
    """The text says a session (not a previous one) does not exist."""
    if _PREVIOUS.search(text):
        text = _PREVIOUS.sub("previous-ref", text)
    return bool(_SESSION_THEN_MISSING.search(text) or _MISSING_THEN_SESSION.search(text))


def previous_missing(exc: BaseException) -> bool:
    """Whether a Create Session error says its ``previous_session_id`` does not exist.

    Args:
        exc: The error (anything with ``status_code``, ``message`` and ``detail``).
    """
    if getattr(exc, "status_code", None) not in SESSION_MISSING_STATUSES:
        return False
    found = list(_entries(getattr(exc, "detail", None)))
    message = getattr(exc, "message", None)
    if isinstance(message, str):
        found.append(((), message))
    for loc, text in found:
        field = loc[-1] if loc else ""
        if field == "previous_session_id" and re.search(_MISSING, text, re.I):
            return True
        if _PREVIOUS.search(text) and re.search(_MISSING, text, re.I):
            return True
    return False


def describe_store(store: Any) -> str:
    """The session store as a log line names it: its kind and where (secrets redacted)."""
    from galileo_otel.sessions.failover import FailoverSessionStore
    from galileo_otel.sessions.redis_store import RedisSessionStore
    from galileo_otel.sessions.store import MemorySessionStore, SQLiteSessionStore

    if isinstance(store, FailoverSessionStore):
        return describe_store(store.primary)
    if isinstance(store, RedisSessionStore):
        return f"Redis session store {store.url}"
    if isinstance(store, SQLiteSessionStore):
        return f"SQLite session store {store.path}"
    if isinstance(store, MemorySessionStore):
        return "in-memory session store of this process"
    return f"session store {type(store).__name__}"
