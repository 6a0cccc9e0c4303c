"""The public face of the package is exactly what __all__ lists, sorted."""

from __future__ import annotations

import galileo_otel

EXPECTED = {
    "APIError",
    "AsyncGalileoClient",
    "AuthError",
    "ConfigError",
    "GalileoClient",
    "GalileoError",
    "GalileoHandle",
    "GalileoSessionProcessor",
    "GalileoSettings",
    "GalileoSpanExporter",
    "NotFoundError",
    "RateLimitError",
    "TransportError",
    "ValidationError",
    "__version__",
    "aforce_flush",
    "configure",
    "current_session",
    "force_flush",
    "serverless_handler",
    "session",
}


def test_all_lists_exactly_the_public_names() -> None:
    assert set(galileo_otel.__all__) == EXPECTED
    assert list(galileo_otel.__all__) == sorted(galileo_otel.__all__)


def test_every_public_name_exists_and_no_other_public_name_leaks() -> None:
    for name in galileo_otel.__all__:
        assert hasattr(galileo_otel, name), name
    public = {
        name
        for name in vars(galileo_otel)
        if not name.startswith("_")
        and not isinstance(getattr(galileo_otel, name), type(galileo_otel))
    }
    assert public == EXPECTED - {"__version__"}


def test_every_public_symbol_has_a_docstring() -> None:
    for name in galileo_otel.__all__:
        if name == "__version__":
            continue
        assert (getattr(galileo_otel, name).__doc__ or "").strip(), name


def test_version_is_the_client_version() -> None:
    from galileo_otel._version import __version__

    assert galileo_otel.__version__ == __version__
    assert __version__.count(".") >= 2
