"""The one retry policy and the one retry loop of the package.

:class:`RetryPolicy` says which failures are retried, how long to wait and when to stop;
:func:`retry_loop` (and its async twin :func:`aretry_loop`, the same steps with an awaited
wait) runs attempts under it. The client's requests and the export pipeline's senders both
run through it; the senders wait interruptibly (shutdown ends a wait early), the client with
its ``sleep``.

Light on purpose (no httpx): the export pipeline's senders import it on their hot path, the
client (``client.py``) re-exports the policy.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from galileo_otel.errors import APIError, ConfigError

__all__ = ["DEFAULT_RETRY", "Failure", "RetryPolicy", "aretry_loop", "retry_loop"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How a request is retried when it fails transiently.

    Attributes:
        max_attempts: Attempts in all, the first included (1 = no retry).
        deadline_s: Overall time budget of a request, retries and waits included; ``None`` for
            none (then ``max_attempts`` alone bounds it). No attempt starts past it and a wait
            that would end past it is not taken.
        backoff_initial_s: Wait before the second attempt; doubles each time.
        backoff_max_s: Cap of the doubling wait.
        jitter: Fraction of each wait that is random (0 = none, 1 = "full jitter"), so many
            clients failing together do not retry together.
        max_retry_after_s: A ``Retry-After`` longer than this is not waited for: the error is
            raised with ``retry_after`` set, for the caller to schedule.
        reconnect_only: Retry only connection failures where the request surely never reached
            the server (see :meth:`reconnect_once`).
    """

    max_attempts: int = 5
    deadline_s: float | None = 30.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 8.0
    jitter: float = 0.5
    max_retry_after_s: float = 60.0
    reconnect_only: bool = False

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError("RetryPolicy.max_attempts must be at least 1")
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise ConfigError("RetryPolicy.deadline_s must be positive or None")
        if not 0.0 <= self.jitter <= 1.0:
            raise ConfigError("RetryPolicy.jitter must be between 0 and 1")
        if self.backoff_initial_s < 0 or self.backoff_max_s < 0:
            raise ConfigError("RetryPolicy backoff times cannot be negative")

    @classmethod
    def none(cls, *, deadline_s: float | None = None) -> RetryPolicy:
        """A single attempt, no retry."""
        return cls(max_attempts=1, deadline_s=deadline_s)

    @classmethod
    def reconnect_once(cls, *, deadline_s: float | None = None) -> RetryPolicy:
        """One more attempt only when the connection failed before the request was sent.

        Safe for fire-and-forget delivery: it never sends a request twice.
        """
        return cls(
            max_attempts=2, deadline_s=deadline_s, backoff_initial_s=0.0, reconnect_only=True
        )

    def backoff_s(self, attempt: int, rand: float) -> float:
        """The wait after failed attempt number ``attempt`` (1-based); ``rand`` is in [0, 1)."""
        base = min(self.backoff_max_s, self.backoff_initial_s * (2.0 ** (attempt - 1)))
        return base * (1.0 - self.jitter * rand)

    @staticmethod
    def is_permanent(error: APIError) -> bool:
        """Whether the server refused for good (400, 401, 403, 404, 422...): never resend."""
        return error.status_code is not None and not error.retryable

    def delay_for(self, error: APIError, attempt: int, rand: float) -> float | None:
        """The wait before retrying after ``error`` on attempt ``attempt``; ``None``: give up.

        The one retry decision of the package: the client's own retries and the export
        pipeline's (which waits interruptibly and parks batches in the spool) both use it.
        Retryable are transport errors, 408, 429 and 5xx; ``Retry-After`` wins over the
        backoff unless it is longer than ``max_retry_after_s``. Attempts and deadline are the
        caller's to count.
        """
        if not error.retryable:
            return None
        if error.retry_after is not None:
            if error.retry_after > self.max_retry_after_s:
                return None
            return float(error.retry_after)
        return self.backoff_s(attempt, rand)

    def next_delay(
        self,
        error: APIError,
        attempt: int,
        elapsed_s: float,
        rand: float,
        *,
        never_sent: bool = False,
    ) -> float | None:
        """The retry loop's step: the wait before attempt ``attempt + 1``, or ``None`` to stop.

        Every retry loop of the package asks this after a failed attempt: the client's (sync
        and async) and the export senders' (which wait interruptibly and then park a batch in
        the spool). It counts attempts, keeps to ``deadline_s`` (``elapsed_s`` is the time
        since the first attempt began: no wait that would end past the deadline is taken) and
        applies :meth:`delay_for`.

        Args:
            error: The failure of the attempt that just ended.
            attempt: That attempt's number, 1-based.
            elapsed_s: Seconds since the first attempt began.
            rand: A random number in [0, 1) for the jitter.
            never_sent: The request surely never reached the server (for ``reconnect_only``).
        """
        if attempt >= self.max_attempts:
            return None
        if self.reconnect_only and not never_sent:
            return None
        delay = self.delay_for(error, attempt, rand)
        if delay is None:
            return None
        if self.deadline_s is not None and elapsed_s + delay >= self.deadline_s:
            return None
        return delay


DEFAULT_RETRY = RetryPolicy()


@dataclass
class Failure:
    """A failed attempt, as the retry loop sees it.

    Attributes:
        error: What went wrong (raised by the client when the loop ends on it).
        never_sent: The request surely never reached the server (for ``reconnect_only``).
        cause: The underlying exception, chained with ``raise ... from``.
        interrupted: The loop ended because its wait was interrupted (shutdown), not because
            the policy gave up.
    """

    error: APIError
    never_sent: bool = False
    cause: BaseException | None = None
    interrupted: bool = False


class _Loop:
    """The steps shared by :func:`retry_loop` and :func:`aretry_loop` (one request's state)."""

    def __init__(
        self,
        policy: RetryPolicy,
        clock: Callable[[], float],
        rand: Callable[[], float],
        stop: Callable[[Failure], bool] | None,
        on_retry: Callable[[Failure, float, int], None] | None,
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.rand = rand
        self.stop = stop
        self.on_retry = on_retry
        self.started = clock()
        self.attempt = 0

    def delay_after(self, failure: Failure) -> float | None:
        """The wait before the next attempt, or ``None``: the loop ends on ``failure``."""
        if self.stop is not None and self.stop(failure):
            return None
        delay = self.policy.next_delay(
            failure.error,
            self.attempt,
            self.clock() - self.started,
            self.rand(),
            never_sent=failure.never_sent,
        )
        if delay is not None and self.on_retry is not None:
            self.on_retry(failure, delay, self.attempt)
        return delay


def retry_loop(
    attempt: Callable[[], T | Failure],
    policy: RetryPolicy,
    *,
    wait: Callable[[float], Any] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rand: Callable[[], float] = random.random,
    stop: Callable[[Failure], bool] | None = None,
    on_retry: Callable[[Failure, float, int], None] | None = None,
) -> T | Failure:
    """Run ``attempt`` until it returns something other than a :class:`Failure`, or give up.

    After each failed attempt the policy decides (:meth:`RetryPolicy.next_delay`: attempts,
    deadline since the first attempt, Retry-After, backoff with jitter); then ``wait`` waits.

    Args:
        attempt: One try; returns its result, or a :class:`Failure`.
        policy: When to retry and how long to wait.
        wait: Waits the given seconds; a true return means it was interrupted (the loop then
            ends on the failure, marked ``interrupted``). ``time.sleep`` by default.
        clock: Monotonic seconds, for the deadline.
        rand: Uniform [0, 1), for the jitter.
        stop: Asked after a failure, before the policy: true ends the loop on it (the caller's
            own reasons, e.g. shutting down).
        on_retry: Told ``(failure, delay, attempt)`` before each wait (logging, counting).

    Returns:
        The first result that is not a :class:`Failure`, or the failure the loop ended on.
    """
    loop = _Loop(policy, clock, rand, stop, on_retry)
    while True:
        loop.attempt += 1
        result = attempt()
        if not isinstance(result, Failure):
            return result
        delay = loop.delay_after(result)
        if delay is None:
            return result
        if wait(delay):
            result.interrupted = True
            return result


async def aretry_loop(
    attempt: Callable[[], Awaitable[T | Failure]],
    policy: RetryPolicy,
    *,
    wait: Callable[[float], Awaitable[Any]],
    clock: Callable[[], float] = time.monotonic,
    rand: Callable[[], float] = random.random,
    stop: Callable[[Failure], bool] | None = None,
    on_retry: Callable[[Failure, float, int], None] | None = None,
) -> T | Failure:
    """:func:`retry_loop` for coroutines: the same steps, ``attempt`` and ``wait`` awaited."""
    loop = _Loop(policy, clock, rand, stop, on_retry)
    while True:
        loop.attempt += 1
        result = await attempt()
        if not isinstance(result, Failure):
            return result
        delay = loop.delay_after(result)
        if delay is None:
            return result
        if await wait(delay):
            result.interrupted = True
            return result
