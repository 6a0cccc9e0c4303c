"""The apps of the conformance suite: one small, realistic app per instrumentation and scenario.

Each app talks to the scripted OpenAI stub (tests/openai_stub.py) on 127.0.0.1 through the real
client of its framework, instrumented by the real instrumentation, with the tracer provider the
harness hands it. The stub's script decides every answer, so each run is the same run.

Scenarios (the same words and answers for every instrumentation, so goldens read alike):

- ``chat``: three turns; the app resends its whole history every turn.
- ``tool_failure``: the model calls a tool with a bad argument, the tool raises, the error goes
  back to the model, which calls it again correctly and then answers.
- ``stream``: one streamed answer (``stream_options.include_usage`` where the client sets it).
- ``handoff`` (agent frameworks only): a triage agent hands the question to a weather agent,
  which calls a tool and answers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from openai_stub import OpenAIStub, reply_text, reply_tool_call

try:  # Pydantic AI resolves a tool's annotations in this module's globals.
    from pydantic_ai import RunContext
except ImportError:  # the suite skips (or, under CI, fails) Pydantic AI's runs then
    RunContext = Any

MODEL = "gpt-4o-mini"
SYSTEM = "You are a concise travel assistant."
QUESTIONS = (
    "What is the capital of France?",
    "How many people live there?",
    "Name one museum I should visit.",
)
ANSWERS = (
    "The capital of France is Paris.",
    "About two million people live in Paris.",
    "Visit the Louvre.",
)
WEATHER_QUESTION = "What is the weather in Paris today?"
WEATHER_ANSWER = "It is sunny and 21 degrees in Paris."
BAD_CITY = "Pariss"
STREAM_QUESTION = "Describe Paris in one sentence."
STREAM_ANSWER = "Paris is a city of light, art and cafes along the Seine."
HANDOFF_ANSWER = "The weather agent says: sunny and 21 degrees in Paris."


class ToolFailedError(ValueError):
    """What the weather tool raises for a city it does not know."""


def get_weather_impl(city: str) -> str:
    """The scenarios' one tool: fails for anything but Paris (the recoverable failure)."""
    if city != "Paris":
        raise ToolFailedError(f"unknown city: {city}")
    return "sunny, 21 degrees"


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def tool_failure_script(stub: OpenAIStub) -> None:
    stub.script(
        reply_tool_call("get_weather", {"city": BAD_CITY}, "call_1"),
        reply_tool_call("get_weather", {"city": "Paris"}, "call_2"),
        reply_text(WEATHER_ANSWER),
    )


@dataclass
class Expect:
    """What the app did, for the harness's property checks: each turn's question and answer."""

    questions: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------
# Plain OpenAI client apps (openai-v2, OpenInference openai, OpenLLMetry openai)
# ------------------------------------------------------------------------------------------------


def _instrumentor(module: str) -> Any:
    if module == "openai-v2":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    elif module == "openinference-openai":
        from openinference.instrumentation.openai import OpenAIInstrumentor
    else:
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor
    return OpenAIInstrumentor()


@contextmanager
def instrumented_openai(module: str, tracer_provider: TracerProvider) -> Iterator[Tracer]:
    instrumentor = _instrumentor(module)
    instrumentor.instrument(tracer_provider=tracer_provider)
    try:
        yield tracer_provider.get_tracer("conformance-app")
    finally:
        instrumentor.uninstrument()
        _unwrap_openai()


def _unwrap_openai() -> None:
    """Take off wrappers an instrumentor's uninstrument() left on the openai client.

    OpenLLMetry's uninstrument does not remove all of its wrappers (embeddings among them):
    left in place, they keep making spans on this suite's provider for the rest of the test
    run, and those spans become the parents of other tests' spans. Every instrumentor of the
    suite is uninstrumented when this runs, so any wrapper still on openai's resources is a
    leftover.
    """
    import importlib
    import pkgutil

    import openai.resources
    import wrapt

    for info in pkgutil.walk_packages(openai.resources.__path__, "openai.resources."):
        try:
            module = importlib.import_module(info.name)
        except ImportError:
            continue
        for cls in list(vars(module).values()):
            if not isinstance(cls, type) or not cls.__module__.startswith("openai."):
                continue
            for name, attr in list(vars(cls).items()):
                if isinstance(attr, wrapt.ObjectProxy) and hasattr(attr, "__wrapped__"):
                    setattr(cls, name, attr.__wrapped__)


def _async_client(stub: OpenAIStub) -> Any:
    """An async OpenAI client that keeps no idle connection: the apps run one event loop per
    turn (``asyncio.run``), and a pooled connection would outlive its loop unclosed."""
    import httpx
    import openai

    http = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0))
    return openai.AsyncOpenAI(
        base_url=stub.base_url, api_key="stub-key", max_retries=0, http_client=http
    )


def _client(stub: OpenAIStub) -> Any:
    import openai

    return openai.OpenAI(base_url=stub.base_url, api_key="stub-key", max_retries=0)


def openai_chat(stub: OpenAIStub, tracer: Tracer) -> Expect:
    """A chat app: one app span per turn (no input of its own), the whole history resent."""
    stub.script(*(reply_text(a) for a in ANSWERS))
    client = _client(stub)
    history: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
    expect = Expect()
    for question in QUESTIONS:
        history.append({"role": "user", "content": question})
        with tracer.start_as_current_span("chat turn"):
            answer = client.chat.completions.create(model=MODEL, messages=history)
        text = answer.choices[0].message.content
        history.append({"role": "assistant", "content": text})
        expect.questions.append(question)
        expect.answers.append(text)
    client.close()
    return expect


def openai_tool_failure(stub: OpenAIStub, tracer: Tracer) -> Expect:
    """A tool loop: the app runs each tool call in its own execute_tool span; a failing call's
    error goes back to the model, which tries again."""
    tool_failure_script(stub)
    client = _client(stub)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": WEATHER_QUESTION},
    ]
    with tracer.start_as_current_span("chat turn"):
        for _ in range(4):  # bounded: the script ends the loop after three calls
            answer = client.chat.completions.create(
                model=MODEL, messages=messages, tools=[WEATHER_TOOL]
            )
            message = answer.choices[0].message
            if not message.tool_calls:
                break
            messages.append(message.model_dump(exclude_none=True))
            for call in message.tool_calls:
                result = _run_tool_span(tracer, call.id, call.function.arguments)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    client.close()
    return Expect([WEATHER_QUESTION], [message.content or ""])


def _run_tool_span(tracer: Tracer, call_id: str, arguments: str) -> str:
    try:
        with tracer.start_as_current_span("execute_tool get_weather") as span:
            span.set_attribute("gen_ai.operation.name", "execute_tool")
            span.set_attribute("gen_ai.tool.name", "get_weather")
            span.set_attribute("gen_ai.tool.call.id", call_id)
            span.set_attribute("gen_ai.tool.call.arguments", arguments)
            result = get_weather_impl(**json.loads(arguments))
            span.set_attribute("gen_ai.tool.call.result", result)
            return result
    except ToolFailedError as exc:  # recorded on the span (ERROR status, exception event)
        return f"error: {exc}"


def openai_stream(stub: OpenAIStub, tracer: Tracer) -> Expect:
    stub.script(reply_text(STREAM_ANSWER))
    client = _client(stub)
    with tracer.start_as_current_span("chat turn"):
        stream = client.chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": STREAM_QUESTION},
            ],
            stream=True,
            stream_options={"include_usage": True},
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    client.close()
    return Expect([STREAM_QUESTION], [text])


# ------------------------------------------------------------------------------------------------
# OpenAI Agents SDK + openinference-instrumentation-openai-agents (chat completions API)
# ------------------------------------------------------------------------------------------------


@contextmanager
def instrumented_agents(tracer_provider: TracerProvider) -> Iterator[Tracer]:
    from agents import set_trace_processors
    from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor

    # Exclusive: the SDK's own exporter (to api.openai.com) is replaced, never called.
    instrumentor = OpenAIAgentsInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, exclusive_processor=True)
    try:
        yield tracer_provider.get_tracer("conformance-app")
    finally:
        instrumentor.uninstrument()
        set_trace_processors([])


def _agents_model(stub: OpenAIStub) -> Any:
    from agents import OpenAIChatCompletionsModel

    return OpenAIChatCompletionsModel(model=MODEL, openai_client=_async_client(stub))


def _agents_weather_tool() -> Any:
    from agents import function_tool

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather of a city."""
        return get_weather_impl(city)

    return get_weather


def agents_chat(stub: OpenAIStub, tracer: Tracer) -> Expect:
    from agents import Agent, Runner

    stub.script(*(reply_text(a) for a in ANSWERS))
    agent = Agent(name="Assistant", instructions=SYSTEM, model=_agents_model(stub))
    history: list[Any] = []
    expect = Expect()
    for question in QUESTIONS:
        history.append({"role": "user", "content": question})
        # One event loop per turn, as a web handler would have; Runner.run_sync's own loop
        # handling differs between releases.
        result = asyncio.run(Runner.run(agent, history))
        history = result.to_input_list()
        expect.questions.append(question)
        expect.answers.append(str(result.final_output))
    return expect


def agents_tool_failure(stub: OpenAIStub, tracer: Tracer) -> Expect:
    from agents import Agent, Runner

    tool_failure_script(stub)
    agent = Agent(
        name="Assistant",
        instructions=SYSTEM,
        model=_agents_model(stub),
        tools=[_agents_weather_tool()],
    )
    result = asyncio.run(Runner.run(agent, WEATHER_QUESTION))
    return Expect([WEATHER_QUESTION], [str(result.final_output)])


def agents_stream(stub: OpenAIStub, tracer: Tracer) -> Expect:
    from agents import Agent, ModelSettings, Runner

    stub.script(reply_text(STREAM_ANSWER))
    # The SDK asks for stream usage by itself only from api.openai.com; an app on another
    # OpenAI-compatible endpoint sets include_usage.
    agent = Agent(
        name="Assistant",
        instructions=SYSTEM,
        model=_agents_model(stub),
        model_settings=ModelSettings(include_usage=True),
    )

    async def run() -> str:
        result = Runner.run_streamed(agent, STREAM_QUESTION)
        async for _ in result.stream_events():
            pass
        return str(result.final_output)

    return Expect([STREAM_QUESTION], [asyncio.run(run())])


def agents_handoff(stub: OpenAIStub, tracer: Tracer) -> Expect:
    from agents import Agent, Runner

    stub.script(
        reply_tool_call("transfer_to_weather_agent", {}, "call_1"),
        reply_tool_call("get_weather", {"city": "Paris"}, "call_2"),
        reply_text(HANDOFF_ANSWER),
    )
    model = _agents_model(stub)
    weather = Agent(
        name="Weather agent",
        handoff_description="Answers questions about the weather.",
        instructions="Answer weather questions with the get_weather tool.",
        model=model,
        tools=[_agents_weather_tool()],
    )
    triage = Agent(name="Triage agent", instructions=SYSTEM, model=model, handoffs=[weather])
    result = asyncio.run(Runner.run(triage, WEATHER_QUESTION))
    return Expect([WEATHER_QUESTION], [str(result.final_output)])


# ------------------------------------------------------------------------------------------------
# Pydantic AI (its built-in OpenTelemetry instrumentation)
# ------------------------------------------------------------------------------------------------


@contextmanager
def instrumented_pydantic_ai(tracer_provider: TracerProvider) -> Iterator[Any]:
    from pydantic_ai import Agent
    from pydantic_ai.models.instrumented import InstrumentationSettings

    # Every agent instrumented, with the default version and content settings: what a user gets
    # from Agent.instrument_all() (the per-agent argument is not in every supported release).
    Agent.instrument_all(InstrumentationSettings(tracer_provider=tracer_provider))
    try:
        yield None
    finally:
        Agent.instrument_all(False)


def _pai_agent(stub: OpenAIStub, **kwargs: Any) -> Any:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    provider = OpenAIProvider(openai_client=_async_client(stub))
    model = OpenAIChatModel(MODEL, provider=provider)
    return Agent(model, **kwargs)


def _pai_weather_tool(agent: Any) -> None:
    from pydantic_ai import ModelRetry

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """Current weather of a city."""
        try:
            return get_weather_impl(city)
        except ToolFailedError as exc:  # Pydantic AI's way to hand a tool error to the model
            raise ModelRetry(str(exc)) from exc


def pydantic_ai_chat(stub: OpenAIStub, _: Any) -> Expect:
    stub.script(*(reply_text(a) for a in ANSWERS))
    agent = _pai_agent(stub, name="assistant", instructions=SYSTEM)
    history: list[Any] = []
    expect = Expect()
    for question in QUESTIONS:
        result = asyncio.run(agent.run(question, message_history=history))
        history = result.all_messages()
        expect.questions.append(question)
        expect.answers.append(str(result.output))
    return expect


def pydantic_ai_tool_failure(stub: OpenAIStub, _: Any) -> Expect:
    tool_failure_script(stub)
    agent = _pai_agent(stub, name="assistant", instructions=SYSTEM)
    _pai_weather_tool(agent)
    result = asyncio.run(agent.run(WEATHER_QUESTION))
    return Expect([WEATHER_QUESTION], [str(result.output)])


def pydantic_ai_stream(stub: OpenAIStub, _: Any) -> Expect:
    stub.script(reply_text(STREAM_ANSWER))
    agent = _pai_agent(stub, name="assistant", instructions=SYSTEM)

    async def run() -> str:
        async with agent.run_stream(STREAM_QUESTION) as result:
            async for _ in result.stream_text():
                pass
            return str(await result.get_output())

    return Expect([STREAM_QUESTION], [asyncio.run(run())])


def pydantic_ai_handoff(stub: OpenAIStub, _: Any) -> Expect:
    """Pydantic AI has no handoff primitive: its documented pattern is agent delegation, a tool of
    one agent that runs another."""
    stub.script(
        reply_tool_call("ask_weather_agent", {"question": WEATHER_QUESTION}, "call_1"),
        reply_tool_call("get_weather", {"city": "Paris"}, "call_2"),
        reply_text(WEATHER_ANSWER),
        reply_text(HANDOFF_ANSWER),
    )
    weather = _pai_agent(
        stub,
        name="weather_agent",
        instructions="Answer weather questions with the get_weather tool.",
    )
    _pai_weather_tool(weather)
    triage = _pai_agent(stub, name="triage_agent", instructions=SYSTEM)

    @triage.tool
    async def ask_weather_agent(ctx: RunContext[None], question: str) -> str:
        """Ask the weather agent."""
        result = await weather.run(question, usage=ctx.usage)
        return str(result.output)

    result = asyncio.run(triage.run(WEATHER_QUESTION))
    return Expect([WEATHER_QUESTION], [str(result.output)])


# ------------------------------------------------------------------------------------------------
# LangGraph + langchain-openai + openinference-instrumentation-langchain
# ------------------------------------------------------------------------------------------------


@contextmanager
def instrumented_langchain(tracer_provider: TracerProvider) -> Iterator[Tracer]:
    from openinference.instrumentation.langchain import LangChainInstrumentor

    instrumentor = LangChainInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider)
    try:
        yield tracer_provider.get_tracer("conformance-app")
    finally:
        instrumentor.uninstrument()


def _lc_llm(stub: OpenAIStub, streaming: bool = False) -> Any:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=MODEL,
        base_url=stub.base_url,
        api_key="stub-key",  # type: ignore[arg-type]
        max_retries=0,
        streaming=streaming,
        stream_usage=True,
    )


def _lc_weather_tool() -> Any:
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str) -> str:
        """Current weather of a city."""
        return get_weather_impl(city)

    return get_weather


def _tool_node(tools: list[Any], **kwargs: Any) -> Any:
    """langgraph.prebuilt's ToolNode. Importing the package warns in langgraph-prebuilt 1.0.0
    (it re-exports names deprecated in LangGraph 1.0); the warning is about those, not ToolNode."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from langgraph.prebuilt import ToolNode
    return ToolNode(tools, **kwargs)


def _lc_agent_graph(llm: Any, tools: list[Any]) -> Any:
    """The classic LangGraph agent: call_model, then tools while the model asks for them."""
    from langchain_core.messages import SystemMessage
    from langgraph.graph import END, START, MessagesState, StateGraph

    model = llm.bind_tools(tools) if tools else llm

    def call_model(state: Any) -> dict[str, Any]:
        return {"messages": [model.invoke([SystemMessage(SYSTEM), *state["messages"]])]}

    def should_continue(state: Any) -> str:
        return "tools" if state["messages"][-1].tool_calls else END

    graph = StateGraph(MessagesState)
    graph.add_node("call_model", call_model)
    graph.add_edge(START, "call_model")
    if tools:
        # handle_tool_errors=True: a failing tool's error goes back to the model as its result.
        graph.add_node("tools", _tool_node(tools, handle_tool_errors=True))
        graph.add_conditional_edges("call_model", should_continue, ["tools", END])
        graph.add_edge("tools", "call_model")
    else:
        graph.add_edge("call_model", END)
    return graph.compile()


def langgraph_chat(stub: OpenAIStub, tracer: Tracer) -> Expect:
    from langchain_core.messages import HumanMessage

    stub.script(*(reply_text(a) for a in ANSWERS))
    graph = _lc_agent_graph(_lc_llm(stub), [])
    history: list[Any] = []
    expect = Expect()
    for question in QUESTIONS:
        state = graph.invoke({"messages": [*history, HumanMessage(question)]})
        history = state["messages"]
        expect.questions.append(question)
        expect.answers.append(str(history[-1].content))
    return expect


def langgraph_tool_failure(stub: OpenAIStub, tracer: Tracer) -> Expect:
    from langchain_core.messages import HumanMessage

    tool_failure_script(stub)
    graph = _lc_agent_graph(_lc_llm(stub), [_lc_weather_tool()])
    state = graph.invoke({"messages": [HumanMessage(WEATHER_QUESTION)]})
    return Expect([WEATHER_QUESTION], [str(state["messages"][-1].content)])


def langgraph_stream(stub: OpenAIStub, tracer: Tracer) -> Expect:
    from langchain_core.messages import HumanMessage

    stub.script(reply_text(STREAM_ANSWER))
    graph = _lc_agent_graph(_lc_llm(stub, streaming=True), [])
    text = ""
    for chunk, _meta in graph.stream(
        {"messages": [HumanMessage(STREAM_QUESTION)]}, stream_mode="messages"
    ):
        text += str(chunk.content)
    return Expect([STREAM_QUESTION], [text])


def langgraph_handoff(stub: OpenAIStub, tracer: Tracer) -> Expect:
    """Two agents in one graph: the triage agent's transfer tool routes to the weather agent."""
    from langchain_core.messages import HumanMessage, SystemMessage, ToolMessage
    from langchain_core.tools import tool
    from langgraph.graph import END, START, MessagesState, StateGraph

    stub.script(
        reply_tool_call("transfer_to_weather_agent", {}, "call_1"),
        reply_tool_call("get_weather", {"city": "Paris"}, "call_2"),
        reply_text(HANDOFF_ANSWER),
    )

    @tool
    def transfer_to_weather_agent() -> str:
        """Hand the conversation to the weather agent."""
        return "transferred"

    llm = _lc_llm(stub)
    triage_model = llm.bind_tools([transfer_to_weather_agent])
    weather_tool = _lc_weather_tool()
    weather_model = llm.bind_tools([weather_tool])

    def triage_agent(state: Any) -> dict[str, Any]:
        reply = triage_model.invoke([SystemMessage(SYSTEM), *state["messages"]])
        messages: list[Any] = [reply]
        for call in reply.tool_calls:  # the handoff: answer the call, route on
            messages.append(ToolMessage("Transferred to weather_agent.", tool_call_id=call["id"]))
        return {"messages": messages}

    def weather_agent(state: Any) -> dict[str, Any]:
        prompt = [SystemMessage("Answer weather questions with the get_weather tool.")]
        return {"messages": [weather_model.invoke([*prompt, *state["messages"]])]}

    def after_triage(state: Any) -> str:
        return "weather_agent" if isinstance(state["messages"][-1], ToolMessage) else END

    def after_weather(state: Any) -> str:
        return "tools" if state["messages"][-1].tool_calls else END

    graph = StateGraph(MessagesState)
    graph.add_node("triage_agent", triage_agent)
    graph.add_node("weather_agent", weather_agent)
    graph.add_node("tools", _tool_node([weather_tool]))
    graph.add_edge(START, "triage_agent")
    graph.add_conditional_edges("triage_agent", after_triage, ["weather_agent", END])
    graph.add_conditional_edges("weather_agent", after_weather, ["tools", END])
    graph.add_edge("tools", "weather_agent")
    state = graph.compile().invoke({"messages": [HumanMessage(WEATHER_QUESTION)]})
    return Expect([WEATHER_QUESTION], [str(state["messages"][-1].content)])


# ------------------------------------------------------------------------------------------------
# The matrix
# ------------------------------------------------------------------------------------------------

App = Callable[[OpenAIStub, Any], Expect]


@dataclass(frozen=True)
class Instrumentation:
    """One column of the matrix: how to instrument, which packages name its version, its apps."""

    name: str
    packages: tuple[str, ...]  # the distributions whose versions make the tier
    imports: tuple[str, ...]  # modules that must import for the runs to happen
    instrument: Callable[[TracerProvider], Any]  # context manager; yields what apps take
    apps: dict[str, App]
    agent_framework: bool = False


def _openai_apps() -> dict[str, App]:
    return {"chat": openai_chat, "tool_failure": openai_tool_failure, "stream": openai_stream}


INSTRUMENTATIONS: dict[str, Instrumentation] = {
    i.name: i
    for i in (
        Instrumentation(
            "openai-v2",
            ("opentelemetry-instrumentation-openai-v2", "openai"),
            ("opentelemetry.instrumentation.openai_v2", "openai"),
            lambda tp: instrumented_openai("openai-v2", tp),
            _openai_apps(),
        ),
        Instrumentation(
            "openinference-openai",
            ("openinference-instrumentation-openai", "openai"),
            ("openinference.instrumentation.openai", "openai"),
            lambda tp: instrumented_openai("openinference-openai", tp),
            _openai_apps(),
        ),
        Instrumentation(
            "openllmetry-openai",
            ("opentelemetry-instrumentation-openai", "openai"),
            ("opentelemetry.instrumentation.openai", "openai"),
            lambda tp: instrumented_openai("openllmetry-openai", tp),
            _openai_apps(),
        ),
        Instrumentation(
            "openai-agents",
            ("openai-agents", "openinference-instrumentation-openai-agents", "openai"),
            ("agents", "openinference.instrumentation.openai_agents"),
            instrumented_agents,
            {
                "chat": agents_chat,
                "tool_failure": agents_tool_failure,
                "stream": agents_stream,
                "handoff": agents_handoff,
            },
            agent_framework=True,
        ),
        Instrumentation(
            "pydantic-ai",
            ("pydantic-ai-slim", "openai"),
            ("pydantic_ai", "pydantic_ai.models.openai"),
            instrumented_pydantic_ai,
            {
                "chat": pydantic_ai_chat,
                "tool_failure": pydantic_ai_tool_failure,
                "stream": pydantic_ai_stream,
                "handoff": pydantic_ai_handoff,
            },
            agent_framework=True,
        ),
        Instrumentation(
            "langgraph",
            (
                "langgraph",
                "langchain-openai",
                "langchain-core",
                "openinference-instrumentation-langchain",
                "openai",
            ),
            ("langgraph", "langchain_openai", "openinference.instrumentation.langchain"),
            instrumented_langchain,
            {
                "chat": langgraph_chat,
                "tool_failure": langgraph_tool_failure,
                "stream": langgraph_stream,
                "handoff": langgraph_handoff,
            },
            agent_framework=True,
        ),
    )
}
