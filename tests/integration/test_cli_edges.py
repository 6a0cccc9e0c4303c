"""The command's rough edges: ports, missing extras, unknown options, broken pipes, empty states."""

from __future__ import annotations

import importlib.abc
import os
import subprocess
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import pytest
from conftest_cli import BIN, explain, galileo_env, run

from galileo_otel import cli

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("port", ["99999", "-1", "65536", "http"])
def test_serve_port_out_of_range_is_a_usage_error(
    port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", "--port", port])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: galileo-otel serve ")
    assert "galileo-otel serve: error: argument --port: " in err
    assert "Traceback" not in err


class _Hide(importlib.abc.MetaPathFinder):
    """Makes one module look uninstalled, as in a base install without the [server] extra."""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> Any:
        if fullname == self.name or fullname.startswith(self.name + "."):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["serve", "--port", "0"],
            "galileo-otel serve needs the 'server' extra (uvicorn is not installed): "
            "pip install 'galileo-otel[server]'\n",
        ),
        (
            ["demo", "--no-progress"],
            "galileo-otel demo needs the 'server' extra (uvicorn is not installed): "
            "pip install 'galileo-otel[server]', or pass --api-url\n",
        ),
    ],
)
def test_a_command_without_its_extra_says_which_in_one_line(
    argv: list[str],
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in [m for m in sys.modules if m == "uvicorn" or m.startswith("uvicorn.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_Hide("uvicorn"), *sys.meta_path])
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err == expected and captured.out == ""


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["demo", "--bogus"], "usage: galileo-otel demo "),
        (["sessions", "count", "--bogus"], "usage: galileo-otel sessions count "),
        (["tail", "--bogus"], "usage: galileo-otel tail "),
        (["doctor", "--bogus", "x"], "usage: galileo-otel doctor "),
    ],
)
def test_an_unknown_option_prints_its_subcommands_usage(
    argv: list[str], usage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage), err
    assert "unrecognized arguments: --bogus" in err


def _run_into_closed_pipe(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run with stdout a pipe whose reader is already gone (`cmd | head` after head exits)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GALILEO_", "OTEL_"))}
    try:
        return subprocess.run(
            args,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env={**base, **env},
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)


def test_tail_into_a_closed_pipe_ends_without_a_traceback(local_project: Any) -> None:
    server, client, _ = local_project
    client.log_traces([{"input": "hi", "output": "hello", "name": "turn"}])
    proc = _run_into_closed_pipe(
        [str(BIN / "galileo-otel"), "tail", "--json", "--for", "0"],
        galileo_env(server, project="test"),
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == ""


def test_doctor_into_a_closed_pipe_ends_without_a_traceback() -> None:
    proc = _run_into_closed_pipe([str(BIN / "galileo-otel"), "doctor"], {})
    assert proc.returncode == 1 and proc.stderr == ""


def test_empty_states_say_what_to_do(local_project: Any) -> None:
    server, _, _ = local_project
    env = galileo_env(server, project="test")
    search = run([str(BIN / "galileo-otel"), "sessions", "search"], env)
    assert search.returncode == 0, explain(search)
    assert search.stdout.strip() == (
        "no sessions in this log stream yet: send some traces (or run `galileo-otel demo`)"
    )
    filtered = run([str(BIN / "galileo-otel"), "sessions", "search", "-f", "num_traces>5"], env)
    assert filtered.stdout.strip() == "no sessions match these filters"
    tail = run([str(BIN / "galileo-otel"), "tail", "--for", "0"], env)
    assert tail.returncode == 0, explain(tail)
    assert "no traces yet" in tail.stderr
