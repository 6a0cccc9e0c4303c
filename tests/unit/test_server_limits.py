"""Bounded decompression of request bodies."""

from __future__ import annotations

import gzip
import zlib

import pytest

from galileo_otel.server.limits import BodyTooLargeError, content_length, gunzip_bounded


def test_gzip_and_zlib_bodies_inflate_within_the_limit() -> None:
    data = b"spans" * 1000
    assert gunzip_bounded(gzip.compress(data), 10_000) == data
    assert gunzip_bounded(zlib.compress(data), 10_000) == data


def test_inflating_past_the_limit_stops_there() -> None:
    bomb = gzip.compress(b"\0" * 10_000_000)
    with pytest.raises(BodyTooLargeError) as caught:
        gunzip_bounded(bomb, 1024)
    assert caught.value.limit == 1024
    assert "1024" in caught.value.to_body()["detail"]


def test_broken_gzip_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not valid gzip"):
        gunzip_bounded(b"not gzip at all", 1024)
    with pytest.raises(ValueError, match="truncated"):
        gunzip_bounded(gzip.compress(b"x" * 5000)[:20], 10_000)


def test_content_length_is_read_or_none() -> None:
    assert content_length([(b"Content-Length", b"42")]) == 42
    assert content_length([(b"content-length", b"x")]) is None
    assert content_length([]) is None
