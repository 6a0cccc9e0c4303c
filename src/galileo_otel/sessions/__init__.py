"""Sessions: which Galileo session a trace belongs to. Knows nothing of HTTP.

``session()`` marks code as one session; the tracker assigns finished traces to sessions
(keys, automatic sessions, idle rotation, chaining, sampling); the stores make that atomic:
memory (one process), SQLite (one host), Redis (many hosts, behind a failover).
"""

from galileo_otel.sessions.context import (
    SessionContext,
    current_session,
    session,
    set_baggage_default,
)
from galileo_otel.sessions.failover import FailoverSessionStore
from galileo_otel.sessions.redis_store import RedisSessionStore
from galileo_otel.sessions.resolve import session_key, user_id
from galileo_otel.sessions.store import (
    MemorySessionStore,
    SessionRecord,
    SessionStore,
    SessionStoreUnavailable,
    SQLiteSessionStore,
    store_from_settings,
)
from galileo_otel.sessions.tracker import SessionTracker

__all__ = [
    "FailoverSessionStore",
    "MemorySessionStore",
    "RedisSessionStore",
    "SQLiteSessionStore",
    "SessionContext",
    "SessionRecord",
    "SessionStore",
    "SessionStoreUnavailable",
    "SessionTracker",
    "current_session",
    "session",
    "session_key",
    "set_baggage_default",
    "store_from_settings",
    "user_id",
]
