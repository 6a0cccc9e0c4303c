"""serverless_handler: deliver a function's traces before it returns, as frozen platforms need.

AWS Lambda (and Cloud Run jobs, Azure Functions, Vercel...) freeze or end the process the
moment the handler returns: a trace still queued then waits for the next invocation, or is
lost with the sandbox. The decorator flushes every live :func:`~galileo_otel.configure`
handle after the handler (also when it raises), bounded by the time the platform has left.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar, overload

from galileo_otel import lifecycle

__all__ = ["DEFAULT_MARGIN_S", "flush_bound", "serverless_handler"]

_log = logging.getLogger(__name__)

# Kept from the platform's remaining time for the handler's return itself.
DEFAULT_MARGIN_S = 0.5

F = TypeVar("F", bound=Callable[..., Any])


def flush_bound(
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timeout_s: float | None,
    margin_s: float,
) -> float | None:
    """How long the flush after a handler may take; ``None`` for the handles' own default.

    The bound is ``timeout_s`` (when set), cut to the platform's remaining time minus
    ``margin_s`` when the handler got an AWS Lambda context: the second positional argument,
    or the ``context`` keyword, with ``get_remaining_time_in_millis()``.
    """
    context = kwargs.get("context", args[1] if len(args) >= 2 else None)
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    bound = timeout_s
    if callable(remaining_ms):
        try:
            left = float(remaining_ms()) / 1000.0 - margin_s
        except Exception:  # a context that cannot tell: keep the configured bound
            return bound
        left = max(0.0, left)
        bound = left if bound is None else min(bound, left)
    return bound


def _flush(bound: float | None) -> None:
    if not lifecycle.force_flush(bound):
        _log.warning(
            "galileo-otel: not every trace of this invocation was delivered before it returned"
            " (bound %s s); the rest is sent later or from the spool",
            "default" if bound is None else f"{bound:.2f}",
        )


@overload
def serverless_handler(fn: F, /) -> F: ...


@overload
def serverless_handler(
    *, timeout_s: float | None = None, margin_s: float = DEFAULT_MARGIN_S
) -> Callable[[F], F]: ...


def serverless_handler(
    fn: Any = None, /, *, timeout_s: float | None = None, margin_s: float = DEFAULT_MARGIN_S
) -> Any:
    """Flush the traces a handler made before it returns (sync or ``async def`` handlers).

    Use it bare (``@serverless_handler``) or with options. After the handler returns or
    raises, every live handle of :func:`~galileo_otel.configure` is flushed; an ``async``
    handler awaits the flush on a thread, so its event loop keeps running. The flush never
    raises into the handler's caller; a flush that runs out of time is logged.

    Args:
        fn: The handler: AWS Lambda's ``(event, context)`` or any other signature.
        timeout_s: Longest flush; each handle's ``export_timeout`` when ``None``.
        margin_s: With a Lambda context, the flush ends this long before the remaining time
            (``context.get_remaining_time_in_millis()``) runs out.

    Returns:
        The wrapped handler (or a decorator, when called with options only).

    Example:
        >>> import galileo_otel
        >>> @galileo_otel.serverless_handler
        ... def handler(event, context):
        ...     return {"statusCode": 200}
    """

    def decorate(func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await func(*args, **kwargs)
                finally:
                    bound = flush_bound(args, kwargs, timeout_s, margin_s)
                    await lifecycle.in_thread(_flush, bound)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            finally:
                _flush(flush_bound(args, kwargs, timeout_s, margin_s))

        return wrapper  # type: ignore[return-value]

    return decorate(fn) if fn is not None else decorate
