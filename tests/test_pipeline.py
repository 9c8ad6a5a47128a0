"""End to end: training determinism, methods as plugins, the CLI, clear errors, kill and resume."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fpbench.cli import main
from fpbench.core.models import PotentialMLP
from fpbench.core.sde import make_sde
from fpbench.core.targets import make_target
from fpbench.run.store import Store, read_json, write_json
from fpbench.run.suite import SuiteError, expand, load_suite
from fpbench.train.loop import TrainingError, train
from fpbench.train.methods import make_method

REPO = Path(__file__).resolve().parents[1]
TRAIN_CFG = {"iterations": 12, "lr_stages": [[1e-3, 0.5], [1e-4, 0.5]], "dsm_batch": 64, "time_law": "beta12",
             "t_eps": 1e-5, "dsm_weighting": "likelihood", "residual_points": 32, "residual_t0": 1e-5,
             "box": [-3.5, 3.5], "dtype": "float32", "log_every": 1, "checkpoint_every": 4}


def _train(seed, method="fp", checkpoint=None, **params):
    torch.manual_seed(seed)
    model = PotentialMLP(width=16, depth=2)
    res = train(model, make_method(method, **params), make_target("blob"), make_sde("ou"), TRAIN_CFG, seed,
                checkpoint=checkpoint)
    return model, res


def test_training_is_deterministic_for_a_seed():
    a, _ = _train(3, w_r=1.0)
    b, _ = _train(3, w_r=1.0)
    c, _ = _train(4, w_r=1.0)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_training_resumed_from_a_checkpoint_is_bit_identical(tmp_path):
    whole, whole_res = _train(5, w_r=1.0)
    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):  # interrupted at iteration 10: the checkpoint is at 8, after
        _train(5, "tests.plugins.methods:InterruptedFP", ckpt, w_r=1.0, at=11)  # the stage switch at 6
    assert torch.load(ckpt, weights_only=True)["iteration"] == 8
    resumed, resumed_res = _train(5, checkpoint=ckpt, w_r=1.0)
    for pa, pb in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(pa, pb)
    assert resumed_res.history == whole_res.history


def test_nan_loss_stops_with_the_case_and_iteration():
    with pytest.raises(TrainingError, match=r"case blob-case: loss is nan at iteration 3"):
        torch.manual_seed(0)
        train(PotentialMLP(width=8, depth=1), make_method("tests.plugins.methods:ExplodingMethod", after=3),
              make_target("blob"), make_sde("ou"), TRAIN_CFG, 0, case="blob-case")


def test_user_method_is_loaded_from_its_module():
    method = make_method("tests.plugins.methods:HalfDSM", scale=0.25)
    assert method.weights == {"dsm": 0.25}
    _, res = _train(1, method="tests.plugins.methods:HalfDSM")
    assert set(res.history[-1]) == {"iteration", "loss", "dsm"}


def test_methods_registered_as_entry_points_are_found(monkeypatch):
    from importlib.metadata import EntryPoint

    import fpbench.train.methods as methods

    registered = {"half": EntryPoint("half", "tests.plugins.methods:HalfDSM", methods.ENTRY_POINT_GROUP),
                  "broken": EntryPoint("broken", "tests.plugins.methods:NoSuchClass", methods.ENTRY_POINT_GROUP)}
    monkeypatch.setattr(methods, "plugin_methods", lambda: registered)
    assert type(make_method("half", scale=0.25)).__name__ == "HalfDSM"
    assert make_method("half", scale=0.25).weights == {"dsm": 0.25}
    with pytest.raises(ValueError, match="cannot load method 'broken'"):
        make_method("broken")
    with pytest.raises(ValueError, match="known: dsm, fp, score_fp, warm_fp, broken, half"):
        make_method("nothing")


def test_unknown_method_and_term_are_clear_errors():
    with pytest.raises(ValueError, match="unknown method 'sliced'"):
        make_method("sliced")
    with pytest.raises(ValueError, match="cannot load method"):
        make_method("no_such_module:Thing")
    with pytest.raises(ValueError, match="bad parameters for method 'fp'"):
        make_method("fp", weight=1)


# ----- suites ---------------------------------------------------------------------------------

def _write_suite(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


GOOD = """
[suite]
name = "tiny"
targets = ["blob"]
sde = "ou"
method = "fp"
sweep = { w_r = [0.0, 1.0] }
[model]
kind = "potential"
width = 8
depth = 1
beta = 10.0
[scales.paper]
[scales.quick]
[scales.smoke]
seeds = 1
train = { iterations = 20, dsm_batch = 64, residual_points = 32, log_every = 5, checkpoint_every = 5 }
sample = { n = 500, nfe = 10, fine_steps = 5, chunk = 250 }
[scales.smoke.metrics]
n_boot = 2
floor_reps = 2
residual_points = 200
dsm_points = 500
curl_points = 50
disc_points = 20
oracle_n = 300
"""


def test_suite_expands_into_hashed_cases(tmp_path):
    data = load_suite(_write_suite(tmp_path, GOOD))
    cases = expand(data, "smoke", seeds=2)
    assert len(cases) == 4 and len({c.key for c in cases}) == 4
    assert cases[0].config["train"]["lr_stages"] == [[1e-3, 0.25], [1e-4, 0.65], [1e-5, 0.10]]  # paper default
    assert cases[0].config["train"]["iterations"] == 20  # the scale's override


@pytest.mark.parametrize("mutation,message", [
    (lambda s: s.replace('sde = "ou"', 'sde = "ou'), "malformed suite file"),
    (lambda s: s.replace('["blob"]', '["donut"]'), "unknown target 'donut'"),
    (lambda s: s.replace('method = "fp"', 'method = "sliced"'), "unknown method 'sliced'"),
    (lambda s: s.replace("[scales.quick]\n", ""), r"missing scale\(s\) \['quick'\]"),
    (lambda s: s.replace("iterations = 20", "iterationz = 20"), r"unknown key\(s\) \['iterationz'\]"),
    (lambda s: s.replace('method = "fp"', 'method = "fp"\nscore_models = "no-such-suite"'),
     "score_models: unknown suite 'no-such-suite'"),
    (lambda s: s.replace("iterations = 20", "iterations = 0"), r"train.iterations = 0; it must be a whole number >= 1"),
    (lambda s: s.replace("iterations = 20", "iterations = -5"), r"train.iterations = -5"),
    (lambda s: s.replace("dsm_batch = 64", "dsm_batch = 6.4"), r"train.dsm_batch = 6.4; it must be a whole number"),
    (lambda s: s.replace("n = 500", "n = 0"), r"sample.n = 0"),
    (lambda s: s.replace("n_boot = 2", "n_boot = true"), r"metrics.n_boot = True"),
    (lambda s: s.replace("[scales.smoke]\nseeds = 1", "[scales.smoke]\nseeds = 0"), r"seeds = 0"),
    (lambda s: s.replace("iterations = 20,", "iterations = 20, lr_stages = [[1e-3, 0.5]],"), "fractions sum to 1"),
    (lambda s: s.replace('method = "fp"', 'method = "fp"\nreference = "paper"'),
     r"\[suite\]: unknown key\(s\) \['reference'\]"),
    (lambda s: s + "\n[sampel]\nn = 3\n", r"top level: unknown key\(s\) \['sampel'\]"),
    (lambda s: s.replace('method = "fp"', 'method = "fp"\nbaseline = "fp(w_r=5.0)"'),
     r"baseline = 'fp\(w_r=5.0\)' is none of the suite's methods: fp\(w_r=0.0\); fp\(w_r=1.0\)"),
    (lambda s: s.replace('method = "fp"', 'method = "fp"\nbaseline = "fp(w_r"'), r"write it as \"name\(param=value"),
    (lambda s: s.replace('method = "fp"', 'method = "fp"\nscales = "no-such-scales"'),
     "scales = 'no-such-scales': no file"),
    (lambda s: s.replace("[scales.quick]\n", '[scales.quick]\nbase = "huge"\n'),
     r"\[scales.quick\] base = 'huge': no such scale; known: paper, quick, smoke"),
    (lambda s: s.replace("[scales.quick]\n", '[scales.quick]\nbase = "smoke"\n').replace(
        "[scales.smoke]\n", '[scales.smoke]\nbase = "quick"\n'), r"cycle \(quick -> smoke -> quick\)"),
    (lambda s: s.replace("[scales.quick]\n", '[scales.quick]\nbase = "quick"\n'), r"cycle \(quick -> quick\)"),
    (lambda s: s.replace("[scales.quick]\n", '[scales.quick]\nbase = "smoke"\ntrain = { iterationz = 3 }\n'),
     r"\[scales.quick.train\]: unknown key\(s\) \['iterationz'\]"),
])
def test_malformed_suites_fail_with_a_message_naming_the_cause(tmp_path, mutation, message):
    with pytest.raises(SuiteError, match=message):
        load_suite(_write_suite(tmp_path, mutation(GOOD)))


def test_shared_scales_are_declared_once_and_a_suite_overrides_its_seeds(tmp_path):
    (tmp_path / "scales").mkdir()
    shared = GOOD[GOOD.index("[scales.paper]"):].replace("iterations = 20", "iterations = 30")
    (tmp_path / "scales" / "mine.toml").write_text(shared)
    text = GOOD[:GOOD.index("[scales.paper]")].replace('sde = "ou"', 'sde = "ou"\nscales = "mine"')
    data = load_suite(_write_suite(tmp_path, text + "[scales.smoke]\nseeds = 2\n"))
    cases = expand(data, "smoke")
    assert len(cases) == 4 and {c.config["train"]["iterations"] for c in cases} == {30}
    paper_suites = [load_suite(name) for name in ("paper", "curl", "methods", "sdes")]
    assert all(d["scales"]["quick"]["train"] == paper_suites[0]["scales"]["quick"]["train"] for d in paper_suites)
    assert [d["scales"]["quick"]["seeds"] for d in paper_suites] == [3, 3, 2, 1]


def test_a_scale_with_a_base_is_that_scale_with_its_own_settings_over_it(tmp_path):
    derived = GOOD + '[scales.long]\nbase = "smoke"\nseeds = 2\ntrain = { iterations = 40 }\n'
    smoke_sections = GOOD[GOOD.index("train = {"):GOOD.index("[scales.smoke.metrics]")]
    spelled_out = (GOOD + "[scales.long]\nseeds = 2\n" + smoke_sections.replace("iterations = 20", "iterations = 40")
                   + "[scales.long.metrics]\n" + GOOD[GOOD.index("n_boot = 2"):])
    ours = expand(load_suite(_write_suite(tmp_path, derived, "a.toml")), "long")
    theirs = expand(load_suite(_write_suite(tmp_path, spelled_out, "b.toml")), "long")
    assert len(ours) == 4 and [c.key for c in ours] == [c.key for c in theirs]  # 2 seeds: the scale's own
    assert {c.config["train"]["iterations"] for c in ours} == {40}
    assert {c.config["train"]["dsm_batch"] for c in ours} == {64}  # from the base


def test_the_converged_scale_is_quick_with_the_budget_studys_passing_schedule():
    from fpbench.run.budget import SCHEDULES

    data = load_suite("paper")
    quick, converged = expand(data, "quick"), expand(data, "converged")
    assert len(quick) == len(converged)
    for q, c in zip(quick, converged):
        assert {k: v for k, v in c.config.items() if k not in ("train", "scale")} == {
            k: v for k, v in q.config.items() if k not in ("train", "scale")}
        assert {k: c.config["train"][k] for k in SCHEDULES["steps-48k"]} == SCHEDULES["steps-48k"]
        assert {k: v for k, v in c.config["train"].items() if k not in ("iterations", "checkpoint_every")} == {
            k: v for k, v in q.config["train"].items() if k not in ("iterations", "checkpoint_every")}


def test_shards_split_the_cases_disjointly(tmp_path, capsys):
    from fpbench.cli import _shard

    cases = expand(load_suite(_write_suite(tmp_path, GOOD)), "smoke", seeds=3)
    shards = [_shard(cases, f"{i}/3") for i in (1, 2, 3)]
    assert sorted(c.key for s in shards for c in s) == sorted(c.key for c in cases)
    assert main(["run", "paper", "--scale", "smoke", "--shard", "3/2"]) == 2
    assert "expected I/K" in capsys.readouterr().err


def test_only_seed_keeps_that_seeds_cases_with_the_keys_of_the_whole_run(tmp_path, capsys):
    """--only-seed K: the cases of seed K, the same cases (keys) as in the run of all seeds, so a run taken
    seed by seed ends with the store of the whole run."""
    from fpbench.cli import _only_seeds

    cases = expand(load_suite(_write_suite(tmp_path, GOOD)), "smoke", seeds=3)
    one = _only_seeds(cases, [1])
    assert {c.config["seed"] for c in one} == {1} and len(one) == 2
    assert {c.key for c in one} <= {c.key for c in cases} and _only_seeds(cases, None) == cases
    assert sorted(c.key for k in (0, 1, 2) for c in _only_seeds(cases, [k])) == sorted(c.key for c in cases)
    assert main(["run", _write_suite(tmp_path, GOOD), "--scale", "smoke", "--seeds", "2", "--only-seed", "2",
                 "--results", str(tmp_path / "r")]) == 2
    assert "--only-seed 2: the run's seeds are [0, 1]" in capsys.readouterr().err


def test_cli_errors_are_one_line_without_traceback(tmp_path, capsys):
    path = _write_suite(tmp_path, GOOD)
    assert main(["run", path, "--scale", "huge", "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown scale 'huge'" in err and "Traceback" not in err
    assert main(["run", "no-such-suite", "--scale", "smoke"]) == 2
    assert "unknown suite 'no-such-suite'" in capsys.readouterr().err


def test_cli_reports_a_nan_during_training(tmp_path, capsys):
    path = _write_suite(tmp_path, GOOD.replace('method = "fp"', 'method = "tests.plugins.methods:ExplodingMethod"')
                        .replace("sweep = { w_r = [0.0, 1.0] }", "sweep = { after = 2 }"))
    assert main(["run", path, "--scale", "smoke", "--results", str(tmp_path / "r"), "--quiet"]) == 3
    err = capsys.readouterr().err
    assert "loss is nan at iteration 2" in err and "blob/" in err


def test_a_failing_case_fails_alone_with_its_reason(tmp_path, capsys):
    path = _write_suite(tmp_path, GOOD.replace('method = "fp"', 'method = "tests.plugins.methods:FragileMethod"')
                        .replace("sweep = { w_r = [0.0, 1.0] }", "sweep = { fail = [0, 1, 2] }"))
    results = tmp_path / "r"
    assert main(["run", path, "--scale", "smoke", "--results", str(results), "--quiet"]) == 3
    err = capsys.readouterr().err
    assert "2 case(s) failed" in err
    assert "method 'fragile' raised RuntimeError at iteration 0: the user's loss broke" in err
    assert "returned a loss of shape (3,) at iteration 0; a loss must be a scalar tensor" in err
    store = Store(results)
    assert len(store.table()) == 1  # the healthy case finished
    cases = expand(load_suite(path), "smoke")
    failures = {c.config["method"]["params"]["fail"]: store.failure(c.key) for c in cases}
    assert failures[0] is None and failures[1]["error"] == "TrainingError"
    report = tmp_path / "report.md"
    assert main(["report", path, "--scale", "smoke", "--results", str(results), "--out", str(report)]) == 0
    assert "failed: case blob/tests.plugins.methods:FragileMethod(fail=1)/seed0" in report.read_text()
    # where it broke: the traceback is stored, and --debug prints it
    assert "Traceback (most recent call last)" in failures[1]["traceback"] and "the user's loss broke" in \
        failures[1]["traceback"]
    for c in cases:  # a rerun retries the failed ones
        store.clear_failure(c.key)
    assert main(["--debug", "run", path, "--scale", "smoke", "--results", str(results), "--quiet"]) == 3
    err = capsys.readouterr().err
    assert err.count("Traceback (most recent call last)") >= 2 and "tests/plugins/methods.py" in err  # one per case


def test_corrupt_result_file_is_a_clear_error(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"half": ')
    with pytest.raises(ValueError, match="corrupt result file .*delete it to recompute"):
        read_json(path)
    write_json(tmp_path / "ok.json", {"a": 1})
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# ----- the paper suite at smoke scale, and kill / resume ----------------------------------------

def test_paper_suite_runs_and_reports_at_smoke_scale(tmp_path, capsys, monkeypatch):
    results, report = tmp_path / "results", tmp_path / "paper-smoke.md"
    assert main(["run", "paper", "--scale", "smoke", "--results", str(results), "--quiet"]) == 0
    assert main(["report", "paper", "--scale", "smoke", "--results", str(results), "--out", str(report),
                 "--calibration-reps", "50"]) == 0
    text = report.read_text()
    for title in ("Table 1", "Table 2", "Table 3", "Calibration", "Settings", "0.011599",
                  "The paper's claims as tests", "Calibration of the claim tests"):
        assert title in text
    # 200 training steps: the model claims are INCONCLUSIVE with the gate's evidence; curl and oracle ones decided
    assert "| C1 (Table 1)" in text and "models not converged: 12 of 12 models fail" in text
    assert "## Convergence of the trained models" in text and "**0 of 12 models pass the gate** (trained" in text
    assert "| C6 (Fig. 1)" in text and "**PASS**" in text
    # the answer first: a summary before the tables, with the verdicts, convergence and what smoke can show
    assert text.index("## Summary") < text.index("## Table 1")
    summary = text[text.index("## Summary"):text.index("## Table 1")]
    assert "- **INCONCLUSIVE**: C1, C2, C2b, C3, C4, C5, T1: models not converged" in summary
    assert "- **Convergence**: 0 of 12 trained models pass the gate" in summary
    assert "What scale `smoke` can show**: that every stage runs" in summary
    for fig in ("fig1", "fig3", "fig4", "fig5", "calibration"):
        assert (tmp_path / "figures" / f"paper-smoke-{fig}.png").stat().st_size > 1000
    assert len(Store(results).table()) == 15  # 12 potential models + the 3 free score models of suite curl
    assert main(["show", Store(results).table()["key"][0][:6], "--results", str(results)]) == 0
    # a report only reads: with the pipeline's measuring functions made to raise, it renders the same verdicts
    from fpbench.core import metrics, operators
    from fpbench.run import evaluate, pipeline
    from fpbench.train import ensemble, loop

    def measuring(*args, **kwargs):
        raise AssertionError("a report must read the store, not measure")

    for module, name in [(metrics, "grid_noise_floor"), (evaluate, "noise_floor"), (evaluate, "oracle"),
                         (evaluate, "sample_pair"), (pipeline, "sample_pair"), (ensemble, "train_ensemble"),
                         (loop, "train"), (pipeline, "train"), (operators, "curl")]:
        monkeypatch.setattr(module, name, measuring)
    again = tmp_path / "again.md"
    assert main(["report", "paper", "--scale", "smoke", "--results", str(results), "--out", str(again),
                 "--calibration-reps", "50", "--quiet"]) == 0
    summary_of = lambda t: t[t.index("## Summary"):t.index("## Table 1")]  # noqa: E731
    assert summary_of(again.read_text()) == summary_of(text)
    assert (tmp_path / "figures" / "again-fig1.png").stat().st_size > 1000  # Fig. 1's curl field read, not measured
    capsys.readouterr()
    assert main(["show", "--results", str(results)]) == 0  # no key: every run, with its status
    listing = capsys.readouterr().out
    assert listing.count(" done ") == 15 and "15 run(s) under" in listing and "paper    smoke" in listing


def _run_cli(suite, results, env_extra=None, extra=()):
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env_extra or {}))
    # A run started from a background job inherits SIGINT ignored; the child restores the default so that
    # Python turns SIGINT into KeyboardInterrupt, as it does under an interactive shell.
    # one torch thread: beside the other test workers, two would wait on each other (measured: 10x slower)
    return subprocess.Popen([sys.executable, "-m", "fpbench", "run", suite, "--scale", "smoke", "--results",
                             str(results), "--quiet", "--threads", "1", "--executor", "inprocess",
                             "--no-compile", *extra], cwd=REPO, env=env,
                            stdout=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            stderr=subprocess.STDOUT, text=True)


def _wait_for(predicate, proc, timeout=120):
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _metrics_by_key(root: Path) -> dict:
    return {p.parent.name: read_json(p)["metrics"] for p in root.glob("*/metrics.json")}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_killed_run_resumes_with_identical_metrics_and_skips_finished_cases(tmp_path, sig):
    # long enough that the second case is still training when the signal arrives, even on a loaded machine
    suite = _write_suite(tmp_path, GOOD.replace("iterations = 20", "iterations = 1500"))
    reference = tmp_path / "reference"
    assert _run_cli(suite, reference, extra=["--no-ensemble"]).wait(timeout=300) == 0

    killed = tmp_path / "killed"
    proc = _run_cli(suite, killed, extra=["--no-ensemble"])
    # Kill once the first case is done and the second has a training checkpoint (each trains as an ensemble of
    # one under --no-ensemble: its checkpoint is the store's ensembles/<members' hash>.pt).
    done_first = lambda: len(list(killed.glob("*/metrics.json"))) == 1 and list(killed.glob("ensembles/*.pt"))
    assert _wait_for(done_first, proc), proc.communicate()[0]
    first = next(killed.glob("*/metrics.json"))
    stamp = first.stat().st_mtime_ns
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert len(list(killed.glob("*/metrics.json"))) == 1

    rerun = _run_cli(suite, killed, extra=["--no-ensemble"])
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out
    assert "skip" in out and first.stat().st_mtime_ns == stamp  # the finished case was not recomputed
    assert _metrics_by_key(killed) == _metrics_by_key(reference)  # bit-identical numbers
    assert not list(killed.glob("*/*.tmp")) and not list(killed.glob("*/.*.tmp"))


def test_killed_ensemble_training_resumes_with_identical_metrics(tmp_path):
    suite = _write_suite(tmp_path, GOOD.replace("iterations = 20", "iterations = 400"))
    reference = tmp_path / "reference"
    assert _run_cli(suite, reference).wait(timeout=300) == 0
    killed = tmp_path / "killed"
    proc = _run_cli(suite, killed)
    assert _wait_for(lambda: list(killed.glob("ensembles/*.pt")), proc), proc.communicate()[0]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not list(killed.glob("*/metrics.json"))
    rerun = _run_cli(suite, killed)
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out
    assert _metrics_by_key(killed) == _metrics_by_key(reference)
    assert not list(killed.glob("ensembles/*.pt"))  # removed once every member is stored


# ----- ensembles -----------------------------------------------------------------------------

def test_ensemble_training_reproduces_one_by_one_training():
    from fpbench.train.ensemble import train_ensemble

    # float64: the two computations differ only by rounding, which Adam's normalised steps would
    # amplify to ~1e-6 in float32 for weights whose gradient is ~0
    cfg = dict(TRAIN_CFG, dtype="float64")
    specs = [("blob", 0.0, 1), ("checker", 1.0, 2), ("circles2", 10.0, 3)]
    singles, members = [], []
    for name, w, seed in specs:
        torch.manual_seed(seed)
        model = PotentialMLP(width=16, depth=2).double()
        members.append(PotentialMLP(width=16, depth=2).double())
        members[-1].load_state_dict(model.state_dict())
        train(model, make_method("fp", w_r=w), make_target(name), make_sde("ou"), cfg, seed)
        singles.append(model)
    train_ensemble(members, [make_method("fp", w_r=w) for _, w, _ in specs], [make_target(n) for n, _, _ in specs],
                   make_sde("ou"), cfg, [s for *_, s in specs])
    for single, member in zip(singles, members):
        for p, q in zip(single.parameters(), member.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-11)


def test_cli_ensemble_run_matches_the_one_by_one_run(tmp_path):
    path = _write_suite(tmp_path, GOOD)
    one, together = tmp_path / "one", tmp_path / "together"
    assert main(["run", path, "--scale", "smoke", "--results", str(one), "--quiet", "--no-ensemble"]) == 0
    assert main(["run", path, "--scale", "smoke", "--results", str(together), "--quiet"]) == 0
    a, b = _metrics_by_key(one), _metrics_by_key(together)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key]["log_fp_residual"] == pytest.approx(b[key]["log_fp_residual"], rel=1e-4)


def test_bad_counts_on_the_command_line_are_one_line_errors(tmp_path, capsys):
    suite = _write_suite(tmp_path, GOOD)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", suite, "--scale", "smoke", "--seeds", "0", "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "'0' is not a whole number >= 1" in err
    assert len(err.strip().splitlines()) == 1 and "see `fpbench run --help`" in err  # not under the whole usage
    assert not (tmp_path / "r").exists()  # nothing ran


def test_version_and_the_report_hint_keeps_the_users_options(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("fpbench 0.")
    suite = _write_suite(tmp_path, GOOD.replace("iterations = 20", "iterations = 4"))
    assert main(["run", suite, "--scale", "smoke", "--results", str(tmp_path / "my results"), "--quiet"]) == 0
    hint = f"next: fpbench report {suite} --scale smoke --results '{tmp_path / 'my results'}'"
    assert hint in capsys.readouterr().out


def test_two_runs_on_one_store_never_run_a_case_twice(tmp_path):
    """Two real `fpbench run` processes on one store: each case is run by exactly one of them (its lock),
    the other reports it busy, and a rerun afterwards finds everything done and complete."""
    suite = _write_suite(tmp_path, GOOD.replace("iterations = 20", "iterations = 600").replace(
        "w_r = [0.0, 1.0]", "w_r = [0.0, 0.1, 1.0]"))
    root = tmp_path / "shared"
    first = _run_cli(suite, root, extra=["--no-ensemble"])
    # the second starts once the first is training a case (it holds that case's lock by then)
    assert _wait_for(lambda: list(root.glob("ensembles/*.pt")), first), first.communicate()[0]
    second = _run_cli(suite, root, extra=["--no-ensemble"])
    outputs = [first.communicate(timeout=300)[0], second.communicate(timeout=300)[0]]
    done = [line.split()[1] for out in outputs for line in out.splitlines() if line.startswith("done ")]
    assert len(done) == len(set(done)) == 3, outputs  # every case run once, by one process
    assert "busy" in outputs[1], outputs[1]
    assert second.returncode in (0, 6), outputs[1]  # 6: it left cases to the other process
    rerun = _run_cli(suite, root, extra=["--no-ensemble"])
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0 and out.count("skip ") == 3, out
    assert len(_metrics_by_key(root)) == 3


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    """(suite file, results root) of one run of the GOOD suite at smoke, shared by tests that copy it."""
    folder = tmp_path_factory.mktemp("good")
    suite = _write_suite(folder, GOOD)
    assert main(["run", suite, "--scale", "smoke", "--results", str(folder / "results"), "--quiet"]) == 0
    return suite, folder / "results"


@pytest.mark.parametrize("damaged", ["metrics.json", "model.pt", "train.json", "samples.npz"])
def test_a_damaged_stored_file_is_set_aside_and_recomputed_to_the_same_numbers(tmp_path, damaged, good_run):
    """Each kind of stored file, truncated: the rerun moves it to <name>.corrupt with a warning naming it,
    recomputes what it held, and ends with the numbers of an undamaged run. (Checkpoints: test_time_budget.)"""
    import shutil

    suite, reference = good_run
    damaged_store = Path(shutil.copytree(reference, tmp_path / "damaged"))
    files = sorted(damaged_store.glob(f"*/{damaged}"))
    assert files
    target = files[0]
    target.write_bytes(target.read_bytes()[: max(1, target.stat().st_size // 3)])
    with pytest.warns(UserWarning, match=f"{target.name} is unreadable .*moved to {target.name}.corrupt"):
        assert main(["run", suite, "--scale", "smoke", "--results", str(damaged_store), "--quiet"]) == 0
    assert target.with_name(target.name + ".corrupt").exists() and target.exists()
    assert _metrics_by_key(damaged_store) == _metrics_by_key(reference)


def test_a_store_from_before_the_samples_file_was_renamed_is_read_as_it_is(tmp_path, good_run):
    """Stores written before 2026-12-02 hold the samplers' output as histograms.npz: a rerun neither
    resamples nor renames it, and the store reads it; a damaged one is set aside and written anew."""
    import shutil

    from fpbench.run.store import Store

    suite, reference = good_run
    old = Path(shutil.copytree(reference, tmp_path / "old"))
    for path in old.glob("*/samples.npz"):
        path.rename(path.with_name("histograms.npz"))
    legacy = sorted(old.glob("*/histograms.npz"))
    stamps = {p: p.stat().st_mtime_ns for p in legacy}
    assert main(["run", suite, "--scale", "smoke", "--results", str(old), "--quiet"]) == 0
    assert not list(old.glob("*/samples.npz")) and {p: p.stat().st_mtime_ns for p in legacy} == stamps
    store = Store(old)
    key = legacy[0].parent.name
    assert store.samples(key)["p0"].sum() > 0
    legacy[0].write_bytes(legacy[0].read_bytes()[:50])
    with pytest.warns(UserWarning, match="histograms.npz is unreadable"):
        assert main(["run", suite, "--scale", "smoke", "--results", str(old), "--quiet"]) == 0
    assert (legacy[0].parent / "samples.npz").exists()
    assert _metrics_by_key(old) == _metrics_by_key(reference)


def test_a_damaged_noise_floor_is_set_aside_and_measured_again(tmp_path, good_run):
    """Floors are shared by cases: the next case that needs a damaged one measures it again (same seeds)."""
    import shutil

    suite = good_run[0]
    results = Path(shutil.copytree(good_run[1], tmp_path / "results"))
    original = {p: p.read_text() for p in results.glob("floors/*.json")}
    for path, text in original.items():
        path.write_text(text[:20])
    with pytest.warns(UserWarning, match=r"floors/.*\.json is unreadable .*moved to .*\.json\.corrupt"):
        assert main(["run", suite, "--scale", "smoke", "--seeds", "2", "--results", str(results), "--quiet"]) == 0
    assert {p: p.read_text() for p in original if p.exists()} == {p: t for p, t in original.items() if p.exists()}
    assert any(p.exists() for p in original)


WARM = GOOD.replace('method = "fp"\nsweep = { w_r = [0.0, 1.0] }', "").replace(
    '[model]', '''[[methods]]
name = "fp"
model = "potential"
params = { w_r = 0.0 }

[[methods]]
name = "warm_fp"
model = "potential"
sweep = { w_r = [0.0, 1.0] }

[model]''')


@pytest.mark.parametrize("extra", [[], ["--no-ensemble"],
                                   pytest.param(["--executor", "process", "--workers", "2"], marks=pytest.mark.slow)])
def test_warm_start_trains_from_the_baselines_weights_on_every_path(tmp_path, extra):
    """warm_fp starts from the trained w_R = 0 baseline of the same seed: its first loss is the trained
    model's, not an untrained one's; in a process pool the task that needs the baseline waits for it."""
    from fpbench.run.pipeline import _stored_weights, warm_start_case
    from fpbench.run.suite import build
    from fpbench.train.methods import FokkerPlanck, TrainContext

    suite = _write_suite(tmp_path, WARM)
    results = tmp_path / "results"
    assert main(["run", suite, "--scale", "smoke", "--results", str(results), "--quiet", *extra]) == 0
    cases = expand(load_suite(suite), "smoke")
    store = Store(results)
    base = next(c for c in cases if c.config["method"]["name"] == "fp")
    history = {c.config["method"]["name"] + str(c.config["method"]["params"]["w_r"]):
               read_json(store.case_dir(c.key) / "train.json")["history"] for c in cases}
    # its first loss is the trained baseline's loss on the first batch of the seed (recomputed here)
    target, sde, model, _ = build(base)
    model.load_state_dict(_stored_weights(store.case_dir(base.key)))
    cfg = base.config["train"]
    gen = torch.Generator().manual_seed(base.config["seed"])
    x0 = target.sample(cfg["dsm_batch"], gen, dtype=torch.float32)
    expected, _ = FokkerPlanck(w_r=0.0).loss(model, TrainContext(sde, target, x0, gen, cfg, 0, cfg["iterations"]))
    assert history["warm_fp0.0"][0]["loss"] == pytest.approx(float(expected.detach()), rel=1e-5)
    assert history["warm_fp0.0"][0]["loss"] != pytest.approx(history["fp0.0"][0]["loss"], rel=1e-3)
    for case in cases:
        if case.config["method"]["name"] == "warm_fp":
            assert warm_start_case(case).key == base.key
    assert _stored_weights(store.case_dir(base.key)) is not None


def test_a_samples_only_target_runs_end_to_end_and_says_what_is_not_available(tmp_path):
    """moons has samples only: DSM, R~, both samplers and every W2^2 run; the oracle, the convergence
    evidence and the exact score's L_DSM are reported as not available, never as numbers."""
    suite = _write_suite(tmp_path, GOOD.replace('targets = ["blob"]', 'targets = ["moons", "8gaussians"]'))
    results, report = tmp_path / "results", tmp_path / "toys.md"
    assert main(["run", suite, "--scale", "smoke", "--results", str(results), "--quiet"]) == 0
    df = Store(results).table()
    moons = df[df["target"] == "moons"]
    # (20 steps of a width-8 model send most samples out of the grid; that the metrics ran is what counts)
    assert len(moons) == 2 and moons["floor.mean"].gt(0).all() and moons["inside_grid_p0"].gt(0.99).all()
    assert {"w2_ode_sde.value", "w2_sde_p0.value"} <= set(moons) and moons["log_fp_residual"].notna().all()
    assert (moons["exact_density"] == False).all() and moons["dsm_excess"].isna().all()  # noqa: E712
    assert df.loc[df["target"] == "8gaussians", "oracle.w2_ode_sde"].notna().all()
    assert main(["report", suite, "--scale", "smoke", "--results", str(results), "--out", str(report)]) == 0
    assert "Not available for moons: samples only, no exact density" in report.read_text()
    from fpbench.analysis.claims import convergence_gate

    assert "not available for moons (samples only: no exact density" in convergence_gate(df)


COMPUTE_ONCE = """
import json, sys, time
from pathlib import Path
from fpbench.run.store import Store

root, tag = Path(sys.argv[1]), sys.argv[2]
def compute():
    with open(root / "computed-by", "a") as log:
        log.write(tag + "\\n")
    time.sleep(1.5)  # long enough for the other process to arrive while this one computes
    return {"by": tag}
print(json.dumps(Store(root).computed_once(root / "floors" / "x.json", compute)))
"""


def test_processes_sharing_a_store_compute_a_cached_value_once(tmp_path):
    """Two processes asking for one uncomputed floor or oracle at once: one computes it, the other waits
    for it and reads the same value (the circles2 oracle takes tens of CPU-minutes)."""
    script = tmp_path / "once.py"
    script.write_text(COMPUTE_ONCE)
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path), tag], stdout=subprocess.PIPE, text=True)
             for tag in ("a", "b")]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert len((tmp_path / "computed-by").read_text().split()) == 1  # computed by one process only
    assert len(set(outputs)) == 1 and '"by"' in outputs[0]  # both got its value


# ----- same key, same numbers ------------------------------------------------------------------

SEVEN = GOOD.replace('targets = ["blob"]', 'targets = ["blob", "circles2", "checker"]').replace(
    "w_r = [0.0, 1.0]", "w_r = [0.0, 0.1, 1.0]")  # 9 cases of one shape


def _weights(root: Path, key: str) -> bytes:
    state = torch.load(root / key / "model.pt", weights_only=True)
    return b"".join(t.numpy().tobytes() for t in state.values())


def test_a_case_trains_to_the_same_weights_alone_in_any_ensemble_and_through_every_command(tmp_path):
    """blob, w_R = 0, seed 0 trained in ensembles of 1, 2 and 7, by `run`, `run --no-ensemble`, `compare` and
    `evaluate`: its weights are the same bytes each time (members draw from their own streams and are computed
    one at a time; every command takes one compile default), and so are its metrics."""
    from fpbench.run.execute import InProcess, evaluate_model, plan, run_tasks
    from fpbench.run.suite import expand, load_suite

    suite = _write_suite(tmp_path, SEVEN)
    cases = expand(load_suite(suite), "smoke", 1)
    case = next(c for c in cases if c.label.startswith("blob/") and c.config["method"]["params"]["w_r"] == 0.0)
    others = [c for c in cases if c.key != case.key]
    weights, metrics = {}, {}
    for size in (1, 2, 7):
        root = tmp_path / f"ensemble-of-{size}"
        run_tasks(plan([case, *others[: size - 1]], root), InProcess(), log=lambda *_: None)
        weights[f"ensemble of {size}"] = _weights(root, case.key)
    for name, extra in (("run", []), ("run --no-ensemble", ["--no-ensemble"])):
        root = tmp_path / name.replace(" ", "")
        assert main(["run", suite, "--scale", "smoke", "--results", str(root), "--quiet", *extra]) == 0
        weights[name], metrics[name] = _weights(root, case.key), _metrics_by_key(root)[case.key]
    root = tmp_path / "compare"
    assert main(["compare", "examples/ramped_fp.py:RampedFP", "--suite", suite, "--scale", "smoke", "--results",
                 str(root), "--out", str(tmp_path / "compare.md"), "--quiet"]) == 0
    weights["compare"], metrics["compare"] = _weights(root, case.key), _metrics_by_key(root)[case.key]
    root = tmp_path / "evaluate"
    evaluate_model("examples/external_model.py:make_model", "blob", "smoke", suite=suite, results=str(root),
                   log=lambda *_: None)
    weights["evaluate"], metrics["evaluate"] = _weights(root, case.key), _metrics_by_key(root)[case.key]
    assert len(set(weights.values())) == 1, {k: hash(v) for k, v in weights.items()}
    assert all(m == metrics["run"] for m in metrics.values())


def test_a_repaired_model_is_the_original_and_matches_its_stored_samples_and_metrics(tmp_path, good_run):
    """A damaged model.pt is retrained by the path its record names: the same bytes as before, so the
    case's samples and metrics, kept, still belong to it."""
    import shutil

    suite, reference = good_run
    store = Path(shutil.copytree(reference, tmp_path / "damaged"))
    key = sorted(p.parent.name for p in store.glob("*/model.pt"))[0]
    original, samples = _weights(store, key), (store / key / "samples.npz").read_bytes()
    (store / key / "model.pt").write_bytes(b"not a model")
    with pytest.warns(UserWarning, match="model.pt is unreadable"):
        assert main(["run", suite, "--scale", "smoke", "--results", str(store), "--quiet"]) == 0
    assert _weights(store, key) == original
    assert (store / key / "samples.npz").read_bytes() == samples
    assert _metrics_by_key(store) == _metrics_by_key(reference)


def test_a_repair_that_cannot_take_the_recorded_path_recomputes_what_the_weights_made(tmp_path, good_run):
    """A record that says the case trained by another path (here: compiled terms, which round differently):
    the retrained history differs from the recorded one, so its samples and metrics are recomputed from the
    new weights instead of kept beside a model they do not belong to."""
    import json
    import shutil

    suite, reference = good_run
    store = Path(shutil.copytree(reference, tmp_path / "other-path"))
    key = sorted(p.parent.name for p in store.glob("*/model.pt"))[0]
    record = json.loads((store / key / "metrics.json").read_text())
    record["train"]["history"][-1]["loss"] += 1.0  # what another path's rounding would leave in the record
    (store / key / "metrics.json").write_text(json.dumps(record))
    (store / key / "model.pt").unlink()
    assert main(["run", suite, "--scale", "smoke", "--results", str(store), "--quiet"]) == 0
    fresh = json.loads((store / key / "metrics.json").read_text())  # rewritten: the tampered history is gone
    assert fresh["train"]["history"] == json.loads((reference / key / "metrics.json").read_text())["train"]["history"]
    assert _metrics_by_key(store)[key] == _metrics_by_key(reference)[key]  # recomputed from the same weights


def test_a_new_metric_setting_reevaluates_stored_models_without_retraining_them(tmp_path, good_run, capsys):
    """Changing a metrics setting changes every case key (the key hashes all settings), but not the training
    key: the rerun measures the stored models again and trains nothing; the trained weights are read, not
    rewritten (the old case's model.pt keeps its bytes and its time)."""
    import shutil

    suite, reference = good_run
    store = Path(shutil.copytree(reference, tmp_path / "store"))
    old = {p.parent.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in store.glob("*/model.pt")}
    changed = _write_suite(tmp_path, Path(suite).read_text().replace("n_boot = 2", "n_boot = 3"), "changed.toml")
    capsys.readouterr()
    assert main(["run", changed, "--scale", "smoke", "--results", str(store)]) == 0
    out = capsys.readouterr().out
    assert "train " not in out and out.count("reuse  ") == 2, out
    new = {p.parent.name: p.read_bytes() for p in store.glob("*/model.pt") if p.parent.name not in old}
    assert len(new) == 2 and sorted(new.values()) == sorted(b for b, _ in old.values())
    assert {p.parent.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in store.glob("*/model.pt")
            if p.parent.name in old} == old
    fresh = [read_json(store / key / "metrics.json") for key in new]
    assert all(r["config"]["metrics"]["n_boot"] == 3 for r in fresh)


def test_a_misspelt_model_key_is_a_suite_error_before_anything_runs(tmp_path, capsys):
    suite = _write_suite(tmp_path, GOOD.replace("width = 8", "widht = 8"))
    assert main(["run", suite, "--scale", "smoke", "--results", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "[model]" in err and "widht" in err
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").glob("*/config.json"))


def test_an_unknown_target_for_evaluate_is_named_with_the_known_ones(tmp_path, capsys):
    assert main(["evaluate", "examples/external_model.py:make_model", "--target", "nosuch", "--scale", "smoke",
                 "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown target 'nosuch'" in err and "blob" in err


# ----- every printed setting is the one used -----------------------------------------------------------

def test_sde_params_are_accepted_and_reach_the_sde(tmp_path):
    from fpbench.run.suite import SuiteError, build, expand, load_suite

    suite = _write_suite(tmp_path, GOOD + "[sde_params]\nT = 5.0\n")
    case = expand(load_suite(suite), "smoke", 1)[0]
    assert case.config["sde"]["params"] == {"T": 5.0} and build(case)[1].T == 5.0
    with pytest.raises(SuiteError, match=r"\[sde_params\]: bad parameters for SDE 'ou'"):
        load_suite(_write_suite(tmp_path, GOOD + "[sde_params]\nTT = 5.0\n", "bad.toml"))


def test_noise_last_step_reaches_the_sde_sampler_and_only_it(tmp_path, monkeypatch):
    from fpbench.core.samplers import refined_grid, sample_pair
    from fpbench.core.sde import make_sde
    from fpbench.core.targets import make_target
    from fpbench.run import pipeline

    target, sde = make_target("blob"), make_sde("ou")
    score = lambda x, t: target.score(x, t, sde)  # noqa: E731
    plain = sample_pair(score, sde, 200, 2, refined_grid(sde.T, 20), seed=0)
    noisy = sample_pair(score, sde, 200, 2, refined_grid(sde.T, 20), seed=0, noise_last_step=True)
    assert torch.equal(plain[0], noisy[0]) and not torch.equal(plain[1], noisy[1])
    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs["noise_last_step"])
        return sample_pair(*args, **kwargs)

    monkeypatch.setattr(pipeline, "sample_pair", spy)
    suite = _write_suite(tmp_path, GOOD.replace("chunk = 250 }", "chunk = 250, noise_last_step = true }"))
    assert main(["run", suite, "--scale", "smoke", "--results", str(tmp_path / "r"), "--quiet"]) == 0
    assert seen == [True, True]


def test_the_score_residual_uses_the_point_count_the_settings_table_prints(tmp_path, monkeypatch):
    from fpbench.run import evaluate

    counts = []
    real = evaluate.score_fp_residual_mc

    def spy(score, sde, dim, n, *args):
        counts.append(n)
        return real(score, sde, dim, n, *args)

    monkeypatch.setattr(evaluate, "score_fp_residual_mc", spy)
    suite = _write_suite(tmp_path, GOOD.replace("residual_points = 200", "residual_points = 200\n"
                                                "score_residual_points = 7"))
    assert main(["run", suite, "--scale", "smoke", "--results", str(tmp_path / "r"), "--quiet"]) == 0
    assert main(["report", suite, "--scale", "smoke", "--results", str(tmp_path / "r"), "--out",
                 str(tmp_path / "r.md")]) == 0
    assert counts == [7, 7] and "| score_residual_points | 7" in (tmp_path / "r.md").read_text()
    unset = _write_suite(tmp_path, GOOD, "unset.toml")
    counts.clear()
    assert main(["run", unset, "--scale", "smoke", "--results", str(tmp_path / "u"), "--quiet"]) == 0
    assert main(["report", unset, "--scale", "smoke", "--results", str(tmp_path / "u"), "--out",
                 str(tmp_path / "u.md")]) == 0
    assert counts == [20, 20] and "| score_residual_points | 20" in (tmp_path / "u.md").read_text()


@pytest.mark.parametrize("command", [["report", "paper", "--scale", "smoke"], ["export", "paper", "--scale", "smoke"],
                                     ["compare", "examples/ramped_fp.py:RampedFP", "--scale", "smoke"],
                                     ["evaluate", "examples/external_model.py:make_model", "--target", "blob",
                                      "--scale", "smoke"]])
def test_an_unwritable_output_is_a_one_line_error_before_any_work(tmp_path, capsys, monkeypatch, command):
    from fpbench.train import ensemble

    def no_work(*args, **kwargs):
        raise AssertionError("nothing may run before the output path is checked")

    monkeypatch.setattr(ensemble, "train_ensemble", no_work)
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # a file where the output's folder should be
    assert main([*command, "--results", str(tmp_path / "r"), "--out", str(blocked / "out.md")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot write" in err and "choose another --out" in err


def test_show_on_a_store_that_does_not_exist_is_an_error(tmp_path, capsys):
    assert main(["show", "--results", str(tmp_path / "nowhere")]) == 2
    assert "no results store at" in capsys.readouterr().err


def test_evaluate_checks_the_users_model_before_training_the_baseline(tmp_path, capsys, monkeypatch):
    from fpbench.train import ensemble

    def no_training(*args, **kwargs):
        raise AssertionError("the baseline must not train for a model that cannot load")

    monkeypatch.setattr(ensemble, "train_ensemble", no_training)
    assert main(["evaluate", "nosuchmodule:make", "--target", "blob", "--scale", "smoke", "--results",
                 str(tmp_path / "r"), "--out", str(tmp_path / "e.md")]) == 2
    assert "cannot load model 'nosuchmodule:make'" in capsys.readouterr().err
    nan_model = tmp_path / "nan_model.py"
    nan_model.write_text("class M:\n    def score(self, x, t):\n        return x * float('nan')\n\n\n"
                         "def make(seed=0):\n    return M()\n")
    assert main(["evaluate", f"{nan_model}:make", "--target", "blob", "--scale", "smoke", "--results",
                 str(tmp_path / "r"), "--out", str(tmp_path / "e.md")]) == 2
    assert "returned non-finite values (NaN or inf)" in capsys.readouterr().err


def test_a_bug_keeps_its_traceback_and_a_users_mistake_is_one_line(tmp_path, capsys, monkeypatch):
    """Only FpbenchError (a user's mistake or an expected condition) is shown as one line; a plain ValueError
    from inside fpbench is a bug and surfaces with its traceback."""
    from fpbench.core.errors import FpbenchError
    from fpbench.run import suite as suite_module

    assert main(["run", "nosuchsuite", "--scale", "smoke", "--results", str(tmp_path / "r")]) == 2
    assert "unknown suite 'nosuchsuite'" in capsys.readouterr().err

    def buggy(*args, **kwargs):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(suite_module, "expand", buggy)
    with pytest.raises(ValueError, match="an internal invariant broke") as err:
        main(["run", "paper", "--scale", "smoke", "--results", str(tmp_path / "r")])
    assert not isinstance(err.value, FpbenchError)


def test_a_broken_ensemble_falls_back_with_its_reason_and_stops_with_its_traceback_under_debug(
        tmp_path, capsys, monkeypatch):
    from fpbench.run import pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("the ensemble's own bug")

    monkeypatch.setattr(pipeline, "train_group", broken)
    suite = _write_suite(tmp_path, GOOD)
    assert main(["run", suite, "--scale", "smoke", "--results", str(tmp_path / "r")]) == 0  # one by one instead
    out = capsys.readouterr().out
    assert "ensemble training failed (RuntimeError: the ensemble's own bug); training its cases one by one" in out
    with pytest.raises(RuntimeError, match="the ensemble's own bug"):
        main(["--debug", "run", suite, "--scale", "smoke", "--results", str(tmp_path / "r2")])


def test_load_model_gives_the_weights_the_case_was_measured_with(good_run, tmp_path):
    """A stored case's model, rebuilt by ``fpbench.load_model`` from its key prefix, gives the convergence
    evidence its record holds (computed again here from the same streams); a case without weights is a
    clear error."""
    import fpbench
    from fpbench.core.convergence import evidence
    from fpbench.core.errors import FpbenchError

    suite, root = good_run
    df = fpbench.load_results(suite, "smoke", str(root))
    key = df["key"].iloc[0]
    model, target, sde, case = fpbench.load_model(key[:8], str(root))
    assert case.key == key and not model.training
    stored = read_json(root / key / "metrics.json")["metrics"]["convergence"]
    again = evidence(model, target, sde, read_json(root / key / "train.json")["history"], case.config["seed"])
    assert again["rel_error"] == stored["rel_error"] and again["ratio_min_late"] == stored["ratio_min_late"]
    with pytest.raises(FpbenchError, match="no run"):
        fpbench.load_model("ffffffff", str(root))
    import shutil

    shutil.copytree(root / key, tmp_path / key, ignore=shutil.ignore_patterns("model.pt"))
    with pytest.raises(FpbenchError, match=f"case {key} has no trained weights"):
        fpbench.load_model(key, str(tmp_path))
