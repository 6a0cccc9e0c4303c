"""SessionTracker: which session a finished trace belongs to, when sessions rotate, how they chain.

Runs on the export pipeline's background thread, never on the app thread. Rotation uses span
timestamps, not the wall clock, so the outcome depends only on the traces themselves.

Chaining rule (``previous_session_id`` of a new session), first match wins:

1. the app's ``session.previous_id`` on the root span: a key of ours maps to that key's latest
   session; otherwise a UUID v4 is taken as a Galileo session id as-is; anything else is ignored;
2. a keyed session (conversation) whose key had a session before (it rotated, idle or max age):
   that key's previous session, so a conversation keeps its own chain;
3. the user's latest session (any kind: keyed or automatic), so a user's new conversation and
   their automatic sessions form one history;
4. an automatic session without a user: the previous automatic session of the process/service.

A keyed session with no user and no earlier session of its key has no previous session.

A trace whose root names an existing Galileo session (``galileo.session.id``, as the official
Galileo integration sets it) goes to that session: nothing is opened, chained or created.

Sampling (``sample_rate`` < 1) keeps or drops whole sessions: a hash of the session key (of the
session's id for automatic sessions) decides once, when the session opens, the same on every host.
A dropped session is never created, and chains skip it.

Healing: a server that lost a session (restored, wiped, a new local server) answers Log Traces
with "session does not exist"; :meth:`SessionTracker.heal` forgets that Galileo id in the store
(compare-and-delete), and the next :meth:`SessionTracker.ensure_created` creates the session
again, chained to its previous session when Galileo still has it (Create Session's answer that
the previous session does not exist makes it create the session without that link).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from galileo_otel.sessions.heal import describe_store, previous_missing
from galileo_otel.sessions.resolve import (
    CAPTURED_GALILEO_ID,
    GALILEO_SESSION_FROM_BAGGAGE,
    GALILEO_SESSION_ID,
    GALILEO_SESSION_METADATA,
    SERVICE_NAME,
    SESSION_ID,
    SESSION_PREVIOUS_ID,
    USER_ID,
    as_uuid4,
    galileo_session_id,
    is_scrubbed,
    previous_id,
    session_key,
    session_name,
    user_id,
)
from galileo_otel.sessions.store import (
    _FORK_AWARE,
    MemorySessionStore,
    SessionRecord,
    SessionStore,
    store_from_settings,
)
from galileo_otel.settings import DEFAULT_SESSION_IDLE_TIMEOUT_S

if TYPE_CHECKING:
    from galileo_otel.settings import GalileoSettings

__all__ = [
    "ROOT_SPAN_NAME",
    "SessionRecord",
    "SessionTracker",
    "namespace_of",
    "sampled",
    "scope_of",
]

#: ``user_metadata`` key of the name of the root span that opened a session.
ROOT_SPAN_NAME = "root_span.name"

logger = logging.getLogger(__name__)

_NS = 1_000_000_000
# A chain of sessions none of which is created yet only grows while Create Session keeps failing;
# walk back at most this far.
_MAX_CHAIN = 1_000
# Sessions forgotten by heal() and not yet created again, remembered to count their re-creation.
_MAX_HEALING = 10_000
_SCOPE_CACHE_MAX = 4096


def scope_of(key: str | None, user: str | None, service_name: str | None) -> str:
    """The store scope of a trace: its key, else its user's, else the process's automatic session.

    Args:
        key: The session key from the context or attributes.
        user: The user id from the attributes.
        service_name: The service name (the owner of anonymous automatic sessions).
    """
    if key is not None:
        return "key:" + key
    if user is not None:
        return "user:" + user
    return "auto:" + (service_name or "")


def namespace_of(settings: GalileoSettings) -> str:
    """The store namespace of a destination: ``<project>/<log stream or experiment>``.

    Args:
        settings: Supplies the project and log stream / experiment, by id or name.
    """
    project = settings.project_id or settings.project or ""
    target = settings.experiment_id or settings.log_stream_id or settings.log_stream or ""
    return f"{project}/{target}" if project or target else ""


def sampled(key: str, rate: float) -> bool:
    """Whether a session with this key is kept at sample ``rate``: the same answer everywhere.

    The first 8 bytes of SHA-256 of the key, as a fraction of 2**64, are compared with ``rate``
    (Python's ``hash()`` is salted per process, so it could not agree across hosts).

    Args:
        key: The session key (or, for automatic sessions, the session's id).
        rate: Share of sessions kept, 0..1.
    """
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") < rate * 2**64


def _str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), default=str)
    return str(value)


class SessionTracker:
    """Assigns traces to sessions and creates each session in Galileo exactly once.

    Args:
        store: Where sessions are kept; a :class:`MemorySessionStore` by default.
        idle_timeout_s: A session whose last trace ended longer ago than this is closed.
        max_age_s: A session older than this (from its first trace) rotates even if busy;
            ``None`` never.
        metadata_attributes: Root-span attributes copied (as strings) into ``user_metadata``.
        service_name: Stamped as ``service.name`` in ``user_metadata``; also names the automatic
            session of anonymous traces.
        max_tracked: Size of the default memory store (ignored when ``store`` is given).
        namespace: Prefix of every key in the store, so that apps logging to different
            projects or log streams can share one SQLite file without sharing sessions.
        sample_rate: Share of sessions kept (0..1); see :func:`sampled`.
        logging_method: Stamped on every session this tracker opens, and so on its Create
            Session and Log Traces (see :attr:`SessionRecord.logging_method`); ``None`` (the
            in-process default): the client's own, ``python_client``.
    """

    def __init__(
        self,
        store: SessionStore | None = None,
        *,
        idle_timeout_s: float = DEFAULT_SESSION_IDLE_TIMEOUT_S,
        max_age_s: float | None = None,
        metadata_attributes: Iterable[str] = (),
        service_name: str | None = None,
        max_tracked: int = 10_000,
        namespace: str = "",
        sample_rate: float = 1.0,
        logging_method: str | None = None,
    ) -> None:
        if idle_timeout_s < 0 or (max_age_s is not None and max_age_s < 0):
            raise ValueError("session timeouts cannot be negative")
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError("sample_rate must be between 0 and 1")
        self._sample_rate = sample_rate
        self._logging_method = logging_method
        self._store: SessionStore = (
            store if store is not None else MemorySessionStore(max_tracked=max_tracked)
        )
        # The memory store's fast path for a trace joining a live session: one lock, no
        # callbacks (a subclass, a networked or a failover store takes the general path).
        self._join_live = self._store.join_live if type(self._store) is MemorySessionStore else None
        self._idle_ns = int(idle_timeout_s * _NS)
        self._max_age_ns = None if max_age_s is None else int(max_age_s * _NS)
        self._metadata_attributes = tuple(metadata_attributes)
        self._service_name = service_name
        self._ns = f"{namespace}|" if namespace else ""
        # Guards _counts only; never held across a store call.
        self._counts_lock = threading.Lock()
        _FORK_AWARE.add(self)
        self._counts = {
            "traces": 0,
            "sessions_opened": 0,
            "rotated_idle": 0,
            "rotated_max_age": 0,
            "sessions_created": 0,
            "create_failed": 0,
            "previous_id_ignored": 0,
            "galileo_session_traces": 0,
            "sessions_sampled_out": 0,
            "traces_sampled_out": 0,
            "sessions_healed": 0,
            "sessions_recreated": 0,
            "previous_lost": 0,
        }
        # Guarded by _counts_lock: local ids heal() forgot, until they are created again.
        self._healing: OrderedDict[str, None] = OrderedDict()
        self._said_healed = False
        # The fast path of session_for_trace: session.id value -> store scope ("" for a value
        # that is not a usable key), bounded; and the traces it served, counted without a lock.
        # Written by the thread(s) resolving sessions; a lost race only recomputes an entry.
        self._scope_of_key: dict[str, str] = {}
        self._fast_traces = itertools.count()

    def _after_fork_in_child(self) -> None:
        # A lock held by another thread at fork time would stay held forever in the child.
        self._counts_lock = threading.Lock()

    def __enter__(self) -> SessionTracker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @classmethod
    def from_settings(
        cls,
        settings: GalileoSettings,
        *,
        logging_method: str | None = None,
        store: SessionStore | None = None,
    ) -> SessionTracker:
        """A tracker configured by ``GALILEO_SESSION_*`` settings and ``GALILEO_SERVICE_NAME``.

        Args:
            settings: The settings (store, idle timeout, max age, metadata attributes, ...).
            logging_method: As the constructor's. The store namespace does not name it: trackers
                of different clients on one store share a conversation's session, which carries
                the method of the tracker that opened it.
            store: The store to use (trackers sharing one); ``None`` builds one from ``settings``.
        """
        return cls(
            store if store is not None else store_from_settings(settings),
            idle_timeout_s=settings.session_idle_timeout,
            max_age_s=settings.session_max_age,
            metadata_attributes=settings.session_metadata_attributes,
            service_name=settings.service_name,
            max_tracked=settings.max_tracked_sessions,
            namespace=namespace_of(settings),
            sample_rate=settings.session_sample_rate,
            logging_method=logging_method,
        )

    @property
    def store(self) -> SessionStore:
        """The session store."""
        return self._store

    def _count(self, name: str, n: int = 1) -> None:
        with self._counts_lock:
            self._counts[name] += n

    # --- which session ------------------------------------------------------------------------
    def session_for_trace(
        self,
        root_attributes: Mapping[str, Any] | None,
        start_ns: int,
        end_ns: int,
        *,
        root_name: str | None = None,
    ) -> SessionRecord:
        """The session of a finished trace, opening (and chaining) a new one when needed.

        Call in trace-end order. Every span of the trace belongs to the returned session.

        Args:
            root_attributes: Attributes of the trace's root span (already stamped by the
                processor with the ``session()`` context or baggage).
            start_ns: Start of the root span (ns since the epoch).
            end_ns: End of the root span (ns since the epoch).
            root_name: Name of the root span; kept in ``user_metadata`` of a new session.
        """
        attrs: Mapping[str, Any] = root_attributes or {}
        join_live = self._join_live
        if join_live is not None:
            # The common case, first: a root span that names its key in ``session.id`` and
            # nothing that changes how it is read, joining its live session. One store lock, a
            # scope looked up by the key's value, a lock-free count.
            # Root attributes that change how ``session.id`` is read (an existing Galileo
            # session, a key from baggage, the app's previous session) send a trace down the
            # general path; other key attributes rank below session.id, so they cannot matter.
            # Four lookups, not a set's isdisjoint(attrs): that walks every attribute.
            raw_key = attrs.get(SESSION_ID)
            if (
                type(raw_key) is str
                and GALILEO_SESSION_ID not in attrs
                and CAPTURED_GALILEO_ID not in attrs
                and GALILEO_SESSION_FROM_BAGGAGE not in attrs
                and SESSION_PREVIOUS_ID not in attrs
            ):
                scope = self._scope_of_key.get(raw_key)
                if scope is None:
                    scope = self._plain_scope(raw_key)
                if scope:
                    joined = join_live(scope, start_ns, end_ns, self._idle_ns, self._max_age_ns)
                    if joined is not None:
                        next(self._fast_traces)
                        if not joined.sampled:
                            self._count("traces_sampled_out")
                        return joined
        return self._general(attrs, start_ns, end_ns, root_name)

    def _general(
        self, attrs: Mapping[str, Any], start_ns: int, end_ns: int, root_name: str | None
    ) -> SessionRecord:
        """:meth:`session_for_trace` past its fast path: a new session, or a trace not plain.

        Apart from the fast path because its closures make cells of the variables they read,
        and Python makes those cells on every call of the function that holds them.
        """
        existing = galileo_session_id(attrs)
        if existing is not None:
            return self._existing(existing)
        key = session_key(attrs)
        user = user_id(attrs)
        scope = self._ns + scope_of(key, user, self._service_name)
        if self._join_live is not None and SESSION_PREVIOUS_ID not in attrs:
            # The app's previous id only matters to a new session; a live one is joined as is.
            joined = self._join_live(scope, start_ns, end_ns, self._idle_ns, self._max_age_ns)
            if joined is not None:
                with self._counts_lock:
                    self._counts["traces"] += 1
                    if not joined.sampled:
                        self._counts["traces_sampled_out"] += 1
                return joined
        user_key = None if user is None else self._ns + user
        self._count("traces")

        # The app's session.previous_id, looked up before the atomic section (which must not do
        # I/O); only consulted if this trace opens a new session.
        app_previous: SessionRecord | None = None
        app_previous_uuid: str | None = None
        raw_previous = previous_id(attrs)
        if raw_previous is not None:
            app_previous = self._store.latest(self._ns + "key:" + raw_previous)
            if app_previous is None:
                app_previous_uuid = as_uuid4(raw_previous)

        idle_ns, max_age_ns = self._idle_ns, self._max_age_ns
        reason: list[str] = []
        made: list[str] = []  # local ids open_new made (an optimistic store may call it twice)

        def is_live(current: SessionRecord, last_end_ns: int) -> bool:
            if start_ns - last_end_ns > idle_ns:
                reason[:] = ["rotated_idle"]
                return False
            if max_age_ns is not None and start_ns - current.started_ns > max_age_ns:
                reason[:] = ["rotated_max_age"]
                return False
            return True

        def open_new(
            scope_last: SessionRecord | None, user_last: SessionRecord | None
        ) -> SessionRecord:
            previous: SessionRecord | None
            if app_previous is not None and app_previous.key == scope:
                # Our own key: the store's view is fresher than the lookup made before.
                previous = scope_last or app_previous
            elif app_previous is not None:
                previous = app_previous
            elif app_previous_uuid is not None:
                previous = None
            elif key is not None:
                previous = scope_last or user_last
            else:
                previous = user_last or scope_last
            local_id = str(uuid.uuid4())
            made.append(local_id)
            return SessionRecord(
                local_id=local_id,
                key=scope,
                external_id=key,
                name=session_name(attrs) or key,
                user_id=user,
                previous_local_id=previous.local_id if previous else None,
                previous_galileo_id=(
                    previous.galileo_id if previous is not None else app_previous_uuid
                ),
                user_metadata=self._metadata(attrs, user, root_name),
                started_ns=start_ns,
                sampled=sampled(key if key is not None else local_id, self._sample_rate),
                logging_method=self._logging_method,
            )

        record = self._store.open_or_join(
            scope,
            user_key=user_key,
            end_ns=end_ns,
            is_live=is_live,
            open_new=open_new,
        )
        if record.local_id in made:
            self._count("sessions_opened")
            if reason:
                self._count(reason[0])
            if not record.sampled:
                self._count("sessions_sampled_out")
        if not record.sampled:
            self._count("traces_sampled_out")
        if raw_previous is not None and app_previous is None and app_previous_uuid is None:
            self._count("previous_id_ignored")
        return record

    def _plain_scope(self, raw_key: str) -> str:
        """The store scope of a plain ``session.id`` value ("" when it is not a usable key)."""
        key = session_key({SESSION_ID: raw_key})
        scope = "" if key is None else self._ns + scope_of(key, None, self._service_name)
        cache = self._scope_of_key
        if len(cache) >= _SCOPE_CACHE_MAX:
            cache.clear()
        cache[raw_key] = scope
        return scope

    def _existing(self, galileo_id: str) -> SessionRecord:
        """The record of a trace sent to an existing Galileo session: nothing to open or create."""
        self._count("traces")
        self._count("galileo_session_traces")
        record = SessionRecord(
            local_id=galileo_id,
            key=self._ns + "galileo:" + galileo_id,
            galileo_id=galileo_id,
            sampled=sampled(galileo_id, self._sample_rate),
            logging_method=self._logging_method,
        )
        if not record.sampled:
            self._count("traces_sampled_out")
        return record

    def _metadata(
        self, attrs: Mapping[str, Any], user: str | None, root_name: str | None = None
    ) -> dict[str, str]:
        meta: dict[str, str] = {}
        if user is not None:
            meta[USER_ID] = user
        if root_name:
            meta[ROOT_SPAN_NAME] = root_name
        service = self._service_name or attrs.get(SERVICE_NAME)
        if service:
            meta[SERVICE_NAME] = _str(service)
        for name in self._metadata_attributes:
            value = attrs.get(name)
            if value is not None and not is_scrubbed(value):
                meta[name] = _str(value)
        extra = attrs.get(GALILEO_SESSION_METADATA)
        if isinstance(extra, str) and extra and not is_scrubbed(extra):
            try:
                parsed = json.loads(extra)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                meta.update({str(k): _str(v) for k, v in parsed.items()})
        return meta

    # --- Create Session -----------------------------------------------------------------------
    def payload(self, record: SessionRecord) -> dict[str, Any]:
        """The Create Session arguments of ``record``, given what is known of its previous session.

        Keys: ``name``, ``external_id``, ``previous_session_id``, ``user_metadata``, and
        ``logging_method`` when the record has one.
        """
        previous_galileo_id = record.previous_galileo_id
        local_id = record.previous_local_id
        for _ in range(_MAX_CHAIN):
            previous = self._store.get(local_id) if local_id is not None else None
            if previous is None:
                break
            if previous.sampled:
                if previous.galileo_id is not None:
                    previous_galileo_id = previous.galileo_id
                break
            # Sampled out, so never created: its predecessor takes its place in the chain.
            previous_galileo_id = previous.previous_galileo_id
            local_id = previous.previous_local_id
        out: dict[str, Any] = {
            "name": record.name,
            "external_id": record.external_id,
            "previous_session_id": previous_galileo_id,
            "user_metadata": dict(record.user_metadata),
        }
        if record.logging_method is not None:
            out["logging_method"] = record.logging_method
        return out

    def ensure_created(
        self,
        record: SessionRecord,
        create: Callable[[dict[str, Any]], str],
        *,
        timeout_s: float | None = None,
    ) -> str:
        """The Galileo id of ``record``, creating it (and, first, its uncreated predecessors).

        ``create(payload)`` is called exactly once per session across the threads and processes
        that share the store; ``payload`` holds the :meth:`payload` keys. If ``create`` raises
        (e.g. :class:`~galileo_otel.errors.APIError`), nothing is recorded and the error
        propagates; a later call tries again.

        Args:
            record: A record from :meth:`session_for_trace` (or restored with ``from_dict``).
            create: Calls Create Session and returns the new session's id.
            timeout_s: Longest wait for another thread or process that is creating the same
                session; ``None`` waits until its lease runs out.

        Raises:
            TimeoutError: ``timeout_s`` passed while someone else was still creating it.
        """
        if record.galileo_id is not None:
            return record.galileo_id
        self._store.put(record)  # a record restored from the spool may be unknown here
        if record.galileo_id is not None:
            return record.galileo_id
        # Chain order: the previous session must exist before the next one names it.
        chain = [record]
        seen = {record.local_id}
        previous_local_id = record.previous_local_id
        while previous_local_id is not None and len(chain) < _MAX_CHAIN:
            if previous_local_id in seen:
                break
            previous = self._store.get(previous_local_id)
            if previous is None or previous.galileo_id is not None:
                break
            if previous.sampled:  # a sampled-out session is never created; skip over it
                chain.append(previous)
            seen.add(previous_local_id)
            previous_local_id = previous.previous_local_id
        for pending in reversed(chain):
            payload = self.payload(pending)
            try:
                galileo_id = self._store.create_once(
                    pending.local_id,
                    _bind(create, payload, pending.local_id, self._created, self._previous_lost),
                    timeout_s=timeout_s,
                )
            except BaseException:
                self._count("create_failed")
                raise
            if payload["previous_session_id"] is not None and pending.previous_galileo_id is None:
                pending.previous_galileo_id = payload["previous_session_id"]
            pending.galileo_id = galileo_id
        return record.galileo_id or galileo_id

    def _created(self, local_id: str) -> None:
        with self._counts_lock:
            self._counts["sessions_created"] += 1
            if self._healing.pop(local_id, False) is None:
                self._counts["sessions_recreated"] += 1

    def _previous_lost(self, previous_id: str) -> None:
        """Create Session said the previous session does not exist: created without the link."""
        self._count("previous_lost")
        logger.debug(
            "galileo-otel: previous session %s unknown to Galileo; not linked", previous_id
        )

    # --- healing ------------------------------------------------------------------------------
    def heal(self, record: SessionRecord, stale_galileo_id: str, why: str = "") -> bool:
        """Forget a Galileo session the server no longer has, so that it is created again.

        Call when Log Traces answered that ``stale_galileo_id`` does not exist (see
        :func:`galileo_otel.sessions.heal.session_missing`). The store drops the id only if it
        still holds it (compare-and-delete: a session another process already created again
        keeps its new id), and so does ``record``. The next :meth:`ensure_created` of the
        record creates the session (once across the processes sharing the store), chained to
        what is known; the caller then resends its batch. Logged once per tracker, naming the
        store; counted as ``sessions_healed`` (forgotten here) and ``sessions_recreated``
        (created again here).

        Args:
            record: The session the rejected batch belongs to.
            stale_galileo_id: The Galileo id the server said it does not know.
            why: The server's words, for the log line.

        Returns:
            ``False`` when there is nothing of ours to make again: the app named that Galileo
            session itself (``galileo.session.id``). The caller then sets the batch aside.
        """
        if record.key.startswith(self._ns + "galileo:") or record.local_id == stale_galileo_id:
            return False
        forget = getattr(self._store, "forget_created", None)
        forgot = bool(forget(record.local_id, stale_galileo_id)) if forget is not None else False
        if record.galileo_id == stale_galileo_id:
            record.galileo_id = None
        with self._counts_lock:
            if forgot:
                self._counts["sessions_healed"] += 1
            self._healing[record.local_id] = None
            while len(self._healing) > _MAX_HEALING:
                self._healing.popitem(last=False)
            first, self._said_healed = not self._said_healed, True
        if first:
            logger.warning(
                "galileo-otel: Galileo does not know session %s any more (%s); forgot it in the "
                "%s and creating it again, its batch resent. The server lost its sessions "
                "(restored, wiped or replaced) while the store remembered them; later ones are "
                "counted in stats() sessions.sessions_recreated",
                stale_galileo_id,
                why or "session does not exist",
                describe_store(self._store),
            )
        return True

    def stats(self) -> dict[str, int]:
        """Counters (traces, sessions opened/rotated/created, failures) and the store's counts."""
        with self._counts_lock:
            counts = dict(self._counts)
        # Traces that took session_for_trace's fast path (an itertools.count: next() is atomic).
        counts["traces"] += _count_value(self._fast_traces)
        counts.update({f"store_{k}": v for k, v in self._store.stats().items()})
        return counts

    def close(self) -> None:
        """Close the store."""
        self._store.close()


def _count_value(counter: itertools.count[int]) -> int:
    """The next value of an ``itertools.count`` without taking it (its repr: ``count(N)``)."""
    return int(repr(counter)[6:-1])


def _bind(
    create: Callable[[dict[str, Any]], str],
    payload: dict[str, Any],
    local_id: str,
    counted: Callable[[str], None],
    lost: Callable[[str], None],
) -> Callable[[], str]:
    def call() -> str:
        try:
            galileo_id = create(payload)
        except Exception as exc:
            previous = payload.get("previous_session_id")
            if previous is None or not previous_missing(exc):
                raise
            # The server lost the previous session too: the session is made without the link
            # (the payload is the caller's, so it records no previous id either).
            payload["previous_session_id"] = None
            galileo_id = create(payload)
            lost(str(previous))
        counted(local_id)
        return galileo_id

    return call
