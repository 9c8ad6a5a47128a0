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


HAND_WRITTEN = ["README.md", "reports/README.md", *(f"docs/{p.name}" for p in sorted((REPO / "docs").glob("*.md"))
                                                     if p.name not in ("cli.md", "settings.md"))]


def _stale_statements(text: str) -> list[str]:
    """What a hand-written doc says that the code contradicts: an exit status the command does not have, the
    samples file's former name, and a command said to write into reports/ without --out (reports go to
    fpbench-reports/ unless --out names a file)."""
    import re

    from fpbench.cli import EXIT
    from fpbench.run.store import LEGACY_SAMPLES_FILE

    found = [f"status {n}" for n in re.findall(r"(?:exit|status) (\d+)", text) if int(n) not in EXIT.values()]
    found += [line.strip() for line in text.splitlines() if LEGACY_SAMPLES_FILE in line]
    writes_reports = re.compile(r"(->|writes) reports/")
    found += [line.strip() for line in text.splitlines()
              if line.startswith("fpbench ") and writes_reports.search(line) and "--out reports/" not in line]
    return found


def test_the_hand_written_docs_say_what_the_code_does():
    stale = {name: found for name in HAND_WRITTEN if (found := _stale_statements((REPO / name).read_text()))}
    assert not stale, stale


def test_the_stale_statement_check_sees_each_kind():
    text = ("a busy store exits with status 4 or exit 9\nthe damaged `histograms.npz`\n"
            "fpbench lab --scale quick   # -> reports/lab.md\nfpbench bench --out reports/performance.md\n")
    assert _stale_statements(text) == ["status 9", "the damaged `histograms.npz`",
                                       "fpbench lab --scale quick   # -> reports/lab.md"]
