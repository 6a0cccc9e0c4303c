"""``galileo-otel serve`` arguments and the loopback rule, without starting a server."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from galileo_otel.server import default_db_path
from galileo_otel.server.cli import add_serve_parser, run_serve
from galileo_otel.server.runner import is_loopback, serve_in_thread


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="galileo-otel")
    add_serve_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


def test_defaults() -> None:
    args = _parse()
    assert (args.host, args.port, args.db, args.api_key) == ("127.0.0.1", 8088, None, None)
    assert args.allow_remote is False and args.faults is False
    assert args.func is run_serve


def test_default_db_is_under_the_user_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", "/data/home")
    assert default_db_path() == Path("/data/home/galileo-otel/galileo.db")
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_db_path() == Path.home() / ".local/share/galileo-otel/galileo.db"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_non_loopback_needs_the_flag_and_a_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(tmp_path / "never.db")
    assert run_serve(_parse("--host", "0.0.0.0", "--db", db)) == 2
    assert "--allow-remote" in capsys.readouterr().err
    assert run_serve(_parse("--host", "0.0.0.0", "--db", db, "--allow-remote")) == 2
    assert "key" in capsys.readouterr().err
    monkeypatch.setenv("GALILEO_API_KEY", "k")
    assert run_serve(_parse("--host", "0.0.0.0", "--db", db)) == 2
    assert not Path(db).exists()  # refused before anything was opened
    with pytest.raises(ValueError, match="allow_remote"):
        serve_in_thread(db_path=db, host="10.0.0.1", api_key="k", start=False)
