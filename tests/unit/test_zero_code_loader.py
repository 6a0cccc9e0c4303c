"""The loader's warning about the configurator it skipped for ours is dropped; others pass."""

from __future__ import annotations

import logging

import pytest

LOADER = "opentelemetry.instrumentation.auto_instrumentation._load"


def _record(msg: str, *args: str) -> logging.LogRecord:
    return logging.LogRecord(LOADER, logging.WARNING, __file__, 1, msg, args, None)


@pytest.mark.parametrize(
    ("record", "kept"),
    [
        # Ours loaded first, then the other found: what every zero-code run printed.
        (
            _record("Configuration of %s not loaded, %s already loaded", "configurator", "galileo"),
            False,
        ),
        # The other came first, ours named by OTEL_PYTHON_CONFIGURATOR.
        (
            _record(
                "Configuration of %s not loaded because %s is set by %s",
                "configurator",
                "galileo",
                "OTEL_PYTHON_CONFIGURATOR",
            ),
            False,
        ),
        # The user chose the other configurator: ours was skipped, and that is worth saying.
        (
            _record(
                "Configuration of %s not loaded because %s is set by %s",
                "galileo",
                "configurator",
                "OTEL_PYTHON_CONFIGURATOR",
            ),
            True,
        ),
        (_record("Configuration of %s failed", "galileo"), True),
    ],
)
def test_only_the_skipped_for_ours_warning_is_dropped(
    record: logging.LogRecord, kept: bool
) -> None:
    from galileo_otel.configure import _OtherConfiguratorSkipped

    assert _OtherConfiguratorSkipped().filter(record) is kept
