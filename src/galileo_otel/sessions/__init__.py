"""Sessions: which Galileo session a trace belongs to. Knows nothing of HTTP.

``session()`` marks code as one session; the tracker assigns finished traces to sessions
(keys, automatic sessions, idle rotation, chaining); the stores make that atomic.
"""

from galileo_otel.sessions.context import (
    SessionContext,
    current_session,
    session,
    set_baggage_default,
)
from galileo_otel.sessions.resolve import session_key, user_id
from galileo_otel.sessions.store import (
    MemorySessionStore,
    SessionRecord,
    SessionStore,
    SQLiteSessionStore,
    store_from_settings,
)
from galileo_otel.sessions.tracker import SessionTracker

__all__ = [
    "MemorySessionStore",
    "SQLiteSessionStore",
    "SessionContext",
    "SessionRecord",
    "SessionStore",
    "SessionTracker",
    "current_session",
    "session",
    "session_key",
    "set_baggage_default",
    "store_from_settings",
    "user_id",
]
