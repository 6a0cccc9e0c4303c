"""The README stays in step with the code: every setting documented, CI runs its test command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from galileo_otel.settings import GalileoSettings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("field", sorted(GalileoSettings.model_fields))
def test_every_setting_is_in_the_readme_table(field: str) -> None:
    env = f"GALILEO_{field.upper()}"
    rows = [line for line in README.splitlines() if line.startswith(f"| `{env}`")]
    assert rows, f"README settings table has no row for {env}"
    assert f"`{field}`" in rows[0]


def test_every_setting_names_its_env_var_in_its_description() -> None:
    for name, field in GalileoSettings.model_fields.items():
        assert (field.description or "").startswith(f"GALILEO_{name.upper()}"), name


def _quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)


def test_quick_start_is_two_commands_install_and_demo_then_tests() -> None:
    commands = _quick_start_commands()
    assert len(commands) == 2
    install, tests = commands
    assert "pip install -e '.[dev,server]'" in install and "galileo-otel demo" in install
    assert "pytest" in tests


def test_ci_runs_exactly_the_readme_test_command() -> None:
    test_command = _quick_start_commands()[1].strip()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test_command in [line.strip() for line in ci.splitlines()]
