"""Pins the SDK-internal reads of export/sdk_span.py to the installed opentelemetry-sdk."""

from importlib.metadata import version

from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.context import Context, attach, detach
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from galileo_otel.export import sdk_span
from galileo_otel.export.sdk_span import (
    baggage_value,
    plain_mapping,
    span_attributes,
    span_events,
    stamp_attributes,
    uses_fast_path,
    uses_fast_stamp,
)


def _ended_span():
    tracer = TracerProvider().get_tracer("t")
    span = tracer.start_span("s", attributes={"a": 1, "b": "x"})
    span.add_event("e", {"k": "v"})
    span.end()
    return span


def test_installed_sdk_keeps_the_internals_we_read():
    span = _ended_span()
    assert uses_fast_path(span), (
        f"opentelemetry-sdk {version('opentelemetry-sdk')} moved span._attributes._dict or "
        "span._events._dq: update galileo_otel/export/sdk_span.py"
    )


def test_reads_match_the_public_api():
    span = _ended_span()
    assert dict(span_attributes(span)) == dict(span.attributes)
    events = span_events(span)
    assert [e.name for e in events] == [e.name for e in span.events] == ["e"]
    assert plain_mapping(events[0].attributes) == {"k": "v"}


def test_fallback_for_non_sdk_spans():
    class Fake:
        attributes = {"a": 1}  # noqa: RUF012
        events = ()

    assert span_attributes(Fake()) == {"a": 1}
    assert span_events(Fake()) == ()
    assert not uses_fast_path(Fake())


def test_installed_sdk_lets_us_stamp_a_starting_span_directly():
    span = TracerProvider().get_tracer("t").start_span("s", attributes={"a": 1})
    assert uses_fast_stamp(span), (
        f"opentelemetry-sdk {version('opentelemetry-sdk')} changed BoundedAttributes (_dict, "
        "_immutable, maxlen, max_value_len): update galileo_otel/export/sdk_span.py"
    )
    stamp_attributes(span, {"k": "v", "a": "2"})
    assert dict(span.attributes) == {"a": "2", "k": "v"}


def test_stamp_honours_the_sdk_limits_through_the_public_call():
    limits = SpanLimits(max_attributes=2, max_attribute_length=3)
    span = TracerProvider(span_limits=limits).get_tracer("t").start_span("s", attributes={"a": 1})
    assert not uses_fast_stamp(span)
    stamp_attributes(span, {"k": "value", "j": "x"})
    assert dict(span.attributes) == {"k": "val", "j": "x"}  # cut to 3, oldest dropped
    roomy = TracerProvider(span_limits=SpanLimits(max_attributes=2)).get_tracer("t")
    full = roomy.start_span("s", attributes={"a": 1, "b": 2})
    stamp_attributes(full, {"k": "v"})
    assert len(full.attributes) == 2 and full.attributes["k"] == "v"


def test_stamp_never_writes_into_an_ended_span():
    span = _ended_span()
    stamp_attributes(span, {"k": "v"})
    assert "k" not in span.attributes


def test_baggage_value_matches_the_public_api():
    ctx = baggage.set_baggage("session.id", "abc")
    assert baggage_value("session.id", ctx) == baggage.get_baggage("session.id", ctx) == "abc"
    assert baggage_value("other", ctx) is None
    assert baggage_value("session.id", Context()) is None
    token = attach(ctx)
    try:
        assert baggage_value("session.id") == "abc"
    finally:
        detach(token)


def test_installed_api_lets_us_read_the_current_context_directly():
    assert sdk_span._current_get is not None, (
        "opentelemetry-api moved context._RUNTIME_CONTEXT._current_context: update "
        "galileo_otel/export/sdk_span.py"
    )
    token = attach(baggage.set_baggage("session.id", "direct"))
    try:
        assert sdk_span._current_get() is otel_context.get_current()
    finally:
        detach(token)


def test_baggage_value_follows_a_runtime_context_installed_later(monkeypatch):
    ctx = baggage.set_baggage("session.id", "other-runtime")

    class Runtime:
        def get_current(self):
            return ctx

    monkeypatch.setattr(otel_context, "_RUNTIME_CONTEXT", Runtime())
    assert baggage_value("session.id") == "other-runtime"


class _PublicOnly:
    """An SDK span seen through its public properties only (span_record's fallback path)."""

    def __init__(self, span):
        self._span = span

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._span, name)


def test_span_record_reads_the_internals_as_the_public_api_does():
    from opentelemetry.trace import (
        SpanKind,
        Status,
        StatusCode,
    )

    from galileo_otel.export.sdk_span import span_record

    tracer = TracerProvider().get_tracer("t")
    root = tracer.start_span("root", kind=SpanKind.SERVER, attributes={"a": 1})
    child = tracer.start_span("child", context=trace.set_span_in_context(root))
    child.add_event("e", {"k": "v"})
    child.set_status(Status(StatusCode.ERROR, "boom"))
    remote = SpanContext(7, 8, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    entry = tracer.start_span("entry", context=trace.set_span_in_context(NonRecordingSpan(remote)))
    spans = [child, root, entry]
    for span in spans:
        span.end()
    for span in spans:
        # The SDK keeps the span contexts the fast path reads as tuples.
        assert type(span._context) is SpanContext, "update galileo_otel/export/sdk_span.py"
        fast, public = span_record(span, 3), span_record(_PublicOnly(span), 3)
        assert fast == public
        assert [type(v) for v in fast] == [type(v) for v in public]
    assert span_record(child, 3)[3] == root.context.span_id
    assert span_record(child, 3)[8:10] == (StatusCode.ERROR.value, "boom")
    assert span_record(entry, 3)[3:5] == (8, True)
    assert span_record(root, 3)[3:5] == (None, False)
    assert span_record(root, 3)[7] == SpanKind.SERVER.value


def test_span_record_reads_other_contexts_through_their_properties():
    from types import SimpleNamespace

    from galileo_otel.export.sdk_span import span_record

    status = SimpleNamespace(status_code=SimpleNamespace(value=2), description="boom")
    span = SimpleNamespace(
        name="s",
        context=SimpleNamespace(trace_id=5, span_id=6),
        parent=SimpleNamespace(span_id=4, is_remote=1),
        start_time=1,
        end_time=2,
        kind=SimpleNamespace(value=0),
        status=status,
        attributes={"a": 1},
        events=(),
    )
    assert span_record(span, 9) == ("s", 5, 6, 4, True, 1, 2, 0, 2, "boom", {"a": 1}, None, 9)
    span.context, span.parent = None, None
    assert span_record(span, 9)[1:5] == (0, 0, None, False)
