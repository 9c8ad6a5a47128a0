"""The oracle self-check command."""

from fpbench.cli import main
from fpbench.core.check import check_pair


def test_check_pair_reports_round_off_residuals():
    row = check_pair("checker", "ou", n=50)
    assert row.max_abs_log_fp < 1e-8 and row.max_abs_score_fp < 1e-6


def test_fpbench_check_prints_the_table_and_succeeds(capsys):
    assert main(["check", "--points", "40"]) == 0
    out = capsys.readouterr().out
    for name in ("blob", "circles2", "checker", "gmm", "ou", "vp", "ve", "max |R~|"):
        assert name in out


def test_an_error_is_one_line_and_debug_shows_its_traceback(capsys):
    import pytest

    assert main(["run", "no-such-suite", "--scale", "smoke"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown suite 'no-such-suite'" in err and "--debug" in err
    with pytest.raises(ValueError, match="unknown suite 'no-such-suite'"):
        main(["--debug", "run", "no-such-suite", "--scale", "smoke"])


def test_compare_runs_with_the_execution_defaults_that_run_declares():
    from fpbench.cli import build_parser

    parser = build_parser()
    run = vars(parser.parse_args(["run", "paper", "--scale", "smoke"]))
    compare = vars(parser.parse_args(["compare", "x.py:M", "--scale", "smoke"]))
    shared = set(run) - {"func", "command", "suite", "method"}
    assert shared <= set(compare) and {k: compare[k] for k in shared} == {k: run[k] for k in shared}


def test_quiet_turns_the_progress_bars_off(monkeypatch, tmp_path):
    from fpbench.cli import build_parser
    from fpbench.run import execute

    seen = {}
    monkeypatch.setattr(execute, "run_tasks", lambda tasks, executor: seen.setdefault("tasks", tasks) and [])
    for flags, expected in (([], True), (["--quiet"], False)):
        seen.clear()
        args = build_parser().parse_args(["run", "smoke", "--scale", "smoke", "--results", str(tmp_path), *flags])
        args.func(args)
        assert {t.progress for t in seen["tasks"]} == {expected}


def test_an_absent_device_is_one_clear_error_for_run_and_for_the_claim_suite(capsys):
    import subprocess
    import sys

    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["run", "smoke", "--scale", "smoke", "--device", "cuda"]) == 2
    assert "no CUDA device is available here" in capsys.readouterr().err
    proc = subprocess.run([sys.executable, "-m", "pytest", "suites/paper", "--fpbench-device", "cuda", "-q",
                           "-p", "no:cacheprovider"], capture_output=True, text=True, timeout=300,
                          cwd=__import__("pathlib").Path(__file__).resolve().parents[1])
    assert proc.returncode == 4, proc.stdout + proc.stderr  # pytest's usage error, before any case runs
    assert "--fpbench-device: device cuda: no CUDA device is available here" in proc.stderr
    assert "KeyError" not in proc.stdout + proc.stderr


def test_an_unwritable_results_directory_is_one_clear_line_before_anything_runs(tmp_path, capsys):
    blocked = tmp_path / "a file"
    blocked.write_text("not a directory")
    for results in (blocked, blocked / "below"):
        assert main(["run", "smoke", "--scale", "smoke", "--results", str(results)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"results directory {results} cannot be written" in err
    assert blocked.read_text() == "not a directory"


def test_help_and_version_do_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, fpbench.cli\n"
            "for argv in (['--help'], ['--version'], ['run', '--help']):\n"
            "    try:\n        fpbench.cli.main(argv)\n    except SystemExit:\n        pass\n"
            "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().splitlines()[-1] == "False", proc.stdout + proc.stderr
