"""configure(), its handle, and the opentelemetry-instrument distro/configurator, without sockets."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from galileo_otel.api.client import Destination
from galileo_otel.errors import ConfigError
from galileo_otel.sessions.context import session
from galileo_otel.settings import GalileoSettings

# The module, not the function galileo_otel re-exports under the same name.
cfg = importlib.import_module("galileo_otel.configure")

PID = "6a0b3c8e-1f2d-4e5f-9a8b-7c6d5e4f3a2b"
LSID = "0f1e2d3c-4b5a-4968-8776-655443322110"
OK = {"api_key": "k", "api_url": "http://127.0.0.1:9", "project": "p"}


class FakePipeline:
    instances: ClassVar[list[FakePipeline]] = []

    def __init__(self, settings: GalileoSettings, **kwargs: Any) -> None:
        self.settings = settings
        self.kwargs = kwargs
        self.spans: list[Any] = []
        self.shutdowns = 0
        FakePipeline.instances.append(self)

    def submit(self, span: Any) -> bool:
        self.spans.append(span)
        return True

    def force_flush(self, timeout_s: float | None = None) -> bool:
        return True

    def shutdown(self, timeout_s: float | None = None) -> bool:
        self.shutdowns += 1
        return self.shutdowns == 1

    def stats(self) -> dict[str, int]:
        return {"spans_queued": len(self.spans)}


@pytest.fixture
def fake_export(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakePipeline]]:
    import galileo_otel.export.pipeline as pipeline_module

    FakePipeline.instances = []
    monkeypatch.setattr(pipeline_module, "ExportPipeline", FakePipeline)
    calls: list[GalileoSettings] = []

    def fake_resolve(settings: GalileoSettings, **kwargs: Any) -> Destination:
        calls.append(settings)
        return Destination(PID, settings.project, LSID, None, "default")

    monkeypatch.setattr(cfg, "resolve_destination", fake_resolve)
    yield FakePipeline.instances


@pytest.fixture
def fresh_global(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Let a test set the global tracer provider (once per process otherwise)."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    yield


@pytest.fixture(autouse=True)
def _reset_said_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cfg, "_said_disabled", False)


# --- one clear error per bad configuration --------------------------------------------------------


def test_missing_api_key(fake_export: list[FakePipeline]) -> None:
    with pytest.raises(ConfigError, match="no Galileo API key: set GALILEO_API_KEY"):
        cfg.configure(project="p", tracer_provider=TracerProvider())
    assert fake_export == []


def test_missing_project(monkeypatch: pytest.MonkeyPatch, fake_export: list[FakePipeline]) -> None:
    monkeypatch.setenv("GALILEO_API_KEY", "k")
    with pytest.raises(ConfigError, match="no Galileo project: set GALILEO_PROJECT"):
        cfg.configure(tracer_provider=TracerProvider())


def test_malformed_url_names_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALILEO_API_URL", "localhost:8088")
    with pytest.raises(ConfigError) as info:
        cfg.configure(api_key="k", project="p")
    assert "GALILEO_API_URL" in str(info.value) and "not an http(s) URL" in str(info.value)


def test_bad_extra_headers_names_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALILEO_EXTRA_HEADERS", '{"X-Team": ')
    with pytest.raises(ConfigError) as info:
        cfg.configure(api_key="k", project="p")
    message = str(info.value)
    assert "GALILEO_EXTRA_HEADERS" in message and "not valid JSON" in message
    assert "X-Team" not in message  # header values may be secrets


def test_unknown_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="projct"):
        cfg.configure(api_key="k", projct="p")


def test_key_never_in_errors(fake_export: list[FakePipeline]) -> None:
    with pytest.raises(ConfigError) as info:
        cfg.configure(api_key="sekrit-key-1234", api_url="ftp://x", project="p")
    assert "sekrit" not in str(info.value)


# --- resolving the destination at configure time ---------------------------------------------------


def _settings(**kw: Any) -> GalileoSettings:
    return GalileoSettings(**{**OK, **kw})


def test_resolve_401_is_config_error() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(401, json={"detail": "bad key"}))
    with pytest.raises(
        ConfigError, match="rejected the API key \\(HTTP 401\\): check GALILEO_API_KEY"
    ):
        cfg.resolve_destination(_settings(), transport=transport)


def test_resolve_unknown_project_id_is_config_error() -> None:
    transport = httpx.MockTransport(
        lambda request: httpx.Response(404, json={"detail": "Project not found"})
    )
    with pytest.raises(ConfigError) as info:
        cfg.resolve_destination(_settings(project=None, project_id=PID), transport=transport)
    assert f"no Galileo project with id {PID} (GALILEO_PROJECT_ID)" in str(info.value)


def test_resolve_unreachable_is_a_warning_and_lazy(caplog: pytest.LogCaptureFixture) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with caplog.at_level(logging.WARNING, logger="galileo_otel.configure"):
        assert cfg.resolve_destination(_settings(), transport=httpx.MockTransport(refuse)) is None
    assert "could not reach the Galileo API at http://127.0.0.1:9" in caplog.text
    assert "resolve it in the background" in caplog.text


def test_resolve_by_name_creates_missing_log_stream() -> None:
    seen: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.url.path == "/projects":
            return httpx.Response(200, json=[{"id": PID, "name": "p", "type": "gen_ai"}])
        if request.method == "GET":
            return httpx.Response(200, json=[])
        return httpx.Response(
            200,
            json={
                "id": LSID,
                "name": "default",
                "project_id": PID,
                "created_at": "2026-01-01T00:00:00Z",
                "updated_at": "2026-01-01T00:00:00Z",
            },
        )

    dest = cfg.resolve_destination(_settings(), transport=httpx.MockTransport(api))
    assert dest is not None and (dest.project_id, dest.log_stream_id) == (PID, LSID)
    assert seen[-1] == f"POST /v2/projects/{PID}/log_streams"


# --- disabled ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("var", ["GALILEO_LOGGING_DISABLED", "OTEL_SDK_DISABLED"])
def test_disabled_is_a_noop_said_once(
    var: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(var, "true")
    provider = TracerProvider()
    with caplog.at_level(logging.INFO, logger="galileo_otel.configure"):
        first = cfg.configure(tracer_provider=provider)  # no key, no project: not even checked
        second = cfg.configure(tracer_provider=provider)
    assert not first.enabled and not second.enabled
    assert first.force_flush() and first.shutdown() and first.stats() == {"enabled": False}
    said = [r for r in caplog.records if "not sent to Galileo" in r.getMessage()]
    assert len(said) == 1 and var in said[0].getMessage()
    assert not provider._active_span_processor._span_processors


# --- wiring into providers ------------------------------------------------------------------------------


def test_existing_provider_keeps_its_processors(fake_export: list[FakePipeline]) -> None:
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    handle = cfg.configure(tracer_provider=provider, **OK)
    tracer = provider.get_tracer("t")
    with session("conv-1", user_id="u1"), tracer.start_as_current_span("turn"):
        pass
    assert [s.name for s in memory.get_finished_spans()] == ["turn"]
    (pipeline,) = fake_export
    (span,) = pipeline.spans
    assert span.attributes["session.id"] == "conv-1" and span.attributes["user.id"] == "u1"
    assert handle.destination is not None and handle.destination.project_id == PID
    assert pipeline.kwargs["destination"] == handle.destination
    assert handle.stats()["spans_queued"] == 1
    assert handle.force_flush() is True
    assert handle.shutdown() is True
    with tracer.start_as_current_span("after"):
        pass
    assert len(pipeline.spans) == 1  # nothing after shutdown
    assert len(memory.get_finished_spans()) == 2  # the app's own exporter still works


def test_twice_same_settings_returns_the_same_handle(fake_export: list[FakePipeline]) -> None:
    provider = TracerProvider()
    first = cfg.configure(tracer_provider=provider, **OK)
    second = cfg.configure(tracer_provider=provider, **OK)
    assert first is second and len(fake_export) == 1
    assert len(provider._active_span_processor._span_processors) == 1


def test_twice_other_settings_replaces_cleanly(fake_export: list[FakePipeline]) -> None:
    provider = TracerProvider()
    tracer = provider.get_tracer("t")
    first = cfg.configure(tracer_provider=provider, **OK)
    second = cfg.configure(tracer_provider=provider, **{**OK, "reliable": False})
    assert first is not second
    old, new = fake_export
    assert old.shutdowns >= 1 and new.shutdowns == 0
    with tracer.start_as_current_span("x"):
        pass
    assert (len(old.spans), len(new.spans)) == (0, 1)  # exported once, by the new pipeline
    assert len(provider._active_span_processor._span_processors) == 1
    second.shutdown()
    third = cfg.configure(tracer_provider=provider, **OK)  # after shutdown: afresh
    assert third is not second and third.enabled
    with tracer.start_as_current_span("y"):
        pass
    assert len(fake_export[-1].spans) == 1 and len(new.spans) == 1


def test_provider_shutdown_shuts_the_pipeline(fake_export: list[FakePipeline]) -> None:
    provider = TracerProvider()
    cfg.configure(tracer_provider=provider, **OK)
    provider.shutdown()
    assert fake_export[0].shutdowns >= 1


def test_existing_galileo_exporter_is_not_doubled(
    fake_export: list[FakePipeline], caplog: pytest.LogCaptureFixture
) -> None:
    from galileo_otel.exporter import GalileoSpanExporter

    provider = TracerProvider()
    exporter = GalileoSpanExporter(FakePipeline(GalileoSettings(**OK)))  # type: ignore[arg-type]
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with caplog.at_level(logging.WARNING, logger="galileo_otel.configure"):
        handle = cfg.configure(tracer_provider=provider, **OK)
    assert "already exports to Galileo" in caplog.text
    assert len(provider._active_span_processor._span_processors) == 1
    assert handle.enabled and handle.force_flush()


def test_creates_global_provider_with_resource_from_env(
    fresh_global: None, fake_export: list[FakePipeline], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "chat-api")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
    handle = cfg.configure(**OK)
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider) and handle.tracer_provider is provider
    attrs = provider.resource.attributes
    assert attrs["service.name"] == "chat-api" and attrs["deployment.environment"] == "test"


def test_galileo_service_name_used_when_otel_unset(
    fresh_global: None, fake_export: list[FakePipeline]
) -> None:
    cfg.configure(service_name="from-galileo", **OK)
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    assert provider.resource.attributes["service.name"] == "from-galileo"


def test_reuses_global_sdk_provider(fresh_global: None, fake_export: list[FakePipeline]) -> None:
    mine = TracerProvider()
    trace.set_tracer_provider(mine)
    handle = cfg.configure(**OK)
    assert handle.tracer_provider is mine and trace.get_tracer_provider() is mine


# --- zero-code entry points ----------------------------------------------------------------------------


@pytest.fixture
def record_configure(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []

    def fake(settings: GalileoSettings, provider: Any) -> str:
        calls.append((settings, provider))
        return "handle"

    monkeypatch.setattr(cfg, "_configure", fake)
    return calls


def _run_configurator() -> tuple[Any, list[str | None]]:
    import os

    during: list[str | None] = []
    handle = cfg._configurator_configure(
        lambda: during.append(os.environ.get("OTEL_TRACES_EXPORTER"))
    )
    return handle, during


@pytest.mark.parametrize(
    ("value", "during"),
    [("galileo,otlp", "otlp"), ("console, galileo", "console"), ("galileo", "none")],
)
def test_configurator_takes_galileo_out_and_adds_it_itself(
    value: str, during: str, monkeypatch: pytest.MonkeyPatch, record_configure: list[Any]
) -> None:
    import os

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", value)
    handle, seen = _run_configurator()
    assert seen == [during] and handle == "handle" and len(record_configure) == 1
    assert os.environ["OTEL_TRACES_EXPORTER"] == value  # restored


def test_configurator_with_only_galileo_env(
    monkeypatch: pytest.MonkeyPatch, record_configure: list[Any]
) -> None:
    import os

    monkeypatch.setenv("GALILEO_API_KEY", "k")
    monkeypatch.setenv("GALILEO_PROJECT", "p")
    _, seen = _run_configurator()
    assert seen == ["none"] and len(record_configure) == 1
    assert "OTEL_TRACES_EXPORTER" not in os.environ


@pytest.mark.parametrize("value", [None, "otlp", "none"])
def test_configurator_leaves_other_setups_alone(
    value: str | None, monkeypatch: pytest.MonkeyPatch, record_configure: list[Any]
) -> None:
    if value is not None:
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", value)
    monkeypatch.setenv("GALILEO_API_KEY", "k")  # an explicit exporter list wins over intent
    handle, seen = _run_configurator()
    if value is None:
        assert record_configure  # unset + GALILEO_*: ours
    else:
        assert seen == [value] and handle is None and record_configure == []


def test_configurator_config_error_is_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "galileo")
    monkeypatch.setenv("GALILEO_PROJECT", "p")  # but no key
    with caplog.at_level(logging.ERROR, logger="galileo_otel.configure"):
        handle, seen = _run_configurator()
    assert handle is None and seen == ["none"]
    (record,) = caplog.records
    assert "not sending traces to Galileo: no Galileo API key" in record.getMessage()
    assert record.exc_info is None


def test_distro_sets_the_default_exporter_only_with_galileo_intent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    distro = cfg.GalileoDistro()
    distro.configure()
    assert "OTEL_TRACES_EXPORTER" not in os.environ
    monkeypatch.setenv("GALILEO_PROJECT", "p")
    distro.configure()
    assert os.environ["OTEL_TRACES_EXPORTER"] == "galileo"
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    distro.configure()
    assert os.environ["OTEL_TRACES_EXPORTER"] == "console"


def test_entry_points_load_the_right_classes() -> None:
    from opentelemetry.instrumentation.distro import BaseDistro
    from opentelemetry.sdk._configuration import _BaseConfigurator
    from opentelemetry.util._importlib_metadata import entry_points

    (distro,) = [e for e in entry_points(group="opentelemetry_distro") if e.name == "galileo"]
    (conf,) = [e for e in entry_points(group="opentelemetry_configurator") if e.name == "galileo"]
    assert issubclass(distro.load(), BaseDistro)
    assert issubclass(conf.load(), _BaseConfigurator)
    assert distro.load() is cfg.GalileoDistro and conf.load().__name__ == "GalileoConfigurator"
    with pytest.raises(AttributeError):
        cfg.NoSuchThing  # noqa: B018


# --- the start-up line ------------------------------------------------------------------------------


def test_startup_line_says_where_and_how_never_the_key(
    fake_export: list[FakePipeline],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    tmp_path: Any,
) -> None:
    monkeypatch.setattr(cfg, "_logging_configured", lambda: False)  # as in an app without logging
    key = "sk-startup-secret-0123456789"
    with caplog.at_level(logging.INFO, logger="galileo_otel.configure"):
        handle = cfg.configure(
            **{**OK, "api_key": key},
            spool_dir=str(tmp_path / "spool"),
            tracer_provider=TracerProvider(),
        )
        # The same settings again: the same handle, and nothing said twice.
        cfg.configure(
            **{**OK, "api_key": key},
            spool_dir=str(tmp_path / "spool"),
            tracer_provider=handle.tracer_provider,
        )
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    (line,) = lines
    assert line == (
        f"galileo-otel: sending traces to http://127.0.0.1:9, project 'p' ({PID}), "
        f"log stream 'default' ({LSID}); delivery reliable (confirmed, retried, spooled in "
        f"{tmp_path / 'spool'}); API key sk-******89"
    )
    assert key not in err and key not in caplog.text
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [line]
    handle.shutdown()


def test_startup_line_fire_and_forget_and_lazy_destination() -> None:
    settings = GalileoSettings(
        **{**OK, "project": "chat", "log_stream": "prod"}, reliable=False, export_process=True
    )
    line = cfg.startup_line(settings, None)
    assert "project 'chat', log stream 'prod' (not resolved yet: the API did not answer)" in line
    assert "delivery fire-and-forget in a child process" in line
    assert line.endswith("API key *")  # a 1-character key is all stars


def test_startup_message_opt_out_and_app_logging(
    fake_export: list[FakePipeline],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(cfg, "_logging_configured", lambda: False)
    cfg.configure(**OK, startup_message=False, tracer_provider=TracerProvider()).shutdown()
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(cfg, "_logging_configured", lambda: True)  # the app's handlers show it
    cfg.configure(**OK, tracer_provider=TracerProvider()).shutdown()
    assert capsys.readouterr().err == ""


def test_logging_disabled_says_so_on_stderr_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cfg, "_logging_configured", lambda: False)
    monkeypatch.setenv("GALILEO_LOGGING_DISABLED", "true")
    assert cfg.configure().enabled is False
    assert cfg.configure(project="other").enabled is False
    assert capsys.readouterr().err == (
        "galileo-otel: GALILEO_LOGGING_DISABLED is set; traces are not sent to Galileo\n"
    )
