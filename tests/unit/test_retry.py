"""The one retry loop (api/retry.py) that the client and the export senders run through."""

from __future__ import annotations

import asyncio

from galileo_otel.api.retry import Failure, RetryPolicy, aretry_loop, retry_loop
from galileo_otel.errors import APIError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def unavailable(retry_after: float | None = None) -> Failure:
    return Failure(APIError("503", status_code=503, retryable=True, retry_after=retry_after))


def test_retries_until_an_attempt_succeeds_waiting_the_policys_backoff() -> None:
    clock = Clock()
    waits: list[float] = []
    results: list[str | Failure] = [unavailable(), unavailable(), "ok"]
    retried: list[tuple[float, int]] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        clock.now += seconds
        return False

    out = retry_loop(
        lambda: results.pop(0),
        RetryPolicy(backoff_initial_s=1.0, jitter=0.0),
        wait=wait,
        clock=clock,
        rand=lambda: 0.0,
        on_retry=lambda failure, delay, attempt: retried.append((delay, attempt)),
    )
    assert out == "ok"
    assert waits == [1.0, 2.0]
    assert retried == [(1.0, 1), (2.0, 2)]


def test_the_deadline_counts_the_waits_and_retry_after_wins() -> None:
    clock = Clock()
    attempts = []

    def attempt() -> Failure:
        attempts.append(clock.now)
        return unavailable(retry_after=1.0)

    def wait(seconds: float) -> bool:
        clock.now += seconds
        return False

    out = retry_loop(attempt, RetryPolicy(max_attempts=100, deadline_s=2.5), wait=wait, clock=clock)
    assert isinstance(out, Failure) and not out.interrupted
    assert attempts == [0.0, 1.0, 2.0]  # a third wait would end past 2.5 s


def test_an_interrupted_wait_ends_the_loop_on_the_failure() -> None:
    calls = []

    def attempt() -> Failure:
        calls.append(1)
        return unavailable()

    out = retry_loop(attempt, RetryPolicy(jitter=0.0), wait=lambda s: True, clock=Clock())
    assert isinstance(out, Failure) and out.interrupted
    assert calls == [1]


def test_stop_ends_the_loop_before_the_policy_is_asked() -> None:
    waited = []
    out = retry_loop(
        unavailable,
        RetryPolicy(),
        wait=lambda s: waited.append(s),
        clock=Clock(),
        stop=lambda failure: True,
    )
    assert isinstance(out, Failure) and not out.interrupted
    assert waited == []


def test_a_permanent_error_is_not_retried() -> None:
    calls = []

    def attempt() -> Failure:
        calls.append(1)
        return Failure(APIError("422", status_code=422, retryable=False))

    assert isinstance(retry_loop(attempt, RetryPolicy(), wait=lambda s: False), Failure)
    assert calls == [1]


def test_the_async_loop_takes_the_same_steps() -> None:
    clock = Clock()
    results: list[str | Failure] = [unavailable(), "ok"]
    waits: list[float] = []

    async def attempt() -> str | Failure:
        return results.pop(0)

    async def wait(seconds: float) -> None:
        waits.append(seconds)

    out = asyncio.run(
        aretry_loop(
            attempt,
            RetryPolicy(backoff_initial_s=0.5, jitter=0.0),
            wait=wait,
            clock=clock,
            rand=lambda: 0.0,
        )
    )
    assert out == "ok"
    assert waits == [0.5]
