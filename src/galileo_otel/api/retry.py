"""The one retry policy of the package: which failures are retried, how long to wait, when to stop.

Light on purpose (no httpx): the export pipeline's senders import it on their hot path, the
client (``client.py``) re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from galileo_otel.errors import APIError, ConfigError

__all__ = ["DEFAULT_RETRY", "RetryPolicy"]


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
