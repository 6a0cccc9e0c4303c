"""Build-time pages: the settings table from GalileoSettings, the CLI from its parser, the home.

An mkdocs hook (mkdocs.yml ``hooks:``): a page that holds ``<!-- generated: settings -->``,
``<!-- generated: cli -->`` or ``<!-- generated: readme -->`` gets that marker replaced by
Markdown made from the code (or README.md) at build time, so the reference can never lag behind
the code, nor the home page behind the README. tests/unit/test_docs.py imports it too.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

SETTINGS_MARKER = "<!-- generated: settings -->"
CLI_MARKER = "<!-- generated: cli -->"
README_MARKER = "<!-- generated: readme -->"
_ROOT = Path(__file__).resolve().parents[2]
_ENV_NAME = re.compile(r"\b((?:GALILEO|OTEL)_[A-Z0-9_]+)\b")
_MIB = 1024 * 1024


def _default(field: Any) -> str:
    from pydantic_core import PydanticUndefined

    if field.default is PydanticUndefined and field.default_factory is not None:
        value = field.default_factory()
    else:
        value = field.default
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int) and value >= _MIB and value % _MIB == 0:
        return f"`{value}` ({value // _MIB} MiB)"
    if isinstance(value, (dict, list, tuple, frozenset, set)) and not value:
        return "`{}`" if isinstance(value, dict) else "none"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_rows() -> list[tuple[str, str, str, str]]:
    """``(env vars, argument, default, meaning)`` for every field of GalileoSettings."""
    from galileo_otel.settings import GalileoSettings

    rows = []
    for name, field in GalileoSettings.model_fields.items():
        description = field.description or ""
        env_part, _, meaning = description.partition(": ")
        env = _ENV_NAME.sub(r"`\1`", env_part)
        first_word = meaning.split(" ", 1)[0]
        if not any(mark in first_word for mark in "()_."):  # configure(), a name: kept as is
            meaning = meaning[:1].upper() + meaning[1:]
        rows.append((env, f"`{name}`", _default(field), meaning))
    return rows


def settings_markdown() -> str:
    """The settings table, one row per field, in the order the fields are declared."""
    lines = ["| env var | argument | default | meaning |", "|---|---|---|---|"]
    for env, argument, default, meaning in settings_rows():
        lines.append(f"| {_cell(env)} | {argument} | {_cell(default)} | {_cell(meaning)} |")
    return "\n".join(lines)


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((name, sub))
    return found


def cli_sections() -> list[tuple[str, str]]:
    """``(command line, help text)`` for the command and every subcommand, depth first."""
    from galileo_otel import cli

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal: make the pages stable
    try:
        root = cli.build_parser()
        sections: list[tuple[str, str]] = []

        def walk(prefix: str, parser: argparse.ArgumentParser) -> None:
            sections.append((prefix, parser.format_help().rstrip()))
            for name, sub in _subcommands(parser):
                walk(f"{prefix} {name}", sub)

        walk("galileo-otel", root)
        return sections
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous


def cli_markdown() -> str:
    """Each command's ``--help``, as the parser prints it."""
    parts = []
    for command, text in cli_sections():
        parts.append(f"### `{command}`\n\n```text\n{text}\n```\n")
    return "\n".join(parts)


def readme_markdown() -> str:
    """README.md as the site's home page: its links to ``docs/`` pages made site-relative."""
    text = (_ROOT / "README.md").read_text(encoding="utf-8")
    # The sentence that tells README readers how to build this site has no place on it.
    text = re.sub(r"(?m)^The documentation is a site built from `docs/`.*\n.*:\n", "", text)
    return text.replace("](docs/", "](")


_LIST_ITEM = re.compile(r"^(?:[-*+]|\d+\.) ")


def lists_after_paragraphs(markdown: str) -> str:
    """Put a blank line before a list that follows a paragraph line directly.

    GitHub starts a list there; Python-Markdown (mkdocs) needs the blank line, or the items run
    into the paragraph as text. Fenced code is left alone.
    """
    out: list[str] = []
    fenced = False
    for line in markdown.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and _LIST_ITEM.match(line) and out:
            previous = out[-1]
            if previous.strip() and not previous.startswith((" ", "\t", "|")):
                if not _LIST_ITEM.match(previous):
                    out.append("")
        out.append(line)
    return "\n".join(out)


_CODE_SPAN = re.compile(r"`[^`\n]*`")


def pipes_in_table_code(markdown: str) -> str:
    r"""Turn ``\|`` inside a code span of a table row into ``|``.

    GitHub needs the backslash there and drops it; Python-Markdown already keeps a code span's
    pipes inside their cell and would show the backslash.
    """

    def unescape(match: re.Match[str]) -> str:
        return match.group(0).replace("\\|", "|")

    return "\n".join(
        _CODE_SPAN.sub(unescape, line) if line.startswith("|") else line
        for line in markdown.split("\n")
    )


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Fill in the generated sections of a page (the mkdocs hook)."""
    if README_MARKER in markdown:
        markdown = markdown.replace(README_MARKER, readme_markdown())
    markdown = pipes_in_table_code(lists_after_paragraphs(markdown))
    if SETTINGS_MARKER in markdown:
        markdown = markdown.replace(SETTINGS_MARKER, settings_markdown())
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_markdown())
    return markdown
