"""Pins the SDK-internal reads of export/sdk_span.py to the installed opentelemetry-sdk."""

from importlib.metadata import version

from opentelemetry.sdk.trace import TracerProvider

from galileo_otel.export.sdk_span import plain_mapping, span_attributes, span_events, uses_fast_path


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
