"""Run every benchmark in turn (``--quick`` for the small versions) and say how long it took.

Run: ``python benchmarks/run_all.py [--quick]``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    "bench_compare.py",
    "bench_stages.py",
    "bench_encode.py",
    "bench_app_thread.py",
    "bench_throughput.py",
    "bench_memory.py",
    "bench_outages.py",
    "bench_gateway.py",
]
# Not run here: bench_instructions.py (needs valgrind, minutes even with --quick),
# bench_sessions_store.py (needs redis-server) and bench_kill9_duplicates.py (kills processes).


def main() -> int:
    flags = [a for a in sys.argv[1:] if a == "--quick"]
    t0 = time.perf_counter()
    failed = 0
    for name in BENCHMARKS:
        started = time.perf_counter()
        code = subprocess.call([sys.executable, str(HERE / name), *flags])
        failed += code != 0
        print(f"[{name}: {time.perf_counter() - started:.0f} s, exit {code}]", flush=True)
    print(f"\nall benchmarks: {time.perf_counter() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
