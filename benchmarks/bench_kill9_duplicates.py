"""How often kill -9 makes a trace reach the server twice (reliable mode, one spool).

A child process sends traces continuously (one trace per Log Traces request) and is killed with
SIGKILL at a random moment, ``--rounds`` times; a last process drains the spool. The local
server counts every Log Traces request it receives (a zero-latency fault rule) and stores each
trace once (it deduplicates by id), so ``requests - stored`` is the number of wire duplicates.
``lost_durable`` must be 0: a trace whose batch reached the spool is never lost.

    .venv/bin/python benchmarks/bench_kill9_duplicates.py --rounds 10
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

from galileo_otel.server import serve_in_thread

KEY = "bench-key"

CHILD = textwrap.dedent(
    """
    import sys, time
    from opentelemetry.sdk.trace import TracerProvider
    from galileo_otel.export.convert import trace_uuid
    from galileo_otel.processor import GalileoSessionProcessor

    url, spool, tag = sys.argv[1], sys.argv[2], sys.argv[3]
    processor = GalileoSessionProcessor(
        api_key="bench-key", api_url=url, project="kill9", log_stream="default",
        spool_dir=spool, batch_delay=0.01, batch_max_traces=1, export_timeout=5.0,
    )
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("kill9")
    i = 0
    while True:
        with tracer.start_as_current_span(f"{tag}-{i}", attributes={"session.id": tag}) as root:
            pass
        print(trace_uuid(root.get_span_context().trace_id), flush=True)
        i += 1
        time.sleep(0.002)
    """
)

DRAIN = textwrap.dedent(
    """
    import sys
    from galileo_otel.processor import GalileoSessionProcessor
    processor = GalileoSessionProcessor(
        api_key="bench-key", api_url=sys.argv[1], project="kill9", log_stream="default",
        spool_dir=sys.argv[2],
    )
    ok = processor.force_flush(60000)
    processor.shutdown(10000)
    print("drained" if ok else "not drained", flush=True)
    """
)


def get(url: str, path: str) -> Any:
    req = urllib.request.Request(url + path, headers={"Galileo-API-Key": KEY})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="bench-kill9-"))
    spool = work / "spool"
    (work / "child.py").write_text(CHILD)
    (work / "drain.py").write_text(DRAIN)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GALILEO_", "OTEL_"))}
    with serve_in_thread(db_path=work / "galileo.db", api_key=KEY) as server:
        server.faults.latency("traces", seconds=0.0)  # counts every Log Traces request
        accepted: list[str] = []
        for r in range(args.rounds):
            proc = subprocess.Popen(
                [sys.executable, str(work / "child.py"), server.url, str(spool), f"r{r}"],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            time.sleep(rng.uniform(1.0, 3.0))  # imports take most of the first second
            os.kill(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate(timeout=30)
            accepted += out.split()
        drain = subprocess.run(
            [sys.executable, str(work / "drain.py"), server.url, str(spool)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        requests = int(server.faults.stats().get("latency", 0))
        stored = int(get(server.url, "/local/stats")["traces"])
    result = {
        "rounds": args.rounds,
        "traces_ended": len(accepted),
        "requests": requests,
        "stored": stored,
        "wire_duplicates": requests - stored,
        "duplicate_rate": round((requests - stored) / max(1, stored), 4),
        "ended_not_stored": len(accepted) - stored,
        "final_drain": drain.stdout.strip(),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
