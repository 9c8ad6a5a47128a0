"""The generated documentation matches the code: docs/cli.md (the parser) and docs/settings.md (the settings'
definitions); README stays a front door."""

from pathlib import Path

from fpbench.cli import build_parser
from fpbench.reports.reference_docs import cli_reference, settings_reference

REPO = Path(__file__).resolve().parents[1]


def test_the_committed_cli_reference_is_the_parsers():
    assert (REPO / "docs" / "cli.md").read_text() == cli_reference(build_parser()), \
        "docs/cli.md is stale: run `fpbench docs`"


def test_the_committed_settings_reference_is_the_codes():
    assert (REPO / "docs" / "settings.md").read_text() == settings_reference(), \
        "docs/settings.md is stale: run `fpbench docs`"


def test_readme_is_a_front_door():
    text = (REPO / "README.md").read_text()
    assert len(text.encode()) <= 6000
    first = "\n".join(text.splitlines()[:40])
    assert "fpbench run paper --scale smoke" in first and "fpbench check" in first
