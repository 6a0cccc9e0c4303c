"""Make the README's screenshots of the web UI from a real run.

Starts the local server on 127.0.0.1, sends it the demo's traffic through the real export
pipeline (plus one conversation whose tool call fails), opens the UI in headless Chromium through
its token URL and saves a PNG of each page under docs/.

    python docs/make_screenshots.py [--chromium /usr/bin/chromium]

Needs the ``server`` and ``dev`` extras (playwright) and a Chromium binary; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode
from playwright.sync_api import sync_playwright

from galileo_otel import configure, session
from galileo_otel.demo import DemoOptions, run_demo
from galileo_otel.server import serve_in_thread

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEY = "screenshot-key"
PAGES = ("ui-sessions", "ui-chain", "ui-session", "ui-trace", "ui-traces", "ui-trace-error")
DOCS = Path(__file__).parent


def failing_turn(url: str, workdir: str) -> None:
    """One conversation of erin's whose tool call fails: an error in the UI."""
    provider = TracerProvider()
    handle = configure(
        tracer_provider=provider,
        api_url=url,
        api_key=KEY,
        project="galileo-otel-demo",
        log_stream="errors",
        create_missing=True,
        spool_dir=f"{workdir}/spool",
    )
    tracer = provider.get_tracer("screenshots")
    with session("erin-refund", user_id="erin", name="support chat erin-refund"):
        with tracer.start_as_current_span("invoke_agent support-bot") as root:
            root.set_attribute("gen_ai.operation.name", "invoke_agent")
            root.set_attribute("gen_ai.agent.name", "support-bot")
            root.set_attribute("user.id", "erin")
            with tracer.start_as_current_span("execute_tool issue_refund") as tool:
                tool.set_attribute("gen_ai.operation.name", "execute_tool")
                tool.set_attribute("gen_ai.tool.name", "issue_refund")
                tool.set_attribute("gen_ai.tool.call.arguments", json.dumps({"order_id": "4265"}))
                tool.record_exception(TimeoutError("payments service timed out after 30 s"))
                tool.set_status(Status(StatusCode.ERROR, "payments service timed out"))
            root.set_status(Status(StatusCode.ERROR, "tool issue_refund failed"))
    handle.force_flush(30)
    handle.shutdown(30)
    provider.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Run the server, send the traffic, save the PNGs; the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--out", default=str(DOCS))
    args = parser.parse_args(argv)
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as workdir:
        with serve_in_thread(db_path=f"{workdir}/ui.db", api_key=KEY) as server:
            run_demo(
                DemoOptions(api_url=server.url, api_key=KEY, progress=False, out=io.StringIO())
            )
            failing_turn(server.url, workdir)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(server.ui_url)
                page.screenshot(path=out / "ui-sessions.png", full_page=True)
                page.click("#sessions a.user-link >> text=alice")
                page.wait_for_selector("#timeline")
                page.screenshot(path=out / "ui-chain.png", full_page=True)
                page.click("#chain li.rotation a.session-link")
                page.wait_for_selector("#traces")
                page.go_back()
                page.click("#chain a.session-link >> text=support chat alice-conv-1")
                page.wait_for_selector("#traces")
                page.screenshot(path=out / "ui-session.png", full_page=True)
                page.click("#traces tr >> nth=1 >> a.trace-link >> nth=1")
                page.wait_for_selector("#steps")
                page.screenshot(path=out / "ui-trace.png", full_page=True)
                # The traces list, searched and sorted by tokens (most first).
                page.click("#nav-traces")
                page.fill("#search", "order")
                page.click("#trace-filters button[type=submit]")
                page.wait_for_selector("#traces")
                page.click("a.sort[data-sort=total_tokens]")
                page.wait_for_url("**sort=total_tokens**")
                page.screenshot(path=out / "ui-traces.png", full_page=True)
                # The failed refund: the waterfall, its error, one step folded.
                page.fill("#search", "")
                page.select_option("select[name=errors]", "yes")
                page.click("#trace-filters button[type=submit]")
                page.click("#traces a.trace-link >> nth=0")
                page.wait_for_selector("#steps")
                page.screenshot(path=out / "ui-trace-error.png", full_page=True)
                browser.close()
    for name in PAGES:
        print(out / f"{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
