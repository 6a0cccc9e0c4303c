"""session(): context manager and decorator, nesting, asyncio, threads, baggage."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from opentelemetry import baggage
from opentelemetry import context as otel_context

from galileo_otel.sessions import context as session_context
from galileo_otel.sessions.context import (
    SessionContext,
    current_session,
    session,
    set_baggage_default,
)


def key() -> str | None:
    ctx = current_session()
    return ctx.key if ctx is not None else None


@pytest.fixture(autouse=True)
def _baggage_off() -> Iterator[None]:
    set_baggage_default(False)
    yield
    set_baggage_default(False)


def test_context_manager_sets_and_restores() -> None:
    assert current_session() is None
    with session("conv-1", user_id="alice", name="chat", metadata={"tier": "gold", "n": 3}) as s:
        assert isinstance(s, SessionContext)
        assert current_session() is s
        assert s.key == "conv-1" and s.external_id == "conv-1"
        assert s.user_id == "alice" and s.name == "chat"
        assert s.metadata == {"tier": "gold", "n": "3"}
        assert s.span_attributes == {
            "session.id": "conv-1",
            "user.id": "alice",
            "galileo.session.name": "chat",
            "galileo.session.metadata": '{"n": "3", "tier": "gold"}',
            # copies that survive tools scrubbing "session" attributes (logfire): hex of the text
            "galileo.otel.conversation_key": "a" + b"conv-1".hex(),
            "galileo.otel.conversation_name": "a" + b"chat".hex(),
        }
    assert current_session() is None


def test_generated_key_is_unique_per_entry() -> None:
    scope = session()
    with scope as first:
        pass
    with scope as second:
        pass
    assert first.external_id is None and second.external_id is None
    assert first.key != second.key
    assert len(first.key) == 32
    assert first.span_attributes == {
        "session.id": first.key,
        "galileo.otel.conversation_key": "a" + first.key.encode().hex(),
    }


def test_nested_innermost_wins_and_outer_is_restored() -> None:
    with session("outer"):
        assert key() == "outer"
        with session("inner"):
            assert key() == "inner"
            with session("innermost"):
                assert key() == "innermost"
            assert key() == "inner"
        assert key() == "outer"
    assert key() is None


def test_exception_inside_restores() -> None:
    with pytest.raises(RuntimeError), session("outer"):
        with session("inner"):
            raise RuntimeError("boom")
    assert key() is None


def test_decorator_sync_one_session_per_call_without_key() -> None:
    seen: list[str | None] = []

    @session(user_id="bob")
    def work(x: int) -> int:
        seen.append(key())
        assert current_session() is not None and current_session().user_id == "bob"  # type: ignore[union-attr]
        return x * 2

    assert work(2) == 4
    assert work(3) == 6
    assert work.__name__ == "work"
    assert len(set(seen)) == 2 and None not in seen
    assert key() is None


def test_decorator_sync_with_key_reuses_key() -> None:
    @session("conv-9")
    def work() -> str | None:
        return key()

    assert work() == "conv-9" and work() == "conv-9"


def test_decorator_async() -> None:
    @session("async-conv")
    async def work() -> str | None:
        await asyncio.sleep(0)
        return key()

    async def main() -> tuple[str | None, str | None]:
        inside = await work()
        return inside, key()

    assert asyncio.run(main()) == ("async-conv", None)


def test_decorator_generator_active_only_while_body_runs() -> None:
    @session("gen-conv")
    def gen() -> Iterator[str | None]:
        yield key()
        yield key()

    it = gen()
    assert key() is None
    first = next(it)
    assert key() is None  # suspended at a yield: the caller is outside the session
    with session("caller"):
        second = next(it)
        assert key() == "caller"
    assert first == second == "gen-conv"
    assert list(it) == []


def test_decorator_generator_send_throw_close_and_return() -> None:
    log: list[tuple[str, str | None]] = []

    @session("g")
    def gen() -> Iterator[int]:
        total = 0
        try:
            while True:
                try:
                    got = yield total
                except ValueError:
                    log.append(("caught", key()))
                    got = 100
                total += got
        finally:
            log.append(("finally", key()))

    it = gen()
    assert next(it) == 0
    assert it.send(5) == 5
    assert it.throw(ValueError("x")) == 105
    it.close()
    assert log == [("caught", "g"), ("finally", "g")]
    assert key() is None

    @session("r")
    def returns() -> Iterator[int]:
        yield 1
        return 7

    def outer() -> Iterator[int]:
        result = yield from returns()
        yield result

    assert list(outer()) == [1, 7]


def test_decorator_generator_without_key_is_one_session_per_generator() -> None:
    @session()
    def gen() -> Iterator[str | None]:
        yield key()
        yield key()

    a, b = list(gen()), list(gen())
    assert a[0] == a[1] and b[0] == b[1] and a[0] != b[0]


def test_decorator_async_generator() -> None:
    @session("agen")
    async def agen() -> AsyncIterator[str | None]:
        yield key()
        await asyncio.sleep(0)
        try:
            yield key()
        finally:
            finals.append(key())

    finals: list[str | None] = []

    async def main() -> list[str | None]:
        out: list[str | None] = []
        async for item in agen():
            out.append(item)
            out.append(key())  # the consumer is outside the session
        gen = agen()
        out.append(await gen.__anext__())
        await gen.aclose()
        return out

    assert asyncio.run(main()) == ["agen", None, "agen", None, "agen"]
    assert finals == ["agen"]


def test_async_with_and_task_switching() -> None:
    async def turn(name: str, started: asyncio.Event, other: asyncio.Event) -> list[str | None]:
        seen = []
        async with session(name):
            started.set()
            await other.wait()  # the other task runs its own session meanwhile
            seen.append(key())
            with session(name + "-inner"):
                await asyncio.sleep(0)
                seen.append(key())
            seen.append(key())
        seen.append(key())
        return seen

    async def main() -> list[list[str | None]]:
        a_started, b_started = asyncio.Event(), asyncio.Event()
        return list(
            await asyncio.gather(turn("a", a_started, b_started), turn("b", b_started, a_started))
        )

    assert asyncio.run(main()) == [["a", "a-inner", "a", None], ["b", "b-inner", "b", None]]


def test_tasks_inherit_the_session_of_their_creator() -> None:
    async def child() -> str | None:
        await asyncio.sleep(0)
        return key()

    async def main() -> tuple[str | None, str | None]:
        with session("parent"):
            task = asyncio.create_task(child())
        return await task, key()

    assert asyncio.run(main()) == ("parent", None)


def test_shared_session_object_entered_by_several_tasks() -> None:
    shared = session("shared")

    async def first(entered: asyncio.Event, second_in: asyncio.Event) -> str | None:
        with shared:
            entered.set()
            await second_in.wait()
        # left first, while the second task is still inside: its own token was reset
        return key()

    async def second(first_in: asyncio.Event, entered: asyncio.Event) -> list[str | None]:
        await first_in.wait()
        with shared:
            entered.set()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            inside = key()
        return [inside, key()]

    async def main() -> tuple[str | None, list[str | None]]:
        a, b = asyncio.Event(), asyncio.Event()
        t1 = asyncio.create_task(first(a, b))
        t2 = asyncio.create_task(second(a, b))
        return await t1, await t2

    assert asyncio.run(main()) == (None, ["shared", None])
    assert shared._active == []


def test_thread_handoff_with_copy_context() -> None:
    results: dict[str, str | None] = {}

    def read(name: str) -> None:
        results[name] = key()

    with session("threaded"):
        ctx = contextvars.copy_context()
        plain = threading.Thread(target=read, args=("plain",))
        copied = threading.Thread(target=ctx.run, args=(read, "copied"))
        plain.start()
        copied.start()
        plain.join(10)
        copied.join(10)
        with ThreadPoolExecutor(1) as pool:
            pooled = pool.submit(contextvars.copy_context().run, key).result(10)
    assert results == {"plain": None, "copied": "threaded"}
    assert pooled == "threaded"


def test_threads_have_independent_sessions() -> None:
    barrier = threading.Barrier(8, timeout=10)
    seen: dict[int, tuple[str | None, str | None]] = {}

    def run(i: int) -> None:
        with session(f"t{i}"):
            barrier.wait()
            inside = key()
            barrier.wait()
        seen[i] = (inside, key())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == {i: (f"t{i}", None) for i in range(8)}


def test_baggage_off_by_default() -> None:
    with session("no-bag"):
        assert baggage.get_baggage("session.id") is None


def test_baggage_on_per_call_and_restored() -> None:
    with session("bag", baggage=True):
        assert baggage.get_baggage("session.id") == "bag"
        with session("inner", baggage=True):
            assert baggage.get_baggage("session.id") == "inner"
        assert baggage.get_baggage("session.id") == "bag"
        with session("quiet", baggage=False):
            assert baggage.get_baggage("session.id") == "bag"  # untouched, not removed
    assert baggage.get_baggage("session.id") is None


def test_baggage_default_from_setting_and_per_call_override() -> None:
    set_baggage_default(True)
    assert session_context.baggage_default() is True
    with session("bag-default"):
        assert baggage.get_baggage("session.id") == "bag-default"
    with session("off", baggage=False):
        assert baggage.get_baggage("session.id") is None

    @session("gen-bag")
    def gen() -> Iterator[object]:
        yield baggage.get_baggage("session.id")

    assert list(gen()) == ["gen-bag"]
    assert baggage.get_baggage("session.id") is None
    assert otel_context.get_current() == otel_context.get_current()


def test_fixed_key_context_is_reused() -> None:
    scope = session("fixed")
    with scope as a:
        pass
    with scope as b:
        pass
    assert a is b


def test_bare_decorator_is_refused_with_a_hint() -> None:
    def fn() -> None:
        pass

    with pytest.raises(TypeError, match="parentheses"):
        session(fn)  # type: ignore[arg-type]
