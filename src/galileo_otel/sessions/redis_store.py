"""RedisSessionStore: the session store shared by many hosts, through one Redis (or Valkey).

Every atomic step runs inside Redis as a Lua script (redis-py ``Script``): the client never reads
then writes. Rotation stays the tracker's pure decision (``is_live`` / ``open_new``) made on span
timestamps, so every host decides alike; the store makes it stick with compare-and-set: a join
succeeds only if the scope's session is still the one the decision saw, an opening only if the
scope's session, its last end and the user's latest session are all unchanged. On a conflict the
script answers with the fresh state and the decision is made again (at most a few times).

Keys (``<prefix>`` is ``galileo-otel:v1:``, scopes and users already carry the tracker's
``<project>/<log stream>|`` namespace), each expiring ``ttl_s`` after its last use:

- ``<prefix>scope:<scope>``: hash ``id`` (current session), ``end`` (its last end, ns, a string);
- ``<prefix>user:<user>``: the user's latest session id;
- ``<prefix>rec:<local id>``: hash ``data`` (the record's JSON), ``gid`` (its Galileo id);
- ``<prefix>lease:<local id>``: who is creating the session, expiring after ``lease_s``.

Scripts touch several keys, so a Redis Cluster is not supported (one primary, with replicas or
Sentinel, is). Every Redis error surfaces as :class:`SessionStoreUnavailable`, which the tracker's
failover store turns into per-process sessions until Redis answers again.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from galileo_otel.sessions.store import (
    _FORK_AWARE,
    DEFAULT_CREATE_LEASE_S,
    CreationGates,
    IsLive,
    OpenNew,
    SessionRecord,
    SessionStoreUnavailable,
)

__all__ = [
    "DEFAULT_REDIS_TIMEOUT_S",
    "DEFAULT_STORE_TTL_S",
    "RedisSessionStore",
    "redact_url",
]

logger = logging.getLogger(__name__)

#: Longest wait for one Redis round trip (connect or answer) unless the URL says otherwise.
DEFAULT_REDIS_TIMEOUT_S = 1.0
#: How long a scope, user or session is remembered after its last use.
DEFAULT_STORE_TTL_S = 7 * 24 * 3600.0
_PREFIX = "galileo-otel:v1:"
# Attempts of one compare-and-set before giving up (each conflict means another host moved the
# same scope meanwhile; a handful is plenty, and the answer carries the fresh state).
_MAX_ATTEMPTS = 16
# Scopes whose last known state is kept here, so a steady conversation costs one round trip.
_CACHE_SIZE = 4096

# Numbers in Redis Lua are doubles: nanosecond timestamps (~1.8e18) would lose precision, so they
# travel and compare as decimal strings (same length first, then lexically).
_LUA_GT = """
local function gt(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
"""

# KEYS: scope, user (or ""), rec of expected current (or "")
# ARGV: prefix, mode ("read" | "join" | "open"), expected current id, expected end,
#       expected user latest id, end_ns, ttl_ms, new id, new data
_STEP = (
    _LUA_GT
    + """
local prefix, mode = ARGV[1], ARGV[2]
local ttl = tonumber(ARGV[7])
local cur = redis.call('HMGET', KEYS[1], 'id', 'end')
local cur_id, cur_end = cur[1] or '', cur[2] or '0'
-- A scope or user whose session record expired counts as new.
if cur_id ~= '' and redis.call('EXISTS', prefix .. 'rec:' .. cur_id) == 0 then
  cur_id, cur_end = '', '0'
end
local user_id = ''
if KEYS[2] ~= '' then user_id = redis.call('GET', KEYS[2]) or '' end
if user_id ~= '' and redis.call('EXISTS', prefix .. 'rec:' .. user_id) == 0 then user_id = '' end
local function state(status)
  local cur_rec = {false, false}
  if cur_id ~= '' then cur_rec = redis.call('HMGET', prefix .. 'rec:' .. cur_id, 'data', 'gid') end
  local user_rec = {false, false}
  if user_id ~= '' then user_rec = redis.call('HMGET', prefix .. 'rec:' .. user_id, 'data', 'gid') end
  return {status, cur_rec[1], cur_rec[2], cur_end, user_rec[1], user_rec[2]}
end
if mode == 'join' then
  if cur_id ~= ARGV[3] or cur_id == '' then return state('conflict') end
  if gt(ARGV[6], cur_end) then redis.call('HSET', KEYS[1], 'end', ARGV[6]) end
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', prefix .. 'rec:' .. cur_id, ttl)
  if KEYS[2] ~= '' then redis.call('PEXPIRE', KEYS[2], ttl) end
  local gid = redis.call('HGET', prefix .. 'rec:' .. cur_id, 'gid')
  return {'ok', false, gid}
end
if mode == 'open' then
  if cur_id ~= ARGV[3] or cur_end ~= ARGV[4] or user_id ~= ARGV[5] then
    return state('conflict')
  end
  local rec = prefix .. 'rec:' .. ARGV[8]
  redis.call('HSET', rec, 'data', ARGV[9])
  redis.call('PEXPIRE', rec, ttl)
  redis.call('HSET', KEYS[1], 'id', ARGV[8], 'end', ARGV[6])
  redis.call('PEXPIRE', KEYS[1], ttl)
  if KEYS[2] ~= '' then redis.call('SET', KEYS[2], ARGV[8], 'PX', ttl) end
  return {'ok'}
end
return state('state')
"""
)

# KEYS: rec ; ARGV: data, gid (or ""), ttl_ms  -> the stored gid (or false)
_PUT = """
local gid = redis.call('HGET', KEYS[1], 'gid')
if redis.call('HEXISTS', KEYS[1], 'data') == 0 then
  redis.call('HSET', KEYS[1], 'data', ARGV[1])
end
if not gid and ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], 'gid', ARGV[2])
  gid = ARGV[2]
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return gid
"""

# KEYS: rec, lease ; ARGV: owner, lease_ms -> {'done', gid} | {'claimed'} | {'wait', pttl}
_CLAIM = """
local gid = redis.call('HGET', KEYS[1], 'gid')
if gid then return {'done', gid} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', tonumber(ARGV[2])) then return {'claimed'} end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]))
  return {'claimed'}
end
return {'wait', redis.call('PTTL', KEYS[2])}
"""

# KEYS: rec, lease ; ARGV: owner, gid (or "" to only release), ttl_ms
_FINISH = """
if ARGV[2] ~= '' then
  if not redis.call('HGET', KEYS[1], 'gid') then redis.call('HSET', KEYS[1], 'gid', ARGV[2]) end
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return redis.call('HGET', KEYS[1], 'gid')
"""


# KEYS: rec ; ARGV: gid -> 1 if the record held that gid and no longer does, else 0
_FORGET = """
if redis.call('HGET', KEYS[1], 'gid') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'gid')
  return 1
end
return 0
"""


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs, reprs and errors)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _text(value: Any) -> str | None:
    if value is None or value is False:
        return None
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def _record(data: Any, gid: Any) -> SessionRecord | None:
    text = _text(data)
    if text is None:
        return None
    record = SessionRecord.from_dict(json.loads(text))
    record.galileo_id = _text(gid)
    return record


class RedisSessionStore:
    """A store shared by every host and process that points at the same Redis database.

    Args:
        url: ``redis://[[user]:password@]host:port/db``, ``rediss://...`` (TLS) or
            ``unix:///path/to/redis.sock?db=0``. Query parameters of redis-py (e.g.
            ``socket_timeout=2``) override the defaults below.
        ttl_s: How long a scope, user or session is remembered after its last use.
        lease_s: How long one host may hold the right to create a session before another may
            take over (a creator that died leaves its lease to run out).
        timeout_s: Longest wait for one round trip (socket connect and read).
        max_connections: Size of the connection pool.
        sleep: Used while waiting for another host's create.
        client: A ready ``redis.Redis`` (tests); ``url`` is then only used in messages.

    Raises:
        ConfigError: The ``redis`` package is not installed.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float = DEFAULT_STORE_TTL_S,
        lease_s: float = DEFAULT_CREATE_LEASE_S,
        timeout_s: float = DEFAULT_REDIS_TIMEOUT_S,
        max_connections: int = 16,
        sleep: Callable[[float], None] = time.sleep,
        client: Any = None,
    ) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            from galileo_otel.errors import ConfigError

            raise ConfigError(
                "GALILEO_SESSION_STORE names a Redis URL but the 'redis' package is not "
                "installed: pip install 'galileo-otel[redis]'"
            ) from None
        if ttl_s <= 0 or lease_s <= 0 or timeout_s <= 0:
            raise ValueError("ttl_s, lease_s and timeout_s must be positive")
        self._url = redact_url(url)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        if client is None:
            # One quick reconnect (a pooled connection may have died with a restarted server),
            # then give up: the failover store takes over rather than the worker waiting.
            client = redis.Redis.from_url(
                url,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 1),
                max_connections=max_connections,
                health_check_interval=30,
            )
        self._client = client
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._lease_ms = max(1, int(lease_s * 1000))
        self._sleep = sleep
        self._step = client.register_script(_STEP)
        self._put = client.register_script(_PUT)
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._forget = client.register_script(_FORGET)
        # Guards _cache, _unrecorded and the counters; never held across a round trip.
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[SessionRecord, str]] = OrderedDict()
        # Galileo ids learned while Redis was unreachable, written back once it answers.
        self._unrecorded: dict[str, str] = {}
        self._gates = CreationGates()
        self._owner = uuid.uuid4().hex
        self._counts = {"round_trips": 0, "conflicts": 0}
        _FORK_AWARE.add(self)

    def __repr__(self) -> str:
        return f"RedisSessionStore({self._url!r})"

    @property
    def url(self) -> str:
        """The Redis URL, password redacted."""
        return self._url

    def _after_fork_in_child(self) -> None:
        # redis-py's pool notices the new pid and opens fresh connections; locks held by other
        # threads at fork time would stay held forever in the child, so they are replaced.
        self._lock = threading.Lock()
        self._gates = CreationGates()
        self._owner = uuid.uuid4().hex

    # --- calls --------------------------------------------------------------------------------
    def _run(self, script: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        with self._lock:
            self._counts["round_trips"] += 1
        try:
            result = script(keys=keys, args=args)
        except self._errors as exc:
            raise SessionStoreUnavailable(
                f"Redis session store {self._url}: {type(exc).__name__}: {exc}"
            ) from exc
        if self._unrecorded:
            self._write_unrecorded()
        return result

    def _write_unrecorded(self) -> None:
        with self._lock:
            pending, self._unrecorded = self._unrecorded, {}
        for local_id, gid in pending.items():
            try:
                self._put(
                    keys=[_PREFIX + "rec:" + local_id],
                    args=[json.dumps({"local_id": local_id, "key": ""}), gid, self._ttl_ms],
                )
            except self._errors:
                with self._lock:
                    self._unrecorded.setdefault(local_id, gid)
                return

    def note_created(self, local_id: str, galileo_id: str) -> None:
        """Remember a Galileo id created while Redis was unreachable; written when it answers."""
        with self._lock:
            if len(self._unrecorded) < 10_000:
                self._unrecorded[local_id] = galileo_id

    # --- the SessionStore protocol ------------------------------------------------------------
    def open_or_join(
        self,
        scope: str,
        *,
        user_key: str | None,
        end_ns: int,
        is_live: IsLive,
        open_new: OpenNew,
    ) -> SessionRecord:
        """See :meth:`SessionStore.open_or_join`: compare-and-set, one round trip when steady."""
        scope_key = _PREFIX + "scope:" + scope
        user_redis_key = _PREFIX + "user:" + user_key if user_key is not None else ""
        end = str(int(end_ns))
        with self._lock:
            cached = self._cache.get(scope)
        user_last: SessionRecord | None = None
        state: tuple[SessionRecord | None, str, SessionRecord | None] | None = None
        if cached is not None and is_live(cached[0], int(cached[1])):
            # Live by a possibly stale last end means live by the true one (it only grows while
            # the session stays current), so joining needs only "is it still the current one".
            state = (cached[0], cached[1], None)
        for _ in range(_MAX_ATTEMPTS):
            if state is None:
                state = self._state(
                    self._run(
                        self._step,
                        [scope_key, user_redis_key],
                        [_PREFIX, "read", "", "", "", end, self._ttl_ms, "", ""],
                    )
                )
            current, last_end, user_last = state
            if current is not None and is_live(current, int(last_end)):
                answer = self._run(
                    self._step,
                    [scope_key, user_redis_key],
                    [_PREFIX, "join", current.local_id, "", "", end, self._ttl_ms, "", ""],
                )
                if _text(answer[0]) == "ok":
                    current.galileo_id = _text(answer[2]) or current.galileo_id
                    new_end = end if int(end) > int(last_end) else last_end
                    self._remember(scope, current, new_end)
                    return current
            else:
                record = open_new(current, user_last)
                answer = self._run(
                    self._step,
                    [scope_key, user_redis_key],
                    [
                        _PREFIX,
                        "open",
                        current.local_id if current is not None else "",
                        last_end if current is not None else "0",
                        user_last.local_id if user_last is not None else "",
                        end,
                        self._ttl_ms,
                        record.local_id,
                        json.dumps(record.to_dict()),
                    ],
                )
                if _text(answer[0]) == "ok":
                    self._remember(scope, record, end)
                    return record
            with self._lock:
                self._counts["conflicts"] += 1
            state = self._state(answer)
        raise SessionStoreUnavailable(
            f"Redis session store {self._url}: scope kept changing under {_MAX_ATTEMPTS} attempts"
        )

    @staticmethod
    def _state(answer: Any) -> tuple[SessionRecord | None, str, SessionRecord | None]:
        current = _record(answer[1], answer[2])
        last_end = _text(answer[3]) or "0"
        user_last = _record(answer[4], answer[5])
        return current, last_end, user_last

    def _remember(self, scope: str, record: SessionRecord, end: str) -> None:
        with self._lock:
            self._cache[scope] = (record, end)
            self._cache.move_to_end(scope)
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)

    def latest(self, scope: str) -> SessionRecord | None:
        """See :meth:`SessionStore.latest`."""
        answer = self._run(
            self._step,
            [_PREFIX + "scope:" + scope, ""],
            [_PREFIX, "read", "", "", "", "0", 1, "", ""],
        )
        return _record(answer[1], answer[2])

    def get(self, local_id: str) -> SessionRecord | None:
        """See :meth:`SessionStore.get`."""
        try:
            data, gid = self._client.hmget(_PREFIX + "rec:" + local_id, ["data", "gid"])
        except self._errors as exc:
            raise SessionStoreUnavailable(
                f"Redis session store {self._url}: {type(exc).__name__}: {exc}"
            ) from exc
        with self._lock:
            self._counts["round_trips"] += 1
        return _record(data, gid)

    def put(self, record: SessionRecord) -> None:
        """See :meth:`SessionStore.put`."""
        gid = self._run(
            self._put,
            [_PREFIX + "rec:" + record.local_id],
            [json.dumps(record.to_dict()), record.galileo_id or "", self._ttl_ms],
        )
        if record.galileo_id is None and _text(gid) is not None:
            record.galileo_id = _text(gid)

    def create_once(
        self, local_id: str, create: Callable[[], str], *, timeout_s: float | None = None
    ) -> str:
        """See :meth:`SessionStore.create_once`: a lease in Redis, taken over once it expires."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        rec_key, lease_key = _PREFIX + "rec:" + local_id, _PREFIX + "lease:" + local_id
        # Threads of this process queue on a local gate, so that only one of them polls Redis.
        with self._gates.hold(local_id, timeout_s):
            pause = 0.005
            while True:
                answer = self._run(self._claim, [rec_key, lease_key], [self._owner, self._lease_ms])
                status = _text(answer[0])
                if status == "done":
                    return str(_text(answer[1]))
                if status == "claimed":
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"session {local_id} is still being created by another host")
                left_s = max(0.001, int(answer[1]) / 1000.0) if int(answer[1]) > 0 else pause
                self._sleep(min(pause, left_s))
                pause = min(pause * 2, 0.25)
            try:
                galileo_id = create()
            except BaseException:
                try:
                    self._run(self._finish, [rec_key, lease_key], [self._owner, "", self._ttl_ms])
                except SessionStoreUnavailable:
                    pass  # the lease runs out by itself
                raise
            try:
                stored = self._run(
                    self._finish, [rec_key, lease_key], [self._owner, galileo_id, self._ttl_ms]
                )
            except SessionStoreUnavailable:
                # Created, but Redis went away before it heard: keep the answer, write it later.
                self.note_created(local_id, galileo_id)
                return galileo_id
            return _text(stored) or galileo_id

    def forget_created(self, local_id: str, galileo_id: str) -> bool:
        """See :meth:`SessionStore.forget_created`: compare-and-delete inside Redis (Lua)."""
        with self._lock:
            # This process's cached view of a scope must not bring the lost id back.
            for record, _end in self._cache.values():
                if record.local_id == local_id and record.galileo_id == galileo_id:
                    record.galileo_id = None
            if self._unrecorded.get(local_id) == galileo_id:
                del self._unrecorded[local_id]
        answer = self._run(self._forget, [_PREFIX + "rec:" + local_id], [galileo_id])
        return int(answer or 0) == 1

    def stats(self) -> dict[str, int]:
        """Round trips made and compare-and-set conflicts met (another host moved first)."""
        with self._lock:
            return dict(self._counts)

    def ping(self) -> bool:
        """Whether Redis answers (one round trip)."""
        try:
            return bool(self._client.ping())
        except self._errors:
            return False

    def close(self) -> None:
        """Close the connection pool (only this process's connections)."""
        try:
            self._client.close()
            pool = getattr(self._client, "connection_pool", None)
            if pool is not None and getattr(pool, "pid", os.getpid()) == os.getpid():
                pool.disconnect()
        except self._errors:  # pragma: no cover - closing a dead connection
            pass
