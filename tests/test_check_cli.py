"""The oracle self-check command."""

from fpbench.check import check_pair
from fpbench.cli import main


def test_check_pair_reports_round_off_residuals():
    row = check_pair("checker", "ou", n=50)
    assert row.max_abs_log_fp < 1e-8 and row.max_abs_score_fp < 1e-6


def test_fpbench_check_prints_the_table_and_succeeds(capsys):
    assert main(["check", "--points", "40"]) == 0
    out = capsys.readouterr().out
    for name in ("blob", "circles2", "checker", "gmm", "ou", "vp", "ve", "max |R~|"):
        assert name in out
