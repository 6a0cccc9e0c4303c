"""Session resolution throughput per store: memory vs SQLite vs Redis, side by side.

What the export worker does for each finished trace: ``session_for_trace`` (join or open, rotate,
chain) and, once per session, ``ensure_created`` (Create Session is a stand-in returning a uuid,
so the store is what is measured). The workload: conversations with a user each, turns spread
so that some rotate (idle timeout), traces in end order. Traces/s = traces / wall time of the
loop; ``rt/trace`` = Redis round trips per trace (1 when a conversation's state is cached and
nobody else moved it). Each store runs in a fresh interpreter; Redis is a local redis-server on
127.0.0.1 (loopback round trip, tens of microseconds; a remote Redis adds its network round trip
per trace). ``threads`` > 1 runs that many resolver threads on one tracker (the pipeline uses one).

Run: ``python benchmarks/bench_sessions_store.py [--quick] [--redis-url redis://...]``.
Needs ``redis-server`` on PATH (or ``--redis-url``) and the ``[redis]`` extra.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, run_child, save, unused_port

S = 1_000_000_000
T0 = 1_764_000_000 * S
STORES = ["memory", "sqlite", "redis"]


def child(
    store_kind: str, url: str, traces: int, conversations: int, threads: int
) -> dict[str, Any]:
    from galileo_otel.sessions.failover import FailoverSessionStore
    from galileo_otel.sessions.redis_store import RedisSessionStore
    from galileo_otel.sessions.store import MemorySessionStore, SQLiteSessionStore
    from galileo_otel.sessions.tracker import SessionTracker

    tmp = tempfile.mkdtemp(prefix="bench-sessions-")
    store: Any
    if store_kind == "memory":
        store = MemorySessionStore()
    elif store_kind == "sqlite":
        store = SQLiteSessionStore(Path(tmp) / "sessions.db")
    else:
        store = FailoverSessionStore(RedisSessionStore(url), MemorySessionStore())
    tracker = SessionTracker(store, idle_timeout_s=600, namespace=f"bench/{uuid.uuid4().hex}")

    def create(payload: dict[str, Any]) -> str:
        return str(uuid.uuid4())

    def work(first: int, count: int, lane: int = 0, lanes: int = 1) -> None:
        # each thread owns the conversations of its lane, so every conversation's traces still
        # arrive in end order (as one export worker sees them) and rotation is the same
        for i in range(first, first + count):
            conv = i % conversations
            if conv % lanes != lane:
                continue
            # every conversation gets a turn every `conversations` traces, 10 s apart; every 50
            # rounds a 700 s gap (> the idle timeout): all sessions rotate and chain
            round_ = i // conversations
            start = T0 + round_ * 10 * S + (round_ // 50) * 700 * S
            attrs = {"session.id": f"conv-{conv}", "user.id": f"user-{conv % 97}"}
            record = tracker.session_for_trace(attrs, start, start + S)
            if record.galileo_id is None:
                tracker.ensure_created(record, create, timeout_s=30)

    # warm-up (connections, scripts loaded, caches, SQLite schema) on a separate namespace
    warm = SessionTracker(store, idle_timeout_s=600, namespace="bench/warm-up")
    for i in range(min(200, traces // 10)):
        warm.session_for_trace({"session.id": f"w{i}"}, T0, T0 + S)
    trips_before = tracker.stats().get("store_round_trips", 0)
    began = time.perf_counter()
    workers = [
        threading.Thread(target=work, args=(0, traces, lane, threads)) for lane in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - began
    stats = tracker.stats()
    tracker.close()
    shutil.rmtree(tmp, ignore_errors=True)
    done = stats["traces"]
    return {
        "store": store_kind,
        "threads": threads,
        "traces": done,
        "traces_per_s": done / elapsed,
        "us_per_trace": elapsed / done * 1e6,
        "rt/trace": (stats.get("store_round_trips", 0) - trips_before) / max(1, done),
        "sessions": stats["sessions_opened"],
        "conflicts": stats.get("store_conflicts", 0),
        "fallback": stats.get("store_fallback_calls", 0),
    }


def start_redis() -> tuple[subprocess.Popen[bytes], str, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: install it, or pass --redis-url")
    directory = tempfile.mkdtemp(prefix="bench-redis-")
    port = unused_port()
    proc = subprocess.Popen(
        [
            *(binary, "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", directory),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    client.close()
    return proc, url, directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="scaled down")
    parser.add_argument("--redis-url", help="use this Redis instead of starting redis-server")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(**json.loads(args.child))))
        return
    traces = 5_000 if args.quick else 50_000
    conversations = 200
    proc = None
    url = args.redis_url
    directory = None
    if url is None:
        proc, url, directory = start_redis()
    rows: list[dict[str, Any]] = []
    try:
        for threads in (1, 4):
            for kind in STORES:
                config = {
                    "store_kind": kind,
                    "url": url,
                    "traces": traces,
                    "conversations": conversations,
                    "threads": threads,
                }
                rows.append(run_child(Path(__file__), [json.dumps(config)]))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
    memory = {r["threads"]: r["traces_per_s"] for r in rows if r["store"] == "memory"}
    for row in rows:
        row["vs_memory"] = row["traces_per_s"] / memory[row["threads"]]
    columns = ["store", "threads", "traces", "traces_per_s", "us_per_trace", "vs_memory"]
    columns += ["rt/trace", "sessions", "conflicts", "fallback"]
    print_table("Session resolution per store (traces/s, higher is better)", rows, columns)
    path = save("sessions_store", {"quick": args.quick, "rows": rows})
    print(f"\nsaved {path}")


if __name__ == "__main__":
    main()
