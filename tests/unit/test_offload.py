"""The export worker process's parent: the wire format (real SDK spans -> tuples -> marshal ->
rebuilt spans convert exactly like the originals), the launch (settings travel without the API
key in them), the hand-off, and the replay buffer with its checkpoint policy."""

from __future__ import annotations

import io
import json
import marshal
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from galileo_otel.export.assemble import AssembledTrace, TraceAssembler
from galileo_otel.export.convert import convert_trace
from galileo_otel.export.offload import (
    SETTINGS_ENV,
    ReplayBuffer,
    extract_span,
    make_resource,
    read_frame,
    rebuild_span,
    settings_env,
    write_frame,
)
from galileo_otel.export.record import Rebuilder
from galileo_otel.export.sdk_span import span_attributes
from galileo_otel.settings import GalileoSettings


class Collect(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Any) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def make_spans() -> list[ReadableSpan]:
    sink = Collect()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "svc", "deployment.environment": "test"}),
        shutdown_on_exit=False,
    )
    provider.add_span_processor(SimpleSpanProcessor(sink))
    tracer = provider.get_tracer("t")
    for turn in range(3):
        attrs = {"session.id": f"c{turn}", "gen_ai.operation.name": "invoke_agent"}
        with tracer.start_as_current_span("agent", attributes=attrs):
            with tracer.start_as_current_span(
                "chat m",
                kind=SpanKind.CLIENT,
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": "gpt-x",
                    "gen_ai.usage.input_tokens": 12,
                    "gen_ai.usage.output_tokens": 7,
                    "gen_ai.response.finish_reasons": ("stop",),
                    "gen_ai.request.temperature": 0.5,
                },
            ) as chat:
                chat.add_event("gen_ai.user.message", {"content": f"question {turn}"})
                chat.add_event("gen_ai.choice", {"index": 0, "message": '{"content": "answer"}'})
            with tracer.start_as_current_span(
                "execute_tool lookup",
                attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup"},
            ) as tool:
                tool.set_status(Status(StatusCode.ERROR, "boom"))
                tool.add_event(
                    "exception", {"exception.type": "KeyError", "exception.message": "nope"}
                )
    return sink.spans


def assemble(spans: list[Any]) -> list[AssembledTrace]:
    asm = TraceAssembler(max_spans_per_trace=100, max_open_traces=100, trace_timeout_ns=10**12)
    out: list[AssembledTrace] = []
    for span in spans:
        out.extend(asm.add(span))
    return out


def test_rebuilt_spans_convert_exactly_like_the_originals() -> None:
    spans = make_spans()
    ids: dict[int, int] = {}
    resources: dict[int, Any] = {}
    items = []
    for span in spans:
        rid = ids.setdefault(id(span.resource), len(ids) + 1)
        resources.setdefault(rid, dict(span.resource.attributes))
        items.append(extract_span(span, rid))
    # through the wire format, as the worker process reads it
    buf = io.BytesIO()
    write_frame(buf, (1, items))
    buf.seek(0)
    _, wire = read_frame(buf)
    assert len(ids) == 1  # one resource, sent once
    rebuilt_res = {rid: make_resource(attrs) for rid, attrs in resources.items()}
    rebuilt = [rebuild_span(item, rebuilt_res) for item in wire]

    original = [convert_trace(t) for t in assemble(spans)]
    again = [convert_trace(t) for t in assemble(rebuilt)]
    assert len(original) == 3
    assert again == original
    # the conversion saw the things that only the events and status carry
    assert "boom" in json.dumps(original)
    assert "question 0" in json.dumps(original)


def test_extracted_span_is_plain_builtins() -> None:
    span = make_spans()[0]
    item = extract_span(span, 1)
    assert marshal.loads(marshal.dumps(item)) == item
    rebuilt = rebuild_span(item, {1: make_resource({"service.name": "svc"})})
    assert rebuilt.context.trace_id == span.context.trace_id
    assert rebuilt.parent is not None and span.parent is not None
    assert rebuilt.parent.span_id == span.parent.span_id
    assert rebuilt.kind is span.kind
    assert rebuilt.status.status_code is span.status.status_code
    assert dict(rebuilt.attributes) == dict(span.attributes or {})
    assert [e.name for e in rebuilt.events] == [e.name for e in span.events]


def _record(sid: int, psid: int | None, remote: bool = False, rid: int = 1) -> tuple[Any, ...]:
    return ("s", 7, sid, psid, remote, 1, 2, 0, 0, None, {"k": sid}, None, rid)


def test_a_rebuilder_shares_context_objects_between_neighbours() -> None:
    span_of = Rebuilder({1: make_resource({})}).span_of
    # children end first: two siblings of parent 2, then the parent (child of remote 1)
    a, b, parent = span_of(_record(3, 2)), span_of(_record(4, 2)), span_of(_record(2, 1, True))
    assert a.parent is b.parent  # siblings: one parent context object
    assert parent.context is a.parent  # the parent's own context is the one its children hold
    assert (parent.context.trace_id, parent.context.span_id, parent.context.is_remote) == (
        7,
        2,
        False,
    )
    assert parent.parent is not None and parent.parent.is_remote is True
    assert parent.parent.span_id == 1
    # a remote parent with the same ids is another context, not the shared one
    other = span_of(_record(5, 1, False))
    assert other.parent is not parent.parent and other.parent.is_remote is False
    root = span_of(_record(1, None))
    assert root.parent is None and root.context.span_id == 1
    assert span_of("not a record") == "not a record"


def test_rebuilders_keep_their_own_last_context() -> None:
    resources = {1: make_resource({})}
    one, two = Rebuilder(resources).span_of, Rebuilder(resources).span_of
    first = one(_record(3, 2))
    assert two(_record(4, 2)).parent is not first.parent  # no state shared between them
    assert one(_record(4, 2)).parent is first.parent
    # rebuild_span rebuilds one record at a time, with no state left behind
    assert rebuild_span(_record(4, 2), resources).parent is not first.parent


def test_records_of_unknown_resources() -> None:
    resources: dict[int, Any] = {}
    with pytest.raises(KeyError):
        Rebuilder(resources).span_of(_record(3, 2, rid=9))
    span = rebuild_span(_record(3, 2, rid=9), resources)  # an empty one, added
    assert span.resource is resources[9] and resources[9].attributes == {}
    assert span_attributes(span) is span.attributes == {"k": 3}  # read as is, not copied


def test_worker_settings_travel_in_env_with_the_key_apart() -> None:
    settings = GalileoSettings(
        api_key="sekret-key", project="p", reliable=False, batch_delay=0.2, export_process=True
    )
    env = settings_env(settings)
    assert env["GALILEO_API_KEY"] == "sekret-key"
    assert "sekret-key" not in env[SETTINGS_ENV]
    data = json.loads(env[SETTINGS_ENV])
    assert data["export_process"] is False
    child = GalileoSettings(**data, api_key=env["GALILEO_API_KEY"])
    assert child.reliable is False
    assert child.batch_delay == 0.2
    assert child.project == "p"


def test_the_worker_gets_the_destination_configure_resolved() -> None:
    from galileo_otel.api.client import Destination

    pid = "6a0b3c8e-1f2d-4e5f-9a8b-7c6d5e4f3a2b"
    lsid = "0f1e2d3c-4b5a-4968-8776-655443322110"
    settings = GalileoSettings(api_key="k", project="p")
    env = settings_env(settings, Destination(pid, "p", lsid, None, "default"))
    data = json.loads(env["GALILEO_OTEL_WORKER_SETTINGS"])
    assert data["project_id"] == pid and data["log_stream_id"] == lsid
    assert data["export_process"] is False


def test_worker_env_drops_the_zero_code_sitecustomize(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Under opentelemetry-instrument the worker must not run the zero-code set-up again."""
    import os

    from galileo_otel.export.offload import settings_env
    from galileo_otel.settings import GalileoSettings

    auto = "/venv/lib/site-packages/opentelemetry/instrumentation/auto_instrumentation"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([auto, "/app/src"]))
    env = settings_env(GalileoSettings(api_key="k" * 20, spool_dir="off"))
    assert env["PYTHONPATH"] == "/app/src"
    monkeypatch.setenv("PYTHONPATH", auto + os.sep)
    assert "PYTHONPATH" not in settings_env(GalileoSettings(api_key="k" * 20, spool_dir="off"))


def test_submit_queues_plain_tuples_and_numbers_each_resource_once() -> None:
    from galileo_otel.export.offload import OffloadPipeline

    spans = make_spans()
    other = TracerProvider(resource=Resource.create({"service.name": "other"})).get_tracer("o")
    with other.start_as_current_span("x") as foreign:
        pass
    pipeline = OffloadPipeline(GalileoSettings(api_key="k"), start=False, shutdown_at_exit=False)
    assert all(pipeline.submit(span) for span in [*spans, foreign])
    queued = list(pipeline.worker_queue())
    # The span objects are not kept: the queue holds what extract_span makes of them.
    assert queued[:-1] == [extract_span(span, queued[0][12]) for span in spans]
    assert {item[12] for item in queued[:-1]} == {queued[0][12]}
    assert queued[-1][12] != queued[0][12]
    marshal.dumps(queued)  # plain builtins all the way down


def test_a_span_submit_cannot_read_is_counted_by_the_worker_and_only_it_is_lost() -> None:
    from galileo_otel.export.offload import OffloadPipeline

    pipeline = OffloadPipeline(GalileoSettings(api_key="k"), start=False, shutdown_at_exit=False)
    assert pipeline.submit(object()) is True  # queued as it is; the worker tries the slow way
    assert pipeline.submit(make_spans()[0]) is True
    pipeline.pump()
    stats = pipeline.stats()
    assert stats["errors.offload_extract"] == 1
    assert stats["queue_size"] == 0 and pipeline.replay_spans() == 1


class _Pipe:
    def __init__(self) -> None:
        self.stdin = io.BytesIO()


def test_frames_wait_for_a_starting_worker_process_then_go_in_order() -> None:
    """Before the child is ready nothing is written; the store is bounded; nothing is lost."""
    from galileo_otel.export.offload import MSG_RESOURCE, MSG_SPANS, OffloadPipeline

    settings = GalileoSettings(api_key="k", max_queue_spans=6)
    pipeline = OffloadPipeline(settings, start=False, shutdown_at_exit=False)
    spans = make_spans()  # 9 spans
    pipe = _Pipe()
    pipeline.use_child(pipe)
    for span in spans[:6]:
        assert pipeline.submit(span)
    pipeline.pump()  # the child is not ready: kept, not written
    for span in spans[6:]:
        assert pipeline.submit(span)
    assert pipeline.pump()  # our store is full (6): the rest waits in the app queue (held back)
    assert pipe.stdin.getvalue() == b""
    assert pipeline.replay_spans() == 6 and len(pipeline.worker_queue()) == 3
    pipeline.child_ready()  # the child said it is set up
    pipeline.pump()  # what was kept is written, then the rest
    pipe.stdin.seek(0)
    frames = []
    while pipe.stdin.tell() < len(pipe.stdin.getvalue()):
        frames.append(read_frame(pipe.stdin))
    assert frames[0][0] == MSG_RESOURCE
    sent = [item for frame in frames if frame[0] == MSG_SPANS for item in frame[1]]
    assert [item[2] for item in sent] == [span.context.span_id for span in spans]
    assert pipeline.stats()["spans_dropped"] == 0


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_checkpoints_are_asked_for_only_when_the_replay_buffer_needs_one() -> None:
    """A checkpoint flushes the child's open batches early: not on a timer, only on need."""
    clock = Clock()
    replay = ReplayBuffer(100, min_interval_s=2.0, max_age_s=30.0, clock=clock)
    assert not replay.checkpoint_due()  # nothing to confirm
    assert replay.sleep_for() is None  # and nothing to wake up for
    replay.add(b"frame", 10)
    clock.now += 5
    assert not replay.checkpoint_due()  # small and young: no flush forced
    assert replay.sleep_for() == 25.0  # woken when it is old enough
    clock.now += 25
    assert replay.checkpoint_due()  # old enough
    clock.now -= 25
    replay.add(b"frame", 40)
    assert replay.checkpoint_due()  # half the bound
    replay.checkpoint_sent(7)
    assert not replay.checkpoint_due()  # one is unanswered
    assert replay.sleep_for() is None
    assert replay.checkpoint_answered(7, False) is True  # answered, but nothing confirmed
    assert replay.spans() == 50
    assert not replay.checkpoint_due()  # one was sent less than min_interval_s ago
    clock.now += 2
    assert replay.checkpoint_due()
    assert replay.checkpoint_answered(8, True) is False  # not one of ours (a flush's answer)


def test_a_confirmed_checkpoint_drops_what_it_covers_only() -> None:
    clock = Clock()
    replay = ReplayBuffer(100, clock=clock)
    first = replay.add(b"a", 3)
    replay.add(b"b", 4)
    replay.checkpoint_sent(1)  # covers a and b
    third = replay.add(b"c", 5)  # written after the checkpoint began: not covered
    assert replay.checkpoint_answered(1, True) is True
    assert replay.frames() == [(third, b"c")] and replay.spans() == 5
    assert first < third == replay.last_mark()
    replay.confirm(third)  # an app flush that returned True after c was written
    assert replay.frames() == [] and replay.spans() == 0


def test_the_bound_gives_up_the_oldest_written_frames_never_an_unwritten_one() -> None:
    replay = ReplayBuffer(10)
    marks = [replay.add(b"x", 4) for _ in range(3)]  # 12 spans, none written to the child yet
    assert replay.spans() == 12 and replay.overflowed() == 0
    assert replay.room() == 0
    replay.written(marks[0])  # the child has the first one (not confirmed)
    replay.add(b"y", 4)  # 16 spans: the written one goes, the unwritten ones stay
    assert [m for m, _ in replay.frames()] == [*marks[1:], marks[-1] + 1]
    assert replay.overflowed() == 1 and replay.spans() == 12


def test_a_new_child_forgets_the_old_ones_checkpoints_and_writes() -> None:
    replay = ReplayBuffer(10)
    mark = replay.add(b"x", 6)
    replay.written(mark)
    replay.checkpoint_sent(3)
    replay.new_child()
    assert replay.checkpoint_answered(3, True) is False  # an answer of the dead child
    assert replay.frames() == [(mark, b"x")]  # still to be replayed
    replay.add(b"y", 6)  # over the bound, but the new child has not been written the first
    assert replay.overflowed() == 0
    assert replay.take_all() == [b"x", b"y"]
    assert replay.spans() == 0 and replay.frames() == []


def test_requests_answer_by_number_and_fail_together() -> None:
    from galileo_otel.export.offload import MSG_FLUSH, MSG_STATS
    from galileo_otel.export.offload.requests import Requests

    requests = Requests()
    flush = requests.open(MSG_FLUSH, 5.0)
    stats, new = requests.stats_request(MSG_STATS, 1.0)
    assert new and requests.stats_request(MSG_STATS, 1.0) == (stats, False)  # one on its way
    assert requests.get(flush.msg[1]) is flush and requests.get(requests.next_seq()) is None
    assert requests.unanswered() == []  # nothing written to a child yet
    flush.sent = stats.sent = True
    assert requests.unanswered() == [flush, stats]  # oldest first
    assert requests.stats_answer() is None  # not answered yet
    stats.answer({"traces_confirmed": 3})
    assert requests.stats_answer() == {"traces_confirmed": 3}
    assert requests.stats_request(MSG_STATS, 1.0)[1] is True  # the next one is new
    requests.fail_all()
    assert flush.done.is_set() and flush.result is False
    requests.close(flush)
    assert requests.get(flush.msg[1]) is None


def test_the_child_has_a_checkpoint_that_keeps_losses_for_the_apps_flush() -> None:
    """The child answers the replay buffer's checkpoints with ExportPipeline.checkpoint, which
    settles without consuming loss reports; without it a checkpoint would be a force_flush and
    the app's next flush could say True after a loss."""
    import inspect

    from galileo_otel.export.offload import child
    from galileo_otel.export.pipeline import ExportPipeline

    assert callable(getattr(ExportPipeline, "checkpoint", None))
    assert '"checkpoint"' in inspect.getsource(child.main)
