"""encode_within: a converted trace always fits one request; what was cut is visible and counted."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from conftest_convert import TRACE_ID, make_span
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from galileo_otel.export.assemble import AssembledTrace
from galileo_otel.export.convert import ConvertStats, convert_trace
from galileo_otel.export.fit import MIN_CUT_CHARS, cut_marker, encode_within
from trace_schema import assert_valid_trace, walk

MiB = 1024 * 1024


def _stdlib(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


ENCODERS: dict[str, Callable[[Any], bytes]] = {"orjson": orjson.dumps, "stdlib": _stdlib}


@pytest.fixture(params=sorted(ENCODERS))
def encode(request: pytest.FixtureRequest) -> Callable[[Any], bytes]:
    return ENCODERS[request.param]


def _trace(*spans: Any) -> dict[str, Any]:
    return convert_trace(AssembledTrace(TRACE_ID, spans[0], list(spans), True))


def _chat(span_id: int, parent: int | None, user_text: str, **extra: Any) -> Any:
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "m",
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": user_text}]}]
        ),
        "gen_ai.output.messages": json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": "ok"}]}]
        ),
        **extra,
    }
    return make_span("chat", span_id, parent, start=span_id, attributes=attrs)


def test_a_trace_that_fits_is_encoded_once_and_untouched(encode: Callable[[Any], bytes]) -> None:
    trace = _trace(make_span("root", 1), _chat(2, 1, "hello"))
    expected = encode(trace)
    stats = ConvertStats()
    assert encode_within(trace, 4 * MiB, encode, stats) == expected
    assert stats.as_dict() == {
        "chars_cut": 0,
        "duplicate_llm_steps": 0,
        "spans_cut": 0,
        "texts_cut": 0,
        "traces_cut": 0,
    }


def test_huge_genai_messages_are_cut_with_a_marker_to_fit(encode: Callable[[Any], bytes]) -> None:
    big = "x" * (6 * MiB)
    trace = _trace(make_span("root", 1), _chat(2, 1, big))
    stats = ConvertStats()
    out = encode_within(trace, 4 * MiB, encode, stats)
    assert len(out) <= 4 * MiB
    sent = json.loads(out)
    assert_valid_trace(sent)
    (step,) = sent["spans"]
    content = step["input"][0]["content"]
    kept = content.split(" …[")[0]
    # The text is there twice (the step's input and the trace's): each keeps about half the room.
    assert kept == "x" * len(kept) and len(kept) > 1.9 * MiB
    assert sent["input"].split(" …[")[0] == kept
    assert content.endswith(cut_marker(len(big) - len(kept)))
    assert step["output"]["content"] == "ok"  # small texts are left alone
    assert stats.traces_cut == 1 and stats.spans_cut == 0
    # The step's input and the trace's input (the first user message) were both cut.
    assert stats.texts_cut == 2
    assert sent["user_metadata"]["otel.cut_texts"] == "2"
    assert int(sent["user_metadata"]["otel.cut_characters"]) == stats.chars_cut


def test_a_huge_openinference_input_value_is_cut(encode: Callable[[Any], bytes]) -> None:
    attrs = {"openinference.span.kind": "CHAIN", "input.value": "é" * (3 * MiB)}
    trace = _trace(make_span("chain", 1, attributes=attrs))
    out = encode_within(trace, 1 * MiB, encode)
    assert len(out) <= 1 * MiB
    sent = json.loads(out)
    assert_valid_trace(sent)
    assert sent["input"].endswith("characters cut to fit the request size]")


def test_escape_heavy_text_still_fits(encode: Callable[[Any], bytes]) -> None:
    # Each control character takes six bytes in JSON: a cut planned in characters saves more.
    attrs = {"openinference.span.kind": "CHAIN", "input.value": "\x01" * 400_000}
    trace = _trace(make_span("chain", 1, attributes=attrs))
    out = encode_within(trace, 64 * 1024, encode)
    assert len(out) <= 64 * 1024
    assert_valid_trace(json.loads(out))


def test_media_too_big_to_keep_becomes_a_text_saying_what_it_was(
    encode: Callable[[Any], bytes],
) -> None:
    image = "A" * (2 * MiB)
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.input.messages": json.dumps(
            [
                {
                    "role": "user",
                    "parts": [
                        {"type": "text", "content": "What is this?"},
                        {"type": "blob", "mime_type": "image/png", "content": image},
                    ],
                }
            ]
        ),
    }
    trace = _trace(make_span("chat", 1, attributes=attrs))
    stats = ConvertStats()
    out = encode_within(trace, 1 * MiB, encode, stats)
    assert len(out) <= 1 * MiB
    sent = json.loads(out)
    assert_valid_trace(sent)
    assert sent["spans"][0]["input"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {
            "type": "text",
            "text": f"[image/png: {len(image)} characters of base64 cut to fit the request size]",
        },
    ]
    assert stats.texts_cut == 1 and stats.chars_cut == len(image)


def test_when_every_text_is_cut_the_latest_steps_go_and_are_counted(
    encode: Callable[[Any], bytes],
) -> None:
    spans = [make_span("root", 1)] + [
        make_span(f"step {i}", i, 1, start=i, attributes={f"k{j}": "v" * 60 for j in range(20)})
        for i in range(2, 202)
    ]
    trace = _trace(*spans)
    stats = ConvertStats()
    out = encode_within(trace, 32 * 1024, encode, stats)
    assert len(out) <= 32 * 1024
    sent = json.loads(out)
    assert_valid_trace(sent)
    kept = walk(sent)
    assert 0 < len(kept) < 200
    assert stats.spans_cut == 200 - len(kept)
    assert sent["user_metadata"]["otel.cut_steps"] == str(stats.spans_cut)
    # The earliest steps are the ones kept.
    assert [s["name"] for s in kept] == [f"step {i}" for i in range(2, 2 + len(kept))]


def test_a_deep_trace_is_walked_without_recursion(encode: Callable[[Any], bytes]) -> None:
    trace: dict[str, Any] = {"type": "trace", "user_metadata": {}, "spans": []}
    node = trace
    for i in range(3_000):
        child = {"type": "workflow", "name": str(i), "input": "y" * 100, "spans": []}
        node["spans"].append(child)
        node = child
    out = encode_within(trace, 200_000, _stdlib_deep)
    assert len(out) <= 200_000


def _stdlib_deep(value: Any) -> bytes:
    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        return _stdlib(value)
    finally:
        sys.setrecursionlimit(limit)


texts = st.text(max_size=3_000) | st.builds(
    lambda n, c: c * n, st.integers(0, 40_000), st.sampled_from('a\x00é😀\\"')
)


@st.composite
def traces(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(0, 12))
    spans = [
        make_span(
            "root",
            1,
            attributes={
                "openinference.span.kind": "CHAIN",
                "input.value": draw(texts),
                "meta": draw(texts),
            },
        )
    ]
    for i in range(2, n + 2):
        spans.append(_chat(i, draw(st.integers(1, i - 1)), draw(texts), extra=draw(texts)))
    return _trace(*spans)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(traces(), st.integers(2_048, 60_000), st.sampled_from(sorted(ENCODERS)))
def test_any_trace_fits_any_cap(trace: dict[str, Any], max_bytes: int, encoder: str) -> None:
    encode = ENCODERS[encoder]
    stats = ConvertStats()
    before = len(encode(trace))
    out = encode_within(trace, max_bytes, encode, stats)
    assert len(out) <= max_bytes
    sent = json.loads(out)
    assert_valid_trace(sent)
    assert (stats.traces_cut == 1) == (before > max_bytes)
    if stats.traces_cut:
        # Nothing was dropped silently: each cut left its marker and the trace says so.
        assert sent["user_metadata"]["otel.cut_texts"] == str(stats.texts_cut)


def test_short_strings_are_never_cut() -> None:
    assert MIN_CUT_CHARS >= 32
    trace = _trace(
        make_span("r" * (MIN_CUT_CHARS - 1), 1, attributes={"a": "b" * (MIN_CUT_CHARS - 1)})
    )
    out = encode_within(trace, 1024, orjson.dumps)
    sent = json.loads(out)
    assert sent["name"] == "r" * (MIN_CUT_CHARS - 1)
