"""Zero-code: an app with plain OpenTelemetry spans, sent to Galileo by env vars alone.

The app imports nothing from galileo_otel. Run it under opentelemetry-instrument (from the
package opentelemetry-instrumentation):

    pip install galileo-otel opentelemetry-instrumentation
    GALILEO_API_KEY=... GALILEO_PROJECT=my-app OTEL_PYTHON_DISTRO=galileo \\
    opentelemetry-instrument python examples/env_only.py

(OTEL_PYTHON_DISTRO picks ours when opentelemetry-distro is installed too. Run without the
instrumenter, the app says that it sent nothing.) Sessions come from the
``gen_ai.conversation.id`` and ``user.id`` attributes the app sets. Traces are delivered when the process exits (the tracer provider flushes at exit).

Run it without GALILEO_API_URL (``python examples/env_only.py``) and it starts a local server,
then runs itself under opentelemetry-instrument against it and prints what arrived.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from opentelemetry import trace

CONVERSATIONS = [("conv-a", "alice", 3), ("conv-b", "bob", 2), ("conv-c", "alice", 1)]


def app() -> None:
    """The instrumented app: plain OpenTelemetry, no Galileo code."""
    tracer = trace.get_tracer("env-only-app")
    for conversation, user, turns in CONVERSATIONS:
        for turn in range(turns):
            attributes = {
                "gen_ai.conversation.id": conversation,
                "user.id": user,
                "gen_ai.operation.name": "invoke_agent",
            }
            with tracer.start_as_current_span(f"turn {turn + 1}", attributes=attributes):
                with tracer.start_as_current_span("chat small-model") as llm:
                    llm.set_attributes(
                        {
                            "gen_ai.operation.name": "chat",
                            "gen_ai.request.model": "small-model",
                            "gen_ai.input.messages": json.dumps(
                                [
                                    {
                                        "role": "user",
                                        "parts": [{"type": "text", "content": f"question {turn}"}],
                                    }
                                ]
                            ),
                            "gen_ai.output.messages": json.dumps(
                                [
                                    {
                                        "role": "assistant",
                                        "parts": [{"type": "text", "content": "answer"}],
                                        "finish_reason": "stop",
                                    }
                                ]
                            ),
                        }
                    )
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider):
        # No SDK was set up: every span above was a no-op, and nothing went anywhere.
        raise SystemExit(
            "env_only: sent nothing: no OpenTelemetry SDK is configured in this process. "
            "Run it under the instrumenter (pip install opentelemetry-instrumentation):\n"
            "    opentelemetry-instrument python examples/env_only.py\n"
            "or with no GALILEO_API_URL / GALILEO_API_KEY set, to try it against a local server."
        )
    print(
        f"env_only: sent {sum(t for _, _, t in CONVERSATIONS)} traces via {type(provider).__name__}"
    )


def run_self_under_instrument() -> None:
    """No Galileo API configured: start a local one and run this file under the instrumenter."""
    from _local import galileo_target, summary

    with galileo_target(project="env-only"):
        env = dict(os.environ, OTEL_PYTHON_DISTRO="galileo", OTEL_PYTHON_CONFIGURATOR="galileo")
        # Next to this Python first: the venv's scripts need not be on PATH.
        beside = Path(sys.executable).with_name("opentelemetry-instrument")
        instrument = str(beside) if beside.exists() else shutil.which("opentelemetry-instrument")
        if instrument is None:
            raise SystemExit(
                "opentelemetry-instrument not found: pip install opentelemetry-instrumentation"
            )
        subprocess.run([instrument, sys.executable, __file__], env=env, check=True, timeout=60)
        summary("env_only")


if __name__ == "__main__":
    if os.environ.get("GALILEO_API_URL") or os.environ.get("GALILEO_API_KEY"):
        app()
    else:
        run_self_under_instrument()
