"""Real instrumentations, real clients, a scripted OpenAI stub, the real export path and the
local server: what Galileo stores must read as the conversation did.

Each (instrumentation, scenario) runs once per test session (cached); the tests below check the
run against its golden file and against the properties that hold whatever the golden says.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Any

import pytest
from conformance_apps import INSTRUMENTATIONS, STREAM_ANSWER, Expect
from conformance_harness import (
    Recorded,
    check_golden,
    galileo_pipeline,
    golden_document,
    read_back,
    recorded_agents,
    recorded_anywhere,
    recorded_tokens,
    require,
    sent_trace,
    span_failed,
    steps,
    text_of,
    tier_of,
    under_ci,
)

from openai_stub import OpenAIStub
from trace_schema import assert_valid_trace

pytestmark = [pytest.mark.integration, pytest.mark.conformance]

MATRIX = [(name, scenario) for name, inst in INSTRUMENTATIONS.items() for scenario in inst.apps]
AGENT_MATRIX = [(n, s) for n, s in MATRIX if INSTRUMENTATIONS[n].agent_framework]


def _ids(case: tuple[str, str]) -> str:
    return f"{case[0]}-{case[1]}"


_runs: dict[tuple[str, str], tuple[Recorded, Expect] | BaseException] = {}


@contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _content_env(name: str) -> dict[str, str]:
    """What a user sets so that the instrumentation records message content."""
    if name != "openai-v2":
        return {}  # OpenInference, OpenLLMetry: content on by default; Pydantic AI: in code
    requires = metadata.requires("opentelemetry-instrumentation-openai-v2") or []
    if any(r.startswith("opentelemetry-util-genai") for r in requires):
        # Through opentelemetry-util-genai: "span_only" puts the messages on the span.
        return {
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "span_only",
            "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
        }
    # Older releases: "true" emits the messages as log events (not on the span).
    return {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}


def _run_instrumentation(name: str, server: Any, stub: OpenAIStub) -> None:
    """Every scenario of one instrumentation, instrumented once (as an app is: some
    instrumentations stack wrappers when instrumented again after uninstrument()), each scenario
    in its own session of the instrumentation's project."""
    inst = INSTRUMENTATIONS[name]
    for module in inst.imports:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            require(module, f"{exc}; pip install -e '.[dev,server,conformance]'")
    import galileo_otel

    project = f"conformance-{name}"
    expects: dict[str, Expect | BaseException] = {}
    spans: dict[str, list[Any]] = {}
    with _env(_content_env(name)), galileo_pipeline(server, project) as (provider, memory):
        with inst.instrument(provider) as app_arg:
            for scenario, app in inst.apps.items():
                try:
                    with galileo_otel.session(f"{name}-{scenario}"):
                        expects[scenario] = app(stub, app_arg)
                    assert stub.unused_replies == 0, "fewer model calls than scripted"
                except Exception as exc:  # reported by each of the scenario's tests
                    expects[scenario] = exc
                    stub.script()
                spans[scenario] = list(memory.get_finished_spans())
                memory.clear()
    sessions = read_back(server, project)
    for scenario in inst.apps:
        expect = expects[scenario]
        if isinstance(expect, BaseException):
            _runs[name, scenario] = expect
            continue
        mine = [s for s in sessions if s.get("external_id") == f"{name}-{scenario}"]
        _runs[name, scenario] = Recorded(mine, spans[scenario]), expect


def _run(name: str, scenario: str, server: Any, stub: OpenAIStub) -> tuple[Recorded, Expect]:
    if (name, scenario) not in _runs:
        _run_instrumentation(name, server, stub)
    result = _runs[name, scenario]
    if isinstance(result, BaseException):
        raise AssertionError(f"the {scenario} app failed under {name}") from result
    return result


@pytest.fixture
def run(
    request: pytest.FixtureRequest, galileo_server: Any, openai_stub: OpenAIStub
) -> tuple[Recorded, Expect]:
    name, scenario = request.param
    return _run(name, scenario, galileo_server, openai_stub)


def _traces(recorded: Recorded) -> list[dict[str, Any]]:
    return [t for s in recorded.sessions for t in s.get("traces", [])]


@pytest.mark.parametrize("run", MATRIX, ids=_ids, indirect=True)
def test_matches_golden(run: tuple[Recorded, Expect], request: pytest.FixtureRequest) -> None:
    name, scenario = request.node.callspec.params["run"]
    tier = tier_of(INSTRUMENTATIONS[name].packages)
    if tier is None:
        versions = {p: metadata.version(p) for p in INSTRUMENTATIONS[name].packages}
        message = (
            f"{versions} match neither constraints file: no golden to compare with "
            "(install with -c tests/conformance/constraints-<tier>.txt)"
        )
        if under_ci():
            pytest.fail(message)
        pytest.skip(message)
    check_golden(golden_document(name, tier, scenario, run[0].sessions))


@pytest.mark.parametrize("run", MATRIX, ids=_ids, indirect=True)
def test_one_session_one_trace_per_turn(run: tuple[Recorded, Expect]) -> None:
    recorded, expect = run
    assert len(recorded.sessions) == 1, "the app's turns ran in one galileo_otel.session()"
    assert len(_traces(recorded)) == len(expect.questions)


@pytest.mark.parametrize("run", MATRIX, ids=_ids, indirect=True)
def test_each_trace_reads_as_its_turn(run: tuple[Recorded, Expect]) -> None:
    """Turn N's trace input is turn N's question, its output turn N's answer."""
    recorded, expect = run
    if not any(recorded_anywhere(recorded.spans, q) for q in expect.questions):
        pytest.skip("the instrumentation recorded no message content on its spans")
    got = [(text_of(t.get("input")), text_of(t.get("output"))) for t in _traces(recorded)]
    assert got == list(zip(expect.questions, expect.answers, strict=True))


@pytest.mark.parametrize("run", MATRIX, ids=_ids, indirect=True)
def test_bodies_validate_against_the_official_models(run: tuple[Recorded, Expect]) -> None:
    for trace in _traces(run[0]):
        assert_valid_trace(sent_trace(trace))


@pytest.mark.parametrize("run", MATRIX, ids=_ids, indirect=True)
def test_no_internal_attribute_reaches_galileo(run: tuple[Recorded, Expect]) -> None:
    leaked = [
        (step.get("type"), step.get("name"), key)
        for trace in _traces(run[0])
        for step in [trace, *steps(trace)]
        for key in step.get("user_metadata") or {}
        if key.startswith("galileo.otel.")
    ]
    assert leaked == []


@pytest.mark.parametrize(
    "run", [c for c in MATRIX if c[1] == "tool_failure"], ids=_ids, indirect=True
)
def test_a_failed_step_counts_as_an_error(run: tuple[Recorded, Expect]) -> None:
    recorded, _ = run
    failed = [s.name for s in recorded.spans if span_failed(s)]
    assert failed, "the instrumentation marked no span failed: the scenario lost its failure"
    (session,) = recorded.sessions
    bad_steps = [
        (step.get("type"), step.get("name"), step.get("status_code"))
        for trace in _traces(recorded)
        for step in steps(trace)
        if (step.get("status_code") or 200) >= 400
    ]
    assert bad_steps, f"spans {failed} failed, but no step has an error status"
    assert session["num_errors"] >= 1 and session["has_error"] is True


@pytest.mark.parametrize("run", [c for c in MATRIX if c[1] == "stream"], ids=_ids, indirect=True)
def test_a_streamed_answer_is_whole(run: tuple[Recorded, Expect]) -> None:
    """The streamed answer reads whole on its llm step, with the usage of the last chunk (each
    checked when the instrumentation recorded it at all)."""
    recorded, _ = run
    (trace,) = _traces(recorded)
    llm = [s for s in steps(trace) if s.get("type") == "llm"]
    assert llm, "the streamed call has no llm step"
    has_text = recorded_anywhere(recorded.spans, STREAM_ANSWER)
    has_tokens = recorded_tokens(recorded.spans)
    if not has_text and not has_tokens:
        pytest.skip("the instrumentation recorded neither the answer nor its usage")
    if has_text:
        assert text_of(llm[-1].get("output")) == STREAM_ANSWER
    if has_tokens:
        assert (llm[-1].get("metrics") or {}).get("num_input_tokens"), "usage not read"


@pytest.mark.parametrize("run", AGENT_MATRIX, ids=_ids, indirect=True)
def test_agent_steps_have_content(
    run: tuple[Recorded, Expect], request: pytest.FixtureRequest
) -> None:
    """Where the instrumentation recorded agents, they are agent steps with input and output.
    (A LangGraph graph whose nodes are plain chains records none.)"""
    recorded, _ = run
    name = request.node.callspec.params["run"][0]
    recorded_as_agents = recorded_agents(recorded.spans)
    if name in ("openai-agents", "pydantic-ai"):
        assert recorded_as_agents, f"{name} always records its agent runs"
    if not recorded_as_agents:
        pytest.skip("the instrumentation recorded no agent span in this scenario")
    agents = [s for t in _traces(recorded) for s in [t, *steps(t)] if s.get("type") == "agent"]
    assert agents, f"agent spans {recorded_as_agents} became no agent step"
    empty = [
        a.get("name") for a in agents if not text_of(a.get("input")) or not text_of(a.get("output"))
    ]
    assert empty == [], "agent steps without input or output"
