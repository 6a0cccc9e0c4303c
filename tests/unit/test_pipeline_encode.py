"""The pipeline's trace encoder: orjson (optional) and the stdlib fallback give the same JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest

from galileo_otel.export import batcher as pipeline


def _sample() -> dict[str, Any]:
    return {
        "type": "trace",
        "name": 'héllo ✓ \u2028 "quoted" \\ / \n\t',
        "metrics": {"duration_ns": 123456789, "num_input_tokens": 0},
        "temperature": 0.7,
        "tags": ["a", "b"],
        "flags": [True, False, None],
        "user_metadata": {"k": "v" * 50},
        "spans": [{"id": "x", "spans": []}],
    }


def test_encode_matches_stdlib_json() -> None:
    data = _sample()
    out = pipeline.encode_trace(data)
    assert isinstance(out, bytes)
    assert json.loads(out) == data


def test_stdlib_fallback_when_orjson_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _sample()
    fast = pipeline.encode_trace(data)
    monkeypatch.setattr(pipeline, "_orjson_dumps", None)
    slow = pipeline.encode_trace(data)
    assert slow == json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    assert json.loads(fast) == json.loads(slow)


def test_lone_surrogate_and_big_int_fall_back_to_stdlib() -> None:
    data = {"name": "bad \ud800 text", "n": 1 << 70}
    out = pipeline.encode_trace(data)
    decoded = json.loads(out)
    assert decoded["n"] == 1 << 70
    assert decoded["name"].startswith("bad ")
