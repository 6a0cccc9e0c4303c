"""Count and search sessions with filters: the Python filter DSL (and the equivalent CLI).

    python examples/count_sessions.py

It first logs a few conversations (so there is something to count), then asks the API:

    galileo-otel sessions count --filter 'num_traces>=2'
    galileo-otel sessions search --filter 'external_id in support-1,support-2' --json
"""

from __future__ import annotations

from _local import galileo_target
from opentelemetry import trace

import galileo_otel
from galileo_otel.api.client import GalileoClient
from galileo_otel.api.filters import number, text


def log_some_conversations() -> None:
    handle = galileo_otel.configure()
    tracer = trace.get_tracer("count-sessions-example")
    for conversation, user, turns in [
        ("support-1", "ann", 3),
        ("support-2", "ben", 1),
        ("sales-1", "ann", 2),
    ]:
        with galileo_otel.session(
            conversation, user_id=user, metadata={"team": conversation.split("-")[0]}
        ):
            for turn in range(turns):
                with tracer.start_as_current_span(f"turn {turn + 1}"):
                    pass
    assert handle.force_flush(), "not everything was delivered"
    handle.shutdown()


def main() -> None:
    with galileo_target(project="count-sessions"):
        log_some_conversations()
        with GalileoClient() as client:
            dest = client.resolve_destination(create=False)
            where = {"project_id": dest.project_id, "log_stream_id": dest.log_stream_id}
            total = client.count_sessions(**where)
            busy = client.count_sessions(**where, filters=[number("num_traces") >= 2])
            support = client.count_sessions(
                **where,
                filter_tree=text("external_id").contains("support") & (number("num_traces") > 1),
            )
            either = client.count_sessions(
                **where,
                filter_tree=(text("external_id") == "support-2")
                | (text("external_id") == "sales-1"),
            )
            page = client.search_sessions(
                **where, filters=[text("user_metadata.team") == "support"]
            )
        print(
            f"count_sessions: total={total} num_traces>=2: {busy} "
            f"support with >1 trace: {support} support-2 or sales-1: {either}"
        )
        print(
            "support sessions: "
            + ", ".join(sorted(str(r.get("external_id")) for r in page.records))
        )


if __name__ == "__main__":
    main()
