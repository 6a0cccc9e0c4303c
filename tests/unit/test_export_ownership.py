"""No object in export/ reaches into another's private state.

Every ``x._name`` in ``galileo_otel/export`` must be on ``self`` or ``cls`` (or ``super()``):
an object changes its own fields, and others ask it through a method. The same rule holds for
the benchmarks and the pipeline's tests, which drive export objects from outside. The
exceptions are named here with their reason; a new one needs a reason too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import galileo_otel.export

EXPORT = Path(galileo_otel.export.__file__).parent

# (module, expression) pairs allowed to read a private attribute, and why.
ALLOWED = {
    # The stdlib's documented way to leave a process without running exit hooks.
    ("child.py", "os._exit"),
    # The spool's entry handle lives in the spool's module and reads the spool's cached payload.
    ("spool.py", "entry._payload"),
}
# sdk_span.py is the one reader of the OpenTelemetry SDK's span internals (pinned by
# test_sdk_span.py against every supported SDK version): everything else reads spans through it.
EXEMPT_MODULES = {"sdk_span.py"}


def _private_reaches(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or (name.startswith("__") and name.endswith("__")):
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue
        if isinstance(owner, ast.Call) and ast.unparse(owner.func) == "super":
            continue
        expr = ast.unparse(node)
        if (path.name, expr) not in ALLOWED:
            found.append(f"{path.name}:{node.lineno}: {expr}")
    return found


def test_no_object_touches_another_objects_private_fields() -> None:
    modules = sorted(p for p in EXPORT.rglob("*.py") if p.name not in EXEMPT_MODULES)
    assert modules, EXPORT
    found = [hit for path in modules for hit in _private_reaches(path)]
    assert found == []


# Benchmarks and the pipelines' own tests drive the export objects through public seams too
# (ExportPipeline.ledger/batcher/spooler/senders/sink/settings, SenderPool.deliver_now,
# Batcher.run, worker_queue(), OffloadPipeline.child/use_child/child_ready/pump, encode_trace
# and encode_trace_stdlib). Found from this file, so a checkout without them (an installed
# package) is not scanned.
ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "tests" / "unit"
OUTSIDE = (
    sorted((ROOT / "benchmarks").glob("*.py"))
    + sorted(UNIT.glob("test_pipeline*.py"))
    + sorted(UNIT.glob("test_offload*.py"))
    + [UNIT / "test_exporter.py"]
)
OUTSIDE_ALLOWED = {
    # The stdlib's documented way to leave a process without running exit hooks.
    ("bench_memory.py", "os._exit"),
    ("bench_outages.py", "os._exit"),
    ("test_pipeline.py", "os._exit"),
    # The stock SDK's BatchSpanProcessor (the baseline, not ours): its queue is emptied between
    # rounds so the baseline is measured on the same queue size as ours.
    ("bench_app_thread.py", "processor._batch_processor"),
    ("bench_app_thread.py", "processor._batch_processor._queue"),
}


def test_benchmarks_and_pipeline_tests_use_public_seams() -> None:
    assert (ROOT / "benchmarks" / "bench_stages.py") in OUTSIDE
    assert (ROOT / "tests" / "unit" / "test_pipeline.py") in OUTSIDE
    for name in ("test_offload.py", "test_offload_parent.py", "test_exporter.py"):
        assert (UNIT / name) in OUTSIDE and (UNIT / name).exists(), name
    assert (ROOT / "benchmarks" / "bench_encode.py") in OUTSIDE
    found = [
        hit
        for path in OUTSIDE
        for hit in _private_reaches(path)
        if (path.name, hit.split(": ", 1)[1]) not in OUTSIDE_ALLOWED
    ]
    assert found == []


def test_the_scan_covers_the_subpackages() -> None:
    scanned = {p.relative_to(EXPORT).as_posix() for p in EXPORT.rglob("*.py")}
    assert {"offload/parent.py", "offload/replay.py", "offload/child.py"} <= scanned


def test_the_scan_sees_a_reach_when_there_is_one(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "class A:\n"
        "    def f(self, other):\n"
        "        self._mine = 1\n"
        "        super()._also_mine()\n"
        "        return other._theirs\n",
        encoding="utf-8",
    )
    assert _private_reaches(sample) == ["sample.py:5: other._theirs"]


# The in-process core: each object owns its thread(s) and state; the Ledger owns the one lock
# between them. Each module here is scanned by the rule above (a rename must keep it scanned).
COMPOSED = {
    "ledger.py": "Ledger",
    "batcher.py": "Batcher",
    "spooler.py": "Spooler",
    "senders.py": "SenderPool",
    "pipeline.py": "ExportPipeline",
}
# Which module of the core starts which threads.
THREAD_OWNERS = {"batcher.py", "spooler.py", "senders.py"}


def _calls(path: Path, name: str) -> list[int]:
    """Lines where ``threading.<name>(...)`` is called in ``path``."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and ast.unparse(node.func) == f"threading.{name}"
    ]


def test_the_composed_objects_are_scanned_and_define_their_class() -> None:
    for module, cls in COMPOSED.items():
        path = EXPORT / module
        assert path.exists(), module
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert cls in {n.name for n in tree.body if isinstance(n, ast.ClassDef)}, module
        assert _private_reaches(path) == []


def test_only_the_ledger_makes_conditions_and_only_owners_start_threads() -> None:
    core = [EXPORT / m for m in COMPOSED] + [EXPORT / "_stage.py", EXPORT / "handoff.py"]
    conditions = {p.name for p in core if _calls(p, "Condition")}
    assert conditions == {"ledger.py"}
    threads = {p.name for p in core if _calls(p, "Thread")}
    assert threads == THREAD_OWNERS


def test_every_lock_of_the_core_says_what_it_guards() -> None:
    # The comment line above (or on) a lock's definition names what it guards.
    for path in [EXPORT / m for m in COMPOSED] + [EXPORT / "_stage.py", EXPORT / "stats.py"]:
        lines = path.read_text(encoding="utf-8").splitlines()
        for lineno in _calls(path, "Lock"):
            context = " ".join(lines[max(0, lineno - 3) : lineno]).lower()
            assert "guards" in context, f"{path.name}:{lineno}"
