"""configure(): one call that sends an app's OpenTelemetry traces to Galileo, grouped in sessions.

Also the ``opentelemetry-instrument`` entry points (zero-code): ``GalileoDistro`` and
``GalileoConfigurator``, registered as ``galileo`` in ``opentelemetry_distro`` and
``opentelemetry_configurator``.

How the zero-code path works. ``opentelemetry-instrument`` runs one distro, then one
configurator (the first installed, or the one named by ``OTEL_PYTHON_DISTRO`` /
``OTEL_PYTHON_CONFIGURATOR``), then the instrumentations:

* ``GalileoDistro`` makes ``galileo`` the default of ``OTEL_TRACES_EXPORTER`` when ``GALILEO_*``
  variables name an API key or project and ``OTEL_TRACES_EXPORTER`` is unset.
* ``GalileoConfigurator`` is the stock SDK configurator (provider, resource, sampler, the other
  exporters of ``OTEL_TRACES_EXPORTER``, metrics, logs) except that it takes ``galileo`` out of
  the exporter list and wires a :class:`GalileoSessionProcessor` through :func:`configure`
  instead, so ``galileo.session()`` contexts are stamped on spans and a later ``configure()``
  call in the app finds it rather than exporting twice.
* With the stock configurator, ``OTEL_TRACES_EXPORTER=galileo`` loads
  :class:`~galileo_otel.exporter.GalileoSpanExporter` (sessions then come from span
  attributes only).

When other distros are installed (``opentelemetry-distro``), set ``OTEL_PYTHON_DISTRO=galileo``
and ``OTEL_PYTHON_CONFIGURATOR=galileo``: the loader otherwise takes whichever comes first.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider

from galileo_otel.errors import APIError, AuthError, ConfigError, NotFoundError, TransportError
from galileo_otel.errors import ValidationError as APIValidationError
from galileo_otel.settings import GalileoSettings, mask_secret, merge_settings

if TYPE_CHECKING:
    import httpx

    from galileo_otel.api.client import Destination

    # Built on first access by __getattr__ below (the distro needs opentelemetry-instrumentation).
    GalileoDistro: type
    GalileoConfigurator: type

__all__ = ["GalileoConfigurator", "GalileoDistro", "GalileoHandle", "configure"]

_log = logging.getLogger(__name__)

# configure() checks the destination over HTTP with this budget; an app must not wait longer
# than this at start-up for a server that does not answer (the pipeline then resolves lazily).
RESOLVE_TIMEOUT_S = 3.0
DEFAULT_SHUTDOWN_TIMEOUT_S = 30.0

# Env vars whose presence means "the user wants Galileo" in the zero-code path.
_GALILEO_INTENT_VARS = ("GALILEO_API_KEY", "GALILEO_PROJECT", "GALILEO_PROJECT_ID")
_EXPORTER_NAME = "galileo"


class GalileoHandle:
    """What :func:`configure` returns: flush, shut down and inspect the Galileo export.

    Attributes:
        enabled: ``False`` when export is disabled (``GALILEO_LOGGING_DISABLED`` /
            ``OTEL_SDK_DISABLED``); every method is then a harmless no-op.
        settings: The settings in effect.
        destination: The project / log stream resolved at configure time, or ``None`` when the
            server could not be reached then (the pipeline resolves it in the background).
        tracer_provider: The SDK tracer provider the processor was added to.
        processor: The span processor feeding Galileo.
    """

    def __init__(
        self,
        *,
        enabled: bool,
        settings: GalileoSettings,
        destination: Destination | None = None,
        tracer_provider: TracerProvider | None = None,
        processor: Any = None,
        pipeline: Any = None,
    ) -> None:
        self.enabled = enabled
        self.settings = settings
        self.destination = destination
        self.tracer_provider = tracer_provider
        self.processor = processor
        self._pipeline = pipeline
        self._closed = False

    def force_flush(self, timeout_s: float | None = None) -> bool:
        """Deliver everything that ended before this call; ``True`` when all of it is done.

        In reliable mode "done" means confirmed by the server.
        """
        if not self.enabled or self._closed:
            return True
        timeout = self._timeout(timeout_s)
        if self._pipeline is not None:
            return bool(self._pipeline.force_flush(timeout))
        return bool(self.processor.force_flush(int(timeout * 1000)))

    async def aforce_flush(self, timeout_s: float | None = None) -> bool:
        """:meth:`force_flush` for asyncio: awaits a flush on a thread, never blocks the loop."""
        from galileo_otel.lifecycle import in_thread

        return bool(await in_thread(self.force_flush, timeout_s))

    def shutdown(self, timeout_s: float | None = None) -> bool:
        """Flush and stop the export; later spans are not sent. Idempotent."""
        if not self.enabled or self._closed:
            return True
        self._closed = True
        _detach(self)
        timeout = self._timeout(timeout_s)
        ok = True
        if self._pipeline is not None:
            ok = bool(self._pipeline.shutdown(timeout))
        # Marks the processor shut down (its later calls are no-ops); the pipeline's second
        # shutdown returns at once.
        self.processor.shutdown()
        return ok

    def stats(self) -> dict[str, Any]:
        """Counters of the export: queued, sent, confirmed, retried, spooled, dropped..."""
        if not self.enabled:
            return {"enabled": False}
        source = self._pipeline if self._pipeline is not None else self.processor
        stats_fn: Callable[[], dict[str, Any]] | None = getattr(source, "stats", None)
        counters = dict(stats_fn()) if stats_fn is not None else {}
        counters.setdefault("enabled", True)
        return counters

    def _timeout(self, timeout_s: float | None) -> float:
        if timeout_s is not None:
            return timeout_s
        return (
            max(self.settings.export_timeout, 1.0) if self.settings else DEFAULT_SHUTDOWN_TIMEOUT_S
        )

    def __repr__(self) -> str:
        dest = self.destination
        where = f"project_id={dest.project_id!r}" if dest is not None else "destination=lazy"
        return f"GalileoHandle(enabled={self.enabled}, {where})"


class _Slot(SpanProcessor):
    """The one processor configure() adds to a provider; it forwards to the current target.

    An SDK provider cannot remove a processor, so a second configure() with other settings
    swaps the target here instead of stacking a second exporter.
    """

    def __init__(self) -> None:
        self.target: SpanProcessor | None = None
        self.handle: GalileoHandle | None = None

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        target = self.target
        if target is not None:
            target.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        target = self.target
        if target is not None:
            target.on_end(span)

    def shutdown(self) -> None:
        handle = self.handle
        if handle is not None:
            handle.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        handle = self.handle
        return handle.force_flush(timeout_millis / 1000) if handle is not None else True


_lock = threading.RLock()
_slots: weakref.WeakKeyDictionary[TracerProvider, _Slot] = weakref.WeakKeyDictionary()
_said_disabled = False


def _detach(handle: GalileoHandle) -> None:
    with _lock:
        provider = handle.tracer_provider
        slot = _slots.get(provider) if provider is not None else None
        if slot is not None and slot.handle is handle:
            slot.handle = None
            slot.target = None


def configure(*, tracer_provider: TracerProvider | None = None, **overrides: Any) -> GalileoHandle:
    """Send this process's OpenTelemetry traces to Galileo, grouped into sessions.

    Reads :class:`GalileoSettings` (``GALILEO_*`` env vars; ``overrides`` are its field names
    and win), checks the API key and the project, resolves the project and log stream (by id,
    or by name, created when missing unless ``create_missing=False``) and adds a
    :class:`~galileo_otel.processor.GalileoSessionProcessor` with its export pipeline to the
    tracer provider.

    The provider: ``tracer_provider`` if given; else the global one if it is an SDK
    ``TracerProvider`` (added to, never replaced); else a new one, set as global, whose
    resource comes from ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` (or
    ``GALILEO_SERVICE_NAME``).

    Calling it again for the same provider never exports twice: with the same settings it
    returns the existing handle; with different settings it flushes and shuts down the
    previous pipeline and puts the new one in its place. After ``handle.shutdown()`` a new
    call starts afresh.

    With ``GALILEO_LOGGING_DISABLED`` or ``OTEL_SDK_DISABLED`` set it does nothing, logs that
    once, and returns a disabled handle.

    Args:
        tracer_provider: The SDK provider to add to, instead of the global one.
        **overrides: :class:`GalileoSettings` fields, e.g. ``project="chat"``,
            ``reliable=False``, ``session_idle_timeout=600``.

    Returns:
        A :class:`GalileoHandle` with ``force_flush()``, ``shutdown()`` and ``stats()``.

    Raises:
        ConfigError: A setting is invalid; the API key or project is missing; the server
            rejected the API key (401/403); the project or log stream id is unknown (404), or a
            name is unknown and ``create_missing`` is off. An unreachable server is not an
            error: it is logged as a warning and the destination is resolved later.

    Example:
        >>> handle = galileo_otel.configure(project="chat", log_stream="prod")  # doctest: +SKIP
        >>> handle.force_flush()  # doctest: +SKIP
        True
    """
    settings = merge_settings(None, overrides)
    return _configure(settings, tracer_provider)


def _say_disabled(settings: GalileoSettings) -> None:
    global _said_disabled
    with _lock:
        if _said_disabled:
            return
        _said_disabled = True
    if os.environ.get("GALILEO_LOGGING_DISABLED", "").strip():
        why = "GALILEO_LOGGING_DISABLED is set"
    elif os.environ.get("OTEL_SDK_DISABLED", "").strip():
        why = "OTEL_SDK_DISABLED is set"
    else:
        why = "logging_disabled=True"
    _tell(settings, f"galileo-otel: {why}; traces are not sent to Galileo")


# --- what the user is told at start-up ----------------------------------------------------------


def _logging_configured() -> bool:
    """Whether the app set up logging: a handler on our logger or an ancestor (root included)."""
    return _log.hasHandlers()


def _tell(settings: GalileoSettings, line: str) -> None:
    """Log ``line`` at INFO; also print it to stderr when the app has set up no logging.

    Without a handler anywhere, Python drops INFO records (its last-resort handler shows only
    warnings), so a new user would never see where the traces go.
    """
    _log.info("%s", line)
    if settings.startup_message and not _logging_configured():
        print(line, file=sys.stderr, flush=True)


def startup_line(settings: GalileoSettings, destination: Destination | None) -> str:
    """The one line configure() says at start-up: where traces go and how (the key masked)."""
    if destination is not None:
        project = _named(destination.project_name, destination.project_id)
        if destination.experiment_id:
            target = f"experiment {destination.experiment_id}"
        else:
            target = "log stream " + _named(destination.log_stream_name, destination.log_stream_id)
    else:
        project = _named(settings.project, settings.project_id)
        if settings.experiment_id:
            target = f"experiment {settings.experiment_id}"
        else:
            target = "log stream " + _named(settings.log_stream, settings.log_stream_id)
        target += " (not resolved yet: the API did not answer)"
    if settings.reliable:
        mode = "reliable (confirmed, retried"
        spool = settings.spool_path()
        mode += f", spooled in {spool})" if spool is not None else ", no spool)"
    else:
        mode = "fire-and-forget"
    if settings.export_process:
        mode += " in a child process"
    key = settings.api_key.get_secret_value() if settings.api_key is not None else ""
    return (
        f"galileo-otel: sending traces to {settings.resolved_api_url()}, project {project}, "
        f"{target}; delivery {mode}; API key {mask_secret(key)}"
    )


def _named(name: str | None, ident: str | None) -> str:
    if name and ident:
        return f"{name!r} ({ident})"
    if name:
        return repr(name)
    return ident or "'default'"


def validate(settings: GalileoSettings) -> None:
    """Check the settings that configure() cannot do without, without talking to the server.

    Raises:
        ConfigError: The API key or the project is missing.
    """
    if settings.api_key is None or not settings.api_key.get_secret_value().strip():
        raise ConfigError(
            "no Galileo API key: set GALILEO_API_KEY (or pass api_key=...); "
            "for a local server, see `galileo-otel serve`"
        )
    if not settings.project and not settings.project_id:
        raise ConfigError(
            "no Galileo project: set GALILEO_PROJECT (a name) or GALILEO_PROJECT_ID "
            "(or pass project=... / project_id=...)"
        )


def resolve_destination(
    settings: GalileoSettings,
    *,
    timeout_s: float = RESOLVE_TIMEOUT_S,
    transport: httpx.BaseTransport | None = None,
) -> Destination | None:
    """Resolve the project and log stream now, with a short timeout and a single attempt.

    Returns:
        The destination, or ``None`` when the server could not be reached (logged).

    Raises:
        ConfigError: The key was rejected, or the project / log stream does not exist.
    """
    from galileo_otel.api.client import GalileoClient, RetryPolicy

    url = settings.resolved_api_url()
    try:
        with GalileoClient(
            settings=settings, timeout=timeout_s, retry=RetryPolicy.none(), transport=transport
        ) as client:
            return client.resolve_destination(
                project=settings.project,
                project_id=settings.project_id,
                log_stream=settings.log_stream,
                log_stream_id=settings.log_stream_id,
                experiment_id=settings.experiment_id,
                create=settings.create_missing,
            )
    except AuthError as exc:
        raise ConfigError(
            f"the Galileo API at {url} rejected the API key (HTTP {exc.status_code}): "
            "check GALILEO_API_KEY"
        ) from None
    except NotFoundError as exc:
        raise ConfigError(f"{_not_found_words(settings, exc)} (at {url})") from None
    except APIValidationError as exc:
        raise ConfigError(
            f"the Galileo API at {url} rejected the destination: {exc.message}"
        ) from None
    except (TransportError, APIError) as exc:
        # One line either way: the client already sums up a web page answering in the API's
        # place ("an HTML page ..., not the Galileo API: is GALILEO_API_URL ...").
        what = "could not reach" if exc.status_code is None else "got no usable answer from"
        _log.warning(
            "galileo-otel: %s the Galileo API at %s to resolve the project (%s); "
            "continuing, the exporter will resolve it in the background "
            "(`galileo-otel doctor` checks the configuration)",
            what,
            url,
            exc.message,
        )
        return None


def _not_found_words(settings: GalileoSettings, exc: NotFoundError) -> str:
    if settings.project_id and exc.message.startswith("project "):
        return f"no Galileo project with id {settings.project_id} (GALILEO_PROJECT_ID)"
    # configure() creates what is missing unless GALILEO_CREATE_MISSING turned that off.
    return exc.message.replace("(create=False)", "(GALILEO_CREATE_MISSING=false)")


def _existing_galileo_export(provider: TracerProvider, slot: _Slot | None) -> Any:
    """A Galileo processor or exporter already on ``provider`` that configure() did not add."""
    from galileo_otel.exporter import GalileoSpanExporter
    from galileo_otel.processor import GalileoSessionProcessor

    multi = getattr(provider, "_active_span_processor", None)
    for processor in getattr(multi, "_span_processors", ()):
        if processor is slot:
            continue
        if isinstance(processor, GalileoSessionProcessor):
            return processor
        exporter = getattr(processor, "span_exporter", None)
        if isinstance(exporter, GalileoSpanExporter):
            return processor
    return None


def _provider_for(settings: GalileoSettings, given: TracerProvider | None) -> TracerProvider:
    if given is not None:
        return given
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    if not isinstance(current, trace.ProxyTracerProvider):
        raise ConfigError(
            f"the global tracer provider is a {type(current).__name__}, not an OpenTelemetry SDK "
            "TracerProvider: pass configure(tracer_provider=...) to choose the provider"
        )
    attributes: dict[str, Any] = {}
    if settings.service_name and not os.environ.get("OTEL_SERVICE_NAME"):
        attributes[SERVICE_NAME] = settings.service_name
    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME.
    provider = TracerProvider(resource=Resource.create(attributes))
    trace.set_tracer_provider(provider)
    created = trace.get_tracer_provider()
    if created is not provider:  # another thread set one first: use that one
        if isinstance(created, TracerProvider):
            return created
        raise ConfigError("the global tracer provider changed while configuring")
    return provider


def _configure(settings: GalileoSettings, tracer_provider: TracerProvider | None) -> GalileoHandle:
    if settings.logging_disabled:
        _say_disabled(settings)
        return GalileoHandle(enabled=False, settings=settings)
    validate(settings)
    with _lock:
        provider = _provider_for(settings, tracer_provider)
        slot = _slots.get(provider)
        if slot is not None and slot.handle is not None and slot.handle.settings == settings:
            return slot.handle
        other = _existing_galileo_export(provider, slot)
    if other is not None:
        _log.warning(
            "galileo-otel: the tracer provider already exports to Galileo (%s); configure() "
            "adds nothing and returns a handle to it",
            type(other).__name__,
        )
        return GalileoHandle(
            enabled=True, settings=settings, tracer_provider=provider, processor=other
        )

    # The HTTP check runs outside the lock: it may take RESOLVE_TIMEOUT_S.
    destination = resolve_destination(settings)

    from galileo_otel.export import make_pipeline
    from galileo_otel.processor import GalileoSessionProcessor

    pipeline = make_pipeline(settings, destination=destination)
    processor = GalileoSessionProcessor(pipeline, settings=settings)
    handle = GalileoHandle(
        enabled=True,
        settings=settings,
        destination=destination,
        tracer_provider=provider,
        processor=processor,
        pipeline=pipeline,
    )
    previous: GalileoHandle | None = None
    with _lock:
        slot = _slots.get(provider)
        if slot is None:
            slot = _Slot()
            _slots[provider] = slot
            provider.add_span_processor(slot)
        previous = slot.handle
        slot.target = processor
        slot.handle = handle
    from galileo_otel import lifecycle

    lifecycle.track(handle)  # delivered however the process ends (fork, SIGTERM, exit)
    _tell(settings, startup_line(settings, destination))
    if previous is not None:
        _log.info(
            "galileo-otel: configure() called again with other settings; replacing the pipeline"
        )
        previous.shutdown()
    return handle


# --- opentelemetry-instrument entry points ------------------------------------------------------


def _exporter_names(raw: str | None) -> list[str] | None:
    """``OTEL_TRACES_EXPORTER`` as a list; ``None`` when unset, ``[]`` for ``none``."""
    if raw is None or not raw.strip():
        return None
    if raw.strip().lower() == "none":
        return []
    return [name.strip() for name in raw.split(",") if name.strip()]


def _galileo_intended() -> bool:
    return any(os.environ.get(name, "").strip() for name in _GALILEO_INTENT_VARS)


class _OtherConfiguratorSkipped(logging.Filter):
    """Drops the loader's warning that another configurator was skipped because ours runs.

    opentelemetry-instrument loads one configurator and warns about every other one installed
    ("Configuration of configurator not loaded, galileo already loaded"): with
    opentelemetry-distro installed next to galileo-otel that warning greeted every run, though
    skipping the other is exactly what was asked for. Any other loader message passes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        skipped_for_ours = (
            record.msg == "Configuration of %s not loaded, %s already loaded"
            or record.msg == "Configuration of %s not loaded because %s is set by %s"
        ) and len(args) >= 2
        return not (skipped_for_ours and args[1] == _EXPORTER_NAME and args[0] != _EXPORTER_NAME)


def _distro_configure() -> None:
    # The distro runs before the loader picks a configurator: with ours wanted, make the pick
    # ours whatever order the installed entry points come in, and keep the loader quiet about it.
    if _galileo_intended():
        os.environ.setdefault("OTEL_PYTHON_CONFIGURATOR", _EXPORTER_NAME)
    logging.getLogger("opentelemetry.instrumentation.auto_instrumentation._load").addFilter(
        _OtherConfiguratorSkipped()
    )
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip():
        return
    if _galileo_intended():
        os.environ["OTEL_TRACES_EXPORTER"] = _EXPORTER_NAME


def _configurator_configure(sdk_configure: Callable[[], None]) -> GalileoHandle | None:
    """Run the stock SDK set-up without ``galileo``, then add Galileo through configure()."""
    raw = os.environ.get("OTEL_TRACES_EXPORTER")
    names = _exporter_names(raw)
    wanted = _EXPORTER_NAME in names if names is not None else _galileo_intended()
    if not wanted:
        sdk_configure()
        return None
    others = [name for name in (names or []) if name != _EXPORTER_NAME]
    os.environ["OTEL_TRACES_EXPORTER"] = ",".join(others) if others else "none"
    try:
        sdk_configure()
    finally:
        if raw is None:
            os.environ.pop("OTEL_TRACES_EXPORTER", None)
        else:
            os.environ["OTEL_TRACES_EXPORTER"] = raw
    provider = trace.get_tracer_provider()
    try:
        settings = GalileoSettings()
        return _configure(settings, provider if isinstance(provider, TracerProvider) else None)
    except ConfigError as exc:
        # An app started under opentelemetry-instrument must run even when our part is
        # misconfigured: say what is wrong in one line instead of a traceback.
        _log.error("galileo-otel: not sending traces to Galileo: %s", exc)
        return None


def _build_distro() -> type:
    # The module declares itself untyped (a file-level "type: ignore").
    from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]

    class GalileoDistro(BaseDistro):  # type: ignore[misc]
        """The ``galileo`` distro: makes ``galileo`` the default ``OTEL_TRACES_EXPORTER``.

        It does so only when ``GALILEO_API_KEY``, ``GALILEO_PROJECT`` or ``GALILEO_PROJECT_ID``
        is set and ``OTEL_TRACES_EXPORTER`` is not; it sets no metrics or logs exporter.
        """

        def _configure(self, **kwargs: Any) -> None:
            _distro_configure()

    GalileoDistro.__module__ = __name__
    GalileoDistro.__qualname__ = "GalileoDistro"
    return GalileoDistro


def _build_configurator() -> type:
    from opentelemetry.sdk._configuration import _OTelSDKConfigurator

    class GalileoConfigurator(_OTelSDKConfigurator):
        """The ``galileo`` configurator: the stock SDK set-up, plus Galileo via configure().

        ``galileo`` in ``OTEL_TRACES_EXPORTER`` (or, with it unset, ``GALILEO_*`` settings)
        adds a session processor and export pipeline to the provider; the other exporters
        named there (``otlp``, ``console``...) are set up as usual.
        """

        handle: GalileoHandle | None = None

        def _configure(self, **kwargs: Any) -> None:
            parent = super()._configure
            type(self).handle = _configurator_configure(
                lambda: parent(**kwargs)  # type: ignore[no-untyped-call]
            )

    GalileoConfigurator.__module__ = __name__
    GalileoConfigurator.__qualname__ = "GalileoConfigurator"
    return GalileoConfigurator


_lazy_builders: dict[str, Callable[[], type]] = {
    "GalileoDistro": _build_distro,
    "GalileoConfigurator": _build_configurator,
}
_lazy_cache: dict[str, type] = {}


def __getattr__(name: str) -> Any:
    # The entry-point classes are built on first use: the distro needs
    # opentelemetry-instrumentation, which configure() users need not install.
    builder = _lazy_builders.get(name)
    if builder is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _lock:
        if name not in _lazy_cache:
            _lazy_cache[name] = builder()
        return _lazy_cache[name]
