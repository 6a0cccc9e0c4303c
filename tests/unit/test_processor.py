"""GalileoSessionProcessor: stamping on start, hand-off on end, never raising into the app."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

from galileo_otel.processor import GalileoSessionProcessor
from galileo_otel.sessions.context import baggage_default, session, set_baggage_default
from galileo_otel.sessions.tracker import SessionTracker
from galileo_otel.settings import GalileoSettings


class FakePipeline:
    def __init__(self, fail: bool = False) -> None:
        self.spans: list[ReadableSpan] = []
        self.fail = fail
        self.flushes: list[float | None] = []
        self.shutdowns: list[float | None] = []

    def submit(self, span: Any) -> bool:
        if self.fail:
            raise RuntimeError("pipeline exploded")
        self.spans.append(span)
        return True

    def force_flush(self, timeout_s: float | None = None) -> bool:
        self.flushes.append(timeout_s)
        if self.fail:
            raise RuntimeError("flush exploded")
        return True

    def shutdown(self, timeout_s: float | None = None) -> bool:
        self.shutdowns.append(timeout_s)
        if self.fail:
            raise RuntimeError("shutdown exploded")
        return True

    def stats(self) -> dict[str, int]:
        if self.fail:
            raise RuntimeError("stats exploded")
        return {"queued": len(self.spans)}


@pytest.fixture(autouse=True)
def _baggage_off() -> Iterator[None]:
    set_baggage_default(False)
    yield
    set_baggage_default(False)


def make(pipeline: FakePipeline | None = None, **overrides: Any) -> tuple[Any, Any, FakePipeline]:
    pipeline = pipeline or FakePipeline()
    processor = GalileoSessionProcessor(pipeline, **overrides)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    return processor, provider.get_tracer("test"), pipeline


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_stamps_session_and_hands_off() -> None:
    processor, tracer, pipeline = make()
    with session("conv-1", user_id="alice", name="Chat", metadata={"tier": "gold"}):
        with tracer.start_as_current_span("root"), tracer.start_as_current_span("child"):
            pass
    with tracer.start_as_current_span("outside"):
        pass
    assert [s.name for s in pipeline.spans] == ["child", "root", "outside"]
    for span in pipeline.spans[:2]:
        assert attrs(span) == {
            "session.id": "conv-1",
            "user.id": "alice",
            "galileo.session.name": "Chat",
            "galileo.session.metadata": '{"tier": "gold"}',
            "galileo.otel.conversation_key": "a" + b"conv-1".hex(),
            "galileo.otel.conversation_name": "a" + b"Chat".hex(),
        }
    assert attrs(pipeline.spans[2]) == {}
    assert processor.stats() == {"queued": 3, "processor_errors": 0}


def test_session_context_wins_over_start_attributes() -> None:
    _, tracer, pipeline = make()
    with session("ctx", user_id="ctx-user"):
        span = tracer.start_span("s", attributes={"session.id": "app", "user.id": "app-user"})
        span.end()
    assert attrs(pipeline.spans[0])["session.id"] == "ctx"
    assert attrs(pipeline.spans[0])["user.id"] == "ctx-user"
    # without a session(): the app's attributes are left alone
    span = tracer.start_span("s2", attributes={"session.id": "app"})
    span.end()
    assert attrs(pipeline.spans[1]) == {
        "session.id": "app",
        "galileo.otel.conversation_key": "a" + b"app".hex(),  # captured at start (sessions/)
    }


def test_inbound_baggage_is_stamped_unless_the_span_names_a_session() -> None:
    _, tracer, pipeline = make()
    ctx = baggage.set_baggage("session.id", "from-upstream")
    tracer.start_span("a", context=ctx).end()
    tracer.start_span("b", context=ctx, attributes={"gen_ai.conversation.id": "own"}).end()
    token = otel_context.attach(ctx)
    try:
        tracer.start_span("c").end()  # parent context taken from the current context
        with session("explicit"):
            tracer.start_span("d").end()
    finally:
        otel_context.detach(token)
    a, b, c, d = (attrs(s) for s in pipeline.spans)
    assert a == {
        "session.id": "from-upstream",
        "galileo.session.from_baggage": True,
        "galileo.otel.conversation_key": "b" + b"from-upstream".hex(),
    }
    assert b == {
        "gen_ai.conversation.id": "own",
        "galileo.otel.conversation_key": "a" + b"own".hex(),
    }
    assert c == a
    assert d == {
        "session.id": "explicit",
        "galileo.otel.conversation_key": "a" + b"explicit".hex(),
    }


def test_inbound_baggage_wins_over_a_falsy_key_attribute() -> None:
    _, tracer, pipeline = make()
    ctx = baggage.set_baggage("session.id", "from-upstream")
    tracer.start_span("e", context=ctx, attributes={"session.id": 0}).end()
    (e,) = (attrs(s) for s in pipeline.spans)
    assert e == {
        "session.id": "from-upstream",
        "galileo.session.from_baggage": True,
        "galileo.otel.conversation_key": "a" + b"0".hex(),
    }


def test_child_spans_read_their_own_baggage_not_their_roots() -> None:
    # Only a root captures keys; every child still reads the baggage of its own context, which
    # may differ from its root's (set between the two, or no baggage at the root at all).
    _, tracer, pipeline = make()
    with tracer.start_as_current_span("root"):
        token = otel_context.attach(baggage.set_baggage("session.id", "b1"))
        try:
            tracer.start_span("child-b1").end()
            tracer.start_span("child-b2", context=baggage.set_baggage("session.id", "b2")).end()
            tracer.start_span("child-own", attributes={"langfuse.session.id": "own"}).end()
        finally:
            otel_context.detach(token)
        tracer.start_span("child-none").end()
    with (
        tracer.start_as_current_span("root-b", context=baggage.set_baggage("session.id", "r")),
        tracer.start_as_current_span("child-of-b"),
    ):
        pass
    got = {s.name: attrs(s) for s in pipeline.spans}
    assert got["root"] == {}
    assert got["child-b1"] == {"session.id": "b1", "galileo.session.from_baggage": True}
    assert got["child-b2"] == {"session.id": "b2", "galileo.session.from_baggage": True}
    assert got["child-own"] == {"langfuse.session.id": "own"}  # no capture below a root
    assert got["child-none"] == {}
    assert got["root-b"] == {
        "session.id": "r",
        "galileo.session.from_baggage": True,
        "galileo.otel.conversation_key": "b" + b"r".hex(),
    }
    # start_as_current_span makes its span current in the current context, not in the one it
    # was given: the child sees no baggage.
    assert got["child-of-b"] == {}


def test_a_span_with_a_remote_parent_is_handled_as_a_root() -> None:
    _, tracer, pipeline = make()
    remote = trace.SpanContext(
        trace_id=0x1234, span_id=0x5678, is_remote=True, trace_flags=trace.TraceFlags(1)
    )
    ctx = trace.set_span_in_context(
        trace.NonRecordingSpan(remote), baggage.set_baggage("session.id", "up")
    )
    tracer.start_span("server", context=ctx).end()
    tracer.start_span("named", context=ctx, attributes={"session.id": "mine"}).end()
    server, named = (attrs(s) for s in pipeline.spans)
    assert server == {
        "session.id": "up",
        "galileo.session.from_baggage": True,
        "galileo.otel.conversation_key": "b" + b"up".hex(),
    }
    assert named == {"session.id": "mine", "galileo.otel.conversation_key": "a" + b"mine".hex()}


def test_root_capture_skips_scrubbed_keys_only() -> None:
    _, tracer, pipeline = make()
    scrubbed = "[Scrubbed due to 'session']"
    tracer.start_span("s", attributes={"session.id": scrubbed, "gen_ai.conversation.id": "c"}).end()
    tracer.start_span("b", attributes={"session.id": " [bracketed]"}).end()
    tracer.start_span("x", attributes={"session.id": scrubbed}).end()
    s, b, x = (attrs(span) for span in pipeline.spans)
    assert s["galileo.otel.conversation_key"] == "a" + b"c".hex()
    assert b["galileo.otel.conversation_key"] == "a" + b"[bracketed]".hex()
    assert "galileo.otel.conversation_key" not in x


def test_baggage_propagation_to_a_downstream_service() -> None:
    propagator = W3CBaggagePropagator()
    _, tracer, downstream = make()

    def call_downstream() -> dict[str, str]:
        carrier: dict[str, str] = {}
        propagator.inject(carrier)
        return carrier

    with session("conv-b", baggage=True):
        headers_on = call_downstream()
    with session("conv-x"):
        headers_off = call_downstream()
    assert headers_off == {}
    assert "session.id=conv-b" in headers_on["baggage"]
    # the downstream service: extracts the headers, its spans join the session
    incoming = propagator.extract(headers_on, context=otel_context.Context())
    token = otel_context.attach(incoming)
    try:
        with tracer.start_as_current_span("downstream-root"):
            pass
    finally:
        otel_context.detach(token)
    assert attrs(downstream.spans[0])["session.id"] == "conv-b"


def test_baggage_setting_sets_session_default() -> None:
    make(session_baggage=True)
    assert baggage_default() is True
    make(settings=GalileoSettings(session_baggage=False))
    assert baggage_default() is False
    processor = GalileoSessionProcessor(
        FakePipeline(), settings=GalileoSettings(service_name="a"), session_baggage=True
    )
    assert processor.settings.service_name == "a" and processor.settings.session_baggage is True
    assert baggage_default() is True


def test_never_raises_when_pipeline_raises(caplog: pytest.LogCaptureFixture) -> None:
    processor, tracer, pipeline = make(FakePipeline(fail=True))
    with caplog.at_level(logging.WARNING, logger="galileo_otel.processor"):
        for _ in range(3):
            with session("s"), tracer.start_as_current_span("x"):
                pass
        assert processor.force_flush(500) is False
        processor.shutdown()
        processor.shutdown()  # idempotent
    assert pipeline.flushes == [0.5] and pipeline.shutdowns == [None]
    stats = processor.stats()
    assert stats == {"processor_errors": 6}  # 3 submits, flush, shutdown, stats itself
    warnings = [r for r in caplog.records if r.name == "galileo_otel.processor"]
    assert len(warnings) == 1 and "on_end failed" in warnings[0].getMessage()


def test_on_start_never_raises() -> None:
    processor, _, _ = make()

    class Broken:
        attributes = None

        def set_attributes(self, attributes: Any) -> None:
            raise RuntimeError("broken span")

    with session("s"):
        processor.on_start(Broken())  # type: ignore[arg-type]
    processor.on_start(Broken(), baggage.set_baggage("session.id", "b"))  # type: ignore[arg-type]
    assert processor.stats()["processor_errors"] == 2


def test_flush_and_shutdown_delegate() -> None:
    processor, _, pipeline = make()
    assert processor.force_flush(2500) is True
    processor.shutdown(timeout_millis=1500)
    assert pipeline.flushes == [2.5] and pipeline.shutdowns == [1.5]


def test_logging_disabled_exports_nothing_but_still_stamps() -> None:
    processor = GalileoSessionProcessor(settings=GalileoSettings(logging_disabled=True))
    assert processor.pipeline is None
    provider = TracerProvider()
    provider.add_span_processor(processor)
    with session("quiet"), provider.get_tracer("t").start_as_current_span("x") as span:
        assert span.attributes["session.id"] == "quiet"  # type: ignore[index]
    assert processor.force_flush() is True
    processor.shutdown()
    assert processor.stats() == {"processor_errors": 0}


def test_builds_export_pipeline_lazily(tmp_path: Any) -> None:
    from galileo_otel.export.pipeline import ExportPipeline

    processor = GalileoSessionProcessor(
        api_key="k", project="p", spool_dir=str(tmp_path / "spool"), reliable=False
    )
    try:
        assert isinstance(processor.pipeline, ExportPipeline)
        assert "processor_errors" in processor.stats()
    finally:
        processor.shutdown(timeout_millis=2000)


def test_root_span_decides_the_session_of_its_trace() -> None:
    """Spans stamped by the processor, resolved by the tracker from the root's attributes."""
    _, tracer, pipeline = make()
    tracker = SessionTracker(idle_timeout_s=60)
    with session("conv-root", user_id="u"), tracer.start_as_current_span("root"):
        with session("other"), tracer.start_as_current_span("child"):
            pass
    child, root = pipeline.spans
    assert attrs(child)["session.id"] == "other"  # the child's own stamp...
    record = tracker.session_for_trace(root.attributes, root.start_time, root.end_time)  # type: ignore[arg-type]
    assert record.external_id == "conv-root" and record.user_id == "u"  # ...but the root decides
    # a later trace in the same session() joins the same session
    with session("conv-root", user_id="u"), tracer.start_as_current_span("root2"):
        pass
    root2 = pipeline.spans[-1]
    again = tracker.session_for_trace(root2.attributes, root2.start_time, root2.end_time)  # type: ignore[arg-type]
    assert again.local_id == record.local_id


def test_spans_started_in_threads_with_copied_context() -> None:
    import contextvars
    import threading

    _, tracer, pipeline = make()

    def work() -> None:
        with tracer.start_as_current_span("in-thread"):
            pass

    with session("threaded"):
        ctx = contextvars.copy_context()
    t = threading.Thread(target=ctx.run, args=(work,))
    t.start()
    t.join(10)
    assert attrs(pipeline.spans[0])["session.id"] == "threaded"
    assert trace.get_current_span() is trace.INVALID_SPAN
