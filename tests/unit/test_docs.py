"""The docs stay in step with the code: settings and CLI generated, quick start = CI, no dead pages."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from galileo_otel.settings import GalileoSettings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text(encoding="utf-8")
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "docs_reference", DOCS / "_hooks" / "reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "_hooks" not in p.parts)


# --- settings and CLI: generated from the code ------------------------------------------------


@pytest.mark.parametrize("field", sorted(GalileoSettings.model_fields))
def test_every_setting_is_in_the_generated_table(field: str) -> None:
    env = f"GALILEO_{field.upper()}"
    rows = [line for line in _hook().settings_markdown().splitlines() if f"`{env}`" in line]
    assert len(rows) == 1, env
    assert f"| `{field}` |" in rows[0]


def test_every_setting_names_its_env_var_in_its_description() -> None:
    for name, field in GalileoSettings.model_fields.items():
        assert (field.description or "").startswith(f"GALILEO_{name.upper()}"), name


def test_generated_defaults_and_otel_fallbacks() -> None:
    table = _hook().settings_markdown()
    assert "| `GALILEO_RELIABLE` | `reliable` | `true` |" in table
    assert "| `GALILEO_SPOOL_MAX_BYTES` | `spool_max_bytes` | `268435456` (256 MiB) |" in table
    assert "| `GALILEO_BATCH_DELAY` (or `OTEL_BSP_SCHEDULE_DELAY`, ms) | `batch_delay` |" in table


def test_the_reference_pages_hold_the_generated_sections() -> None:
    hook = _hook()
    assert hook.SETTINGS_MARKER in (DOCS / "reference" / "settings.md").read_text()
    assert hook.CLI_MARKER in (DOCS / "reference" / "cli.md").read_text()
    page = hook.on_page_markdown(f"a\n{hook.CLI_MARKER}\nb")
    assert hook.CLI_MARKER not in page and "usage: galileo-otel doctor" in page


def test_generated_cli_help_covers_every_command_the_reference_names() -> None:
    generated = {command for command, _ in _hook().cli_sections()}
    assert {"galileo-otel demo", "galileo-otel serve", "galileo-otel doctor"} <= generated
    cli_page = (DOCS / "reference" / "cli.md").read_text()
    named = set()
    for row in re.findall(r"^\| `(galileo-otel [a-z]+(?: [a-z|\\]+)?)", cli_page, flags=re.M):
        words = row.replace("\\|", "|").split(" ")
        for last in words[-1].split("|"):
            named.add(" ".join([*words[:-1], last]) if len(words) > 2 else row)
    assert named and named <= generated, named - generated


# --- the quick start is what CI runs ----------------------------------------------------------


def _quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)


def _extras(command: str) -> set[str]:
    found = re.findall(r"pip install (?:--quiet )?-e '\.\[([a-z,]+)\]'", command)
    assert len(found) == 1, command
    return set(found[0].split(","))


def test_quick_start_is_two_commands_demo_on_the_server_extra_then_tests() -> None:
    commands = _quick_start_commands()
    assert len(commands) == 2
    demo, tests = commands
    assert _extras(demo) == {"server"}, "the demo needs the server extra only"
    assert demo.rstrip().endswith(".venv/bin/galileo-otel demo")
    assert "pytest" in tests


def test_ci_installs_and_runs_exactly_the_quick_start_tests() -> None:
    install, _, test_command = _quick_start_commands()[1].strip().rpartition(" && ")
    ci_lines = [line.strip() for line in CI.splitlines()]
    assert test_command in ci_lines
    (ci_install,) = [
        line for line in ci_lines if "pip install --quiet -e '.[" in line and "dev" in line
    ]
    assert _extras(install) == _extras(ci_install)


def test_ci_builds_the_docs_strictly() -> None:
    ci_lines = [line.strip() for line in CI.splitlines()]
    assert any("pip install" in line and ".[docs]" in line for line in ci_lines)
    assert any(line.endswith("mkdocs build --strict") for line in ci_lines)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r"(?m)^docs = \[", pyproject)


# --- the site: every page in the nav, every link alive, no process words ------------------------


def _nav_files(nav: Any) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [f for item in nav for f in _nav_files(item)]
    if isinstance(nav, dict):
        return [f for value in nav.values() for f in _nav_files(value)]
    return []


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    in_nav = set(_nav_files(config["nav"]))
    on_disk = {str(p.relative_to(DOCS)) for p in _pages()}
    assert in_nav == on_disk


def test_readme_is_a_front_page_whose_links_lead_somewhere() -> None:
    assert len(README.splitlines()) <= 250
    links = re.findall(r"\]\((?!https?://)([^)#]+)(?:#[^)]*)?\)", README)
    assert links
    for link in links:
        assert (ROOT / link).is_file(), link


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_relative_links_of_a_page_lead_somewhere(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for link in re.findall(r"\]\((?!https?://|mailto:)([^)#\s]+)(?:#[^)]*)?\)", text):
        assert (page.parent / link).resolve().is_file(), f"{page.name}: {link}"


PROCESS_WORDS = re.compile(
    r"\b(this|that|next|previous|last) (round|release)\b|\bmerged code\b|\bsessions? of work\b"
    r"|\bissue #?\d+\b|\bround \d+\b",
    re.IGNORECASE,
)


@pytest.mark.parametrize(
    "path", [ROOT / "README.md", *_pages()], ids=lambda p: str(p.relative_to(ROOT))
)
def test_no_process_words(path: Path) -> None:
    found = PROCESS_WORDS.findall(path.read_text())
    assert not found, found


def test_zero_code_docs_say_what_to_install() -> None:
    page = (DOCS / "how-to" / "zero-code.md").read_text()
    assert "pip install galileo-otel opentelemetry-instrumentation" in page
    assert "opentelemetry-distro" in page
    assert "pip install galileo-otel opentelemetry-instrumentation" in README


def test_quick_start_command_splits_cleanly() -> None:
    for command in _quick_start_commands():
        for part in command.split(" && "):
            assert shlex.split(part)


def test_a_list_right_after_a_paragraph_becomes_a_list_on_the_site() -> None:
    lists_after_paragraphs = _hook().lists_after_paragraphs
    assert lists_after_paragraphs("Reliable.\n- one\n- two\n  more\n- three") == (
        "Reliable.\n\n- one\n- two\n  more\n- three"
    )
    assert lists_after_paragraphs("Chaining:\n1. first\n2. second") == (
        "Chaining:\n\n1. first\n2. second"
    )
    code = "```bash\necho\n- not a list\n```"
    assert lists_after_paragraphs(code) == code


def test_the_home_page_is_the_readme_with_site_links() -> None:
    hook = _hook()
    assert (DOCS / "index.md").read_text().strip() == hook.README_MARKER
    home = hook.readme_markdown()
    assert home.startswith("# galileo-otel")
    assert "](docs/" not in home and "](get-started.md)" in home
    assert "mkdocs serve" not in home  # the README's note on building the site stays there


def test_escaped_pipes_in_table_code_render_as_pipes() -> None:
    fix = _hook().pipes_in_table_code
    row = "| `sessions count\\|search` | a \\| b |"
    assert fix(row) == "| `sessions count|search` | a \\| b |"
    assert fix("text `a\\|b`") == "text `a\\|b`"  # outside tables, untouched
