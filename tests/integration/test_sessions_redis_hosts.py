"""Several real processes ("hosts", each with its own spool and pipeline) share sessions through
one real redis-server and ship to the real local server: the race, chains, lease takeover,
Redis killed and restarted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest_redis import RedisServer

from galileo_otel.api.filters import text

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOST = Path(__file__).with_name("redis_host.py")
NAMESPACE_PROJECT = "test"


class Host:
    """One host process, driven line by line."""

    def __init__(self, config: dict[str, Any]) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GALILEO_", "OTEL_"))}
        self.proc = subprocess.Popen(
            [sys.executable, str(HOST), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"host exited with {self.proc.wait(10)}"
        return dict(json.loads(line))

    def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def ask(self, **command: Any) -> dict[str, Any]:
        self.send(**command)
        return self.read()

    def turns(self, *turns: dict[str, Any]) -> None:
        assert self.ask(cmd="turns", turns=list(turns)) == {"ok": True, "flushed": True}

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask(cmd="exit")
            finally:
                self.proc.wait(30)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def turn(at_s: float, **attrs: Any) -> dict[str, Any]:
    return {"at_s": at_s, "attrs": {k.replace("__", "."): v for k, v in attrs.items()}}


@pytest.fixture
def hosts(local_project: Any, tmp_path: Path) -> Any:
    server, client, _project_id = local_project
    started: list[Host] = []

    def start(redis_url: str, n: int, **overrides: Any) -> list[Host]:
        for _ in range(n):
            index = len(started)
            settings = {
                "api_url": server.url,
                "api_key": server.api_key,
                "project": NAMESPACE_PROJECT,
                "log_stream": "default",
                "batch_delay": 0.05,
                "spool_dir": str(tmp_path / f"spool-{index}"),
                # a loaded CI machine must not look like a slow Redis (the failover has its own
                # tests with short timeouts); a refused connection still fails at once
                "session_store": redis_url + "?socket_timeout=5&socket_connect_timeout=5",
                "session_idle_timeout": 600,
                "service_name": "chat",
                **overrides,
            }
            started.append(Host({"settings": settings}))
        for host in started[-n:]:
            assert host.read() == {"ready": True}
        return started[-n:]

    start.client = client  # type: ignore[attr-defined]
    yield start
    for host in started:
        host.close()


def sessions_of(client: Any, external_id: str) -> list[dict[str, Any]]:
    return sorted(
        client.iter_sessions(filters=[text("external_id") == external_id]),
        key=lambda r: str(r["created_at"]),
    )


def test_three_hosts_of_four_threads_start_one_conversation(hosts: Any, redis_url: str) -> None:
    group = hosts(redis_url, 3)
    turns = [turn(i / 10, session__id="conv-race", user__id="alice") for i in range(4)]
    for host in group:  # the hosts start together, each releasing its four threads at once
        host.send(cmd="turns", turns=turns)
    for host in group:
        assert host.read() == {"ok": True, "flushed": True}
    (only,) = sessions_of(hosts.client, "conv-race")
    assert only["num_traces"] == 12
    assert hosts.client.count_sessions() == 1  # created once, by one host
    opened = [h.ask(cmd="stats")["tracker"]["sessions_opened"] for h in group]
    assert sum(opened) == 1


def test_rotation_and_chains_follow_the_user_whichever_host_sees_the_turn(
    hosts: Any, redis_url: str
) -> None:
    a, b, c = hosts(redis_url, 3, session_max_age=3000)
    a.turns(turn(0, session__id="conv-a", user__id="alice"))
    b.turns(turn(100, session__id="conv-a", user__id="alice"))  # joins a's session
    c.turns(turn(1000, session__id="conv-a", user__id="alice"))  # idle > 600 s: rotates
    a.turns(turn(1100, user__id="alice"))  # alice's automatic session: after her latest
    b.turns(turn(1200, session__id="conv-b", user__id="alice"))
    for at in (1300, 1900, 2500, 3100, 3700):  # conv-a busy, but older than max age at 4000+
        (a, b, c)[at // 600 % 3].turns(turn(at, session__id="conv-a", user__id="alice"))
    c.turns(turn(4100, session__id="conv-a", user__id="alice"))
    first, second, third = sessions_of(hosts.client, "conv-a")
    assert first["num_traces"] == 2 and first["previous_session_id"] is None
    assert second["previous_session_id"] == first["id"]
    assert second["num_traces"] == 1 + 5
    (auto,) = [s for s in hosts.client.iter_sessions() if not s.get("external_id")]
    (conv_b,) = sessions_of(hosts.client, "conv-b")
    assert auto["previous_session_id"] == second["id"]  # the user's latest, seen on host b
    assert conv_b["previous_session_id"] == auto["id"]
    assert third["previous_session_id"] == second["id"]  # a conversation keeps its own chain
    assert hosts.client.count_sessions() == 5
    names = {s["name"] for s in (first, second, third, conv_b)}
    assert names == {"conv-a", "conv-b"}  # the key, not the root span's name


def test_lease_taken_over_when_the_creator_is_killed(
    hosts: Any, redis_url: str, tmp_path: Path
) -> None:
    creator = Host(
        {
            "mode": "lease",
            "redis": redis_url,
            "lease_s": 1.0,
            "key": "conv-lease",
            "namespace": f"{NAMESPACE_PROJECT}/default",
        }
    )
    try:
        leased = creator.read()["leased"]
        creator.proc.send_signal(signal.SIGKILL)  # between taking the lease and Create Session
        creator.proc.wait(10)
    finally:
        for pipe in (creator.proc.stdin, creator.proc.stdout):
            if pipe is not None:
                pipe.close()
    takers = hosts(redis_url, 2)
    for i, host in enumerate(takers):  # both join the half-made session and need it created
        host.send(cmd="turns", turns=[turn(10 + i, session__id="conv-lease")])
    for host in takers:
        assert host.read() == {"ok": True, "flushed": True}
    (only,) = sessions_of(hosts.client, "conv-lease")
    assert only["num_traces"] == 2
    assert hosts.client.count_sessions() == 1
    created = [h.ask(cmd="stats")["tracker"]["sessions_created"] for h in takers]
    assert sorted(created) == [0, 1]
    assert leased  # the killed creator had opened the session the takers joined
    assert sum(h.ask(cmd="stats")["tracker"]["sessions_opened"] for h in takers) == 0


def test_redis_killed_and_restarted_mid_run(hosts: Any, tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis-own").start()
    try:
        a, b = hosts(redis.url, 2)
        a.turns(turn(0, session__id="conv-k", user__id="u"))
        b.turns(turn(10, session__id="conv-k", user__id="u"))
        redis.kill()
        a.turns(turn(20, session__id="conv-k", user__id="u"))  # per-process sessions: shipped
        b.turns(turn(30, session__id="conv-k", user__id="u"))
        stats = [h.ask(cmd="stats")["tracker"] for h in (a, b)]
        assert [s["store_outages"] for s in stats] == [1, 1]
        assert [s["store_fallback_sessions"] for s in stats] == [1, 1]
        redis.start()  # empty: no persistence
        deadline = time.monotonic() + 30
        for host in (a, b):  # the retry falls due a second after the failure
            while not host.ask(cmd="available")["available"]:
                assert time.monotonic() < deadline, "the store never became available again"
                time.sleep(0.05)
        a.turns(turn(40, session__id="conv-k", user__id="u"))
        b.turns(turn(50, session__id="conv-k", user__id="u"))
        stats = [h.ask(cmd="stats")["tracker"] for h in (a, b)]
        assert [s["store_down"] for s in stats] == [0, 0]
        sessions = sessions_of(hosts.client, "conv-k")
        # before the outage: one shared; during: one per host; after: one shared again
        assert sorted(s["num_traces"] for s in sessions) == [1, 1, 2, 2]
        assert sum(s["num_traces"] for s in sessions) == 6
    finally:
        redis.stop()
