"""Suites beyond one sweep: [[methods]], SDE lists, target sweeps, --method, point distances, the
comparison report with a method written outside the package, and the benchmark table."""

from pathlib import Path

import pytest

from fpbench.cli import main
from fpbench.run.bench import format_bench, run_bench
from fpbench.run.suite import SuiteError, expand, load_suite, with_methods

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = str(REPO / "examples" / "ramped_fp.py") + ":RampedFP"

TINY = """
[suite]
name = "tiny_methods"
targets = ["blob", "checker"]
sde = "ou"
baseline = "fp(w_r=0.0)"
[[methods]]
name = "fp"
label = "baseline"
params = { w_r = 0.0 }
[[methods]]
name = "score_fp"
label = "score-FP"
model = "score"
sweep = { w_s = [0.0, 1.0] }
[model]
kind = "potential"
width = 80
depth = 3
beta = 100.0
[scales.paper]
[scales.quick]
[scales.smoke]
seeds = 2
train = { iterations = 200, dsm_batch = 256, residual_points = 128, log_every = 20, checkpoint_every = 50 }
sample = { n = 500, nfe = 20, fine_steps = 10, chunk = 250 }
[scales.smoke.metrics]
n_boot = 2
floor_reps = 2
residual_points = 200
dsm_points = 500
curl_points = 50
disc_points = 20
oracle_n = 300
"""


def _suite(tmp_path, text=TINY):
    path = tmp_path / "tiny_methods.toml"
    path.write_text(text)
    return str(path)


def test_methods_tables_expand_with_their_model_kinds_and_sweeps(tmp_path):
    cases = expand(load_suite(_suite(tmp_path)), "smoke")
    assert len(cases) == 2 * 3 * 2
    kinds = {(c.config["method"]["name"], c.config["model"]["kind"]) for c in cases}
    assert kinds == {("fp", "potential"), ("score_fp", "score")}
    assert "checker/score:score_fp(w_s=1.0)/seed1" in {c.label for c in cases}


def test_paper_suite_keys_are_unchanged_by_the_new_suite_format():
    # the results of earlier sessions stay valid: the same resolved config hashes to the same key
    assert expand(load_suite("paper"), "quick")[0].key == "29527a63de1ac4b4"
    assert expand(load_suite("curl"), "quick")[0].key == "99d93b7f270e0891"


def test_sde_lists_and_target_sweeps_expand():
    sdes = expand(load_suite("sdes"), "smoke")
    assert {c.config["sde"]["name"] for c in sdes} == {"ou", "vp", "ve"} and len(sdes) == 36
    dims = expand(load_suite("dims"), "smoke")
    assert sorted({c.config["target"]["params"]["dim"] for c in dims}) == [2, 4, 8, 16]
    assert dims[0].config["metrics"]["distance"] == "points"


def test_with_methods_adds_a_user_method_and_bad_ones_are_clear_errors(tmp_path):
    data = with_methods(load_suite(_suite(tmp_path)), [EXAMPLE])
    added = [c for c in expand(data, "smoke") if c.config["method"]["name"] == EXAMPLE]
    assert len(added) == 4 and all(c.config["model"]["kind"] == "potential" for c in added)
    with pytest.raises(SuiteError, match="--method nowhere.py:X: cannot load method"):
        with_methods(load_suite(_suite(tmp_path)), ["nowhere.py:X"])


@pytest.mark.slow  # minutes; .ci/run runs README's compare command on the methods suite at smoke
def test_compare_runs_the_example_beside_the_baseline_and_ranks_it(tmp_path, capsys):
    out = tmp_path / "cmp.md"
    code = main(["compare", EXAMPLE, "--suite", _suite(tmp_path), "--scale", "smoke", "--results",
                 str(tmp_path / "r"), "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    text = out.read_text()
    assert "## Methods ranked per target" in text and "## Where each gap comes from" in text
    assert "## What each method cost" in text  # the ramped method's recorded seconds beside the baseline's
    rows = [line for line in text.splitlines() if "RampedFP (--method" in line]
    assert rows and any("p_lower" in r for r in rows)  # tested against the baseline
    assert "## Do the paper's claims C1-C5 carry over?" in text
    # the answer first: the summary (verdicts per setting, convergence) before any table
    assert text.index("## Summary") < text.index("## Do the paper's claims") < text.index("## Methods ranked")
    summary = text[text.index("## Summary"):text.index("## Do the paper's claims")]
    assert "score-FP: **" in summary and "- **Convergence**: " in summary  # the one swept regulariser
    assert summary.count("- **Your method RampedFP (--method") == 1  # the summary names it, with its counts
    assert "better in 0, worse in 0, not distinguishable in 0, cannot tell in 9 of 9 comparisons" in summary
    assert " n/a" not in text
    # is my method better? answered first, per target and distance, on the report and the terminal
    assert text.index("## Your method against the baseline") < text.index("## Summary")
    answer = text[text.index("## Your method against the baseline"):text.index("## Summary")]
    lines = [line for line in answer.splitlines() if line.startswith("- RampedFP (--method")]
    assert len(lines) == 3 * 3  # 3 distances x (2 targets + all targets pooled): every row of the ranking
    assert all("cannot tell: " in line and "fail the convergence gate" in line for line in lines)  # 200 steps
    printed = capsys.readouterr().out
    assert "Your method against the baseline:" in printed and "next: fpbench report" not in printed  # it reports
    assert printed.index("Your method against the baseline:") < printed.index("wrote ")  # the answer first


def test_versus_baseline_says_better_worse_or_not_distinguishable_with_the_ratio():
    from fpbench.analysis.compare import versus_baseline

    row = {"p_lower": 0.01, "p_higher": 0.99, "log_ratio": 0.5, "log_ratio_low": 0.2, "log_ratio_high": 0.8,
           "pairs": 6}
    assert versus_baseline(row, 0.05, None).startswith("**better** (lower; p = 0.01): 0.607x the baseline's")
    assert versus_baseline(row | {"p_lower": 0.99, "p_higher": 0.01}, 0.05, None).startswith("**worse**")
    assert versus_baseline(row | {"p_lower": 0.3, "p_higher": 0.7}, 0.05, None).startswith("not distinguishable")
    assert versus_baseline(row, 0.05, "2 of 4 models fail").startswith("cannot tell: 2 of 4")
    assert "2 or more seeds" in versus_baseline({"p_lower": float("nan")}, 0.05, None)
    # 3 pairs all on one side give p = 1/8: a per-target test on 3 seeds cannot decide, so it says so
    three = versus_baseline(row | {"p_lower": 0.125, "pairs": 3}, 0.05, None)
    assert three.startswith("cannot tell: with 3 pairs the sign-flip test's smallest possible p is 0.125 > α = 0.05")
    assert "5 or more seeds" in three and "0.607x the baseline's" in three
    assert versus_baseline(row | {"p_lower": 0.03125, "pairs": 5}, 0.05, None).startswith("**better**")


def test_reports_go_to_the_working_directory_not_the_repositorys_reports(tmp_path, monkeypatch):
    from .test_pipeline import GOOD

    repo_reports = Path(__file__).resolve().parents[1] / "reports"
    before = {p: p.stat().st_mtime_ns for p in repo_reports.rglob("*") if p.is_file()}
    suite = tmp_path / "tiny.toml"
    suite.write_text(GOOD)
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(suite), "--scale", "smoke", "--results", "r", "--quiet"]) == 0
    assert main(["report", str(suite), "--scale", "smoke", "--results", "r"]) == 0
    assert (tmp_path / "fpbench-reports" / "tiny-smoke.md").exists()
    assert {p: p.stat().st_mtime_ns for p in repo_reports.rglob("*") if p.is_file()} == before


def test_bench_reports_every_ratio(monkeypatch):
    from fpbench.train import ensemble

    # the bench's compiled rows through the eager jets: the rows' logic is tested here, torch.compile in test_jet
    monkeypatch.setattr(ensemble, "compiled_terms", ensemble.jet_terms)
    r = run_bench("paper", "smoke", members=2, iterations=2, n=200, steps=3, workers=1)
    text = format_bench(r)
    assert r["training"]["eager"]["speedup"] > 0 and r["training"]["compiled"]["speedup"] > 0
    assert r["w2"]["max_difference"] < 1e-9
    floor = r["training"]["floor"]
    assert floor["cold_us"] > 0 and floor["warm_us"] > 0 and f"{floor['cold_us']:.0f} us with the caches" in text
    profile = r["training"]["profile"]  # the smoke models' DSM products were found among the profiled calls
    assert 0 < profile["share"] < 1 and profile["product_us"] > 0 and "in-cache speed and all other work" in text
    for row in ("training, iterations/s", "sampling, particle-steps/s", "the same score on all 200 particles at once",
                "grid W2² solves/s"):
        assert row in text
    assert list(r["methods"]) == ["fp(w_r=0.0)", "fp(w_r=0.1)"]  # DSM alone, then with R~ (one weight stands in)
    assert "| fp(w_r=0.0) | ensemble |" in text and text.count("x |") >= 2


def test_bench_one_thread_restores_the_thread_count_on_an_error():
    import torch

    from fpbench.run import bench

    torch.set_num_threads(2)
    with pytest.raises(RuntimeError, match="inside"):
        with bench._one_thread():
            assert torch.get_num_threads() == 1
            raise RuntimeError("inside")
    assert torch.get_num_threads() == 2


POINTS = TINY.replace('targets = ["blob", "checker"]', 'targets = ["gmm"]\ntarget_sweep = { dim = [3] }').replace(
    "oracle_n = 300", "oracle_n = 300\ndistance = \"points\"\npoint_n = 200\nn_projections = 20")


def test_point_distances_run_end_to_end_with_their_own_floors(tmp_path):
    from fpbench.run.store import Store

    path = _suite(tmp_path, POINTS.replace("seeds = 2", "seeds = 1"))
    results = tmp_path / "r"
    assert main(["run", path, "--scale", "smoke", "--results", str(results), "--quiet"]) == 0
    store = Store(results)
    for case in expand(load_suite(path), "smoke"):
        m = store.metrics(case.key)["metrics"]
        for name in ("w2_ode_sde", "w2_ode_p0", "w2_sde_p0"):
            assert m[name]["method"] == "exact" and m[name]["n"] == 200
            assert m[f"{name}_sliced"]["method"] == "sliced" and m[f"{name}_sliced"]["n"] == 500
        assert m["floor"]["reps"] == 2 and m["floor"]["mean"] > 0 and m["floor_sliced"]["mean"] > 0
    # the sliced estimates are declared results columns, so the report reads them (it once refused them)
    out = tmp_path / "points.md"
    assert main(["report", path, "--scale", "smoke", "--results", str(results), "--out", str(out),
                 "--calibration-reps", "20"]) == 0
    assert "## Summary" in out.read_text()


def test_regularised_families_are_found_from_the_methods_not_their_names():
    """The methods suite's settings: each [[methods]] entry that sweeps the weight of one regulariser,
    with its residual column; DSM alone stands in for weight 0 where the family has no weight-0 entry;
    a user's method of the same shape is found the same way."""
    import pandas as pd

    from fpbench.reports.beyond_report import regulariser_settings

    data = load_suite("methods")
    rows = [("fp", "potential", {"w_r": w}) for w in (0.0, 1.0)] + [("warm_fp", "potential", {"w_r": 1.0})]
    rows += [("dsm", "score", {}), ("score_fp", "score", {"w_s": 1.0})]
    df = pd.DataFrame([{"method": m, "model": k, "target": "blob", **{f"param_{p}": v for p, v in ps.items()}}
                       for m, k, ps in rows])
    settings = regulariser_settings(data, df)
    labels = {s["name"]: s.get("label") for s in data["methods"] if s.get("sweep")}
    assert set(settings) == {labels["fp"], labels["warm_fp"], labels["score_fp"]}
    fp_rows, weight, residual = settings[labels["fp"]]
    assert (weight, residual, sorted(fp_rows["param_w_r"])) == ("param_w_r", "log_fp_residual", [0.0, 1.0])
    warm_rows = settings[labels["warm_fp"]][0]
    assert list(warm_rows["param_w_r"]) == [1.0]  # no weight-0 warm entry and no DSM-alone potential: as measured
    free_rows, weight, residual = settings[labels["score_fp"]]
    assert (weight, residual) == ("param_w_s", "score_fp_residual")
    assert sorted(zip(free_rows["method"], free_rows["param_w_s"])) == [("dsm", 0.0), ("score_fp", 1.0)]


def test_a_reason_shared_by_several_skipped_claims_is_written_once_naming_them():
    from types import SimpleNamespace

    from fpbench.reports.beyond_report import skipped_lines

    def outcome(key, skipped):
        return SimpleNamespace(claim=SimpleNamespace(key=key), skipped=skipped)

    outcomes = [outcome("C1", "models not converged: 12 of 12"), outcome("C2", "models not converged: 12 of 12"),
                outcome("C3", None), outcome("C4", "one target only")]
    assert skipped_lines(outcomes) == ["- C1, C2: models not converged: 12 of 12", "- C4: one target only"]


def test_the_baseline_is_the_suites_own_method_never_one_added_with_method(tmp_path):
    """``[suite] baseline`` names the method every other is tested against; without it, the suite's first
    method at its first parameters. A --method added beside a one-method suite (paper) is not it."""
    import pandas as pd

    from fpbench.analysis import compare as cmp

    def labels(data):
        rows = [{"method": c.config["method"]["name"], "model": c.config["model"]["kind"],
                 **{f"param_{k}": v for k, v in c.config["method"]["params"].items()}} for c in expand(data, "smoke")]
        df = pd.DataFrame(rows)
        return df.assign(label=cmp.method_labels(data, df))

    paper = with_methods(load_suite("paper"), [EXAMPLE])
    tiny = load_suite(_suite(tmp_path))
    tiny["suite"]["baseline"] = "score_fp(w_s=1.0)"
    cases = [(paper, "fp", {"param_w_r": 0.0}), (with_methods(load_suite("methods"), [EXAMPLE]), "fp",
              {"param_w_r": 0.0}), (tiny, "score_fp", {"param_w_s": 1.0})]
    for data, method, params in cases:
        df = labels(data)
        base = df[df["label"] == cmp.baseline_label(data)]
        assert not base.empty and set(base["method"]) == {method}, cmp.baseline_label(data)
        assert all((base[k] == v).all() for k, v in params.items())
    assert cmp.baseline_label(paper) == "fp (potential) [w_r=0]"


def test_the_summary_counts_the_verdicts_by_kind_not_by_their_wording(monkeypatch):
    from fpbench.analysis import compare as cmp
    from fpbench.reports import beyond_report as br

    def verdict(kind, words):
        return cmp.Verdict("Mine", "blob", "W2²(ODE, p0)", kind, words)

    verdicts = [verdict(cmp.BETTER, "x"), verdict(cmp.BETTER, "**worse**"), verdict(cmp.WORSE, "y"),
                verdict(cmp.CANNOT_TELL, "z")]
    monkeypatch.setattr(cmp, "baseline_label", lambda data: "the baseline")
    [line] = br.user_summary_lines({}, None, verdicts)
    assert "better in 2, worse in 1, not distinguishable in 0, cannot tell in 1 of 4 comparisons" in line


def test_the_cost_table_gives_each_methods_recorded_seconds_and_its_warm_starts_source():
    """The methods report's cost section: the train records' seconds per model with a t interval over models,
    and the seconds of the model a warm start begins from (the DSM baseline at w_R = 0 only)."""
    import pandas as pd

    from fpbench.reports.beyond_report import cost_frame

    data = load_suite("methods")
    base, paper, warm = "DSM, potential (baseline)", "DSM + w_R R~, potential (the paper)", \
        "warm start: the baseline, then DSM + w_R R~ (fpbench)"
    df = pd.DataFrame({"label": [base, base, paper, warm], "method": ["fp", "fp", "fp", "warm_fp"],
                       "param_w_r": [0.0, 0.0, 1.0, 1.0]})
    train = [(100.0, 12), (140.0, 12), (990.0, 12), (180.0, 3)]
    records = [{"train": {"seconds": s, "ensemble": e}, "sample_seconds": 7.0} for s, e in train]
    table = cost_frame(data, df, records).set_index("method")
    assert table.loc[base, "models"] == 2 and table.loc[base, "training s per model"] == "120 [-134, 374]"
    assert table.loc[paper, "training s per model"] == "990 (one model)"
    assert table.loc[warm, "+ its warm start's source"] == "120 s"  # the w_R = 0 baseline, not the w_R = 1 model
    assert table.loc[paper, "+ its warm start's source"] == "none"
    assert table.loc[warm, "ensemble sizes"] == "3" and table.loc[base, "sampling s per model"] == "7"


def test_method_step_seconds_times_each_method_by_the_path_its_run_trains_it_by():
    from fpbench.run.bench import method_step_seconds

    data = with_methods(load_suite("methods"), [EXAMPLE])
    cases = {}
    for case in expand(data, "smoke"):
        cases.setdefault(case.config["method"]["name"], case)
    timed = method_step_seconds(cases, iterations=2, repeats=2)
    assert set(timed) == set(cases)
    for t in timed.values():
        assert t["range"][0] <= t["s"] <= t["range"][1] and t["s"] > 0
    assert all(t["path"] == "ensemble" for t in timed.values())  # fpbench's terms, the example's ramp included


def test_the_gate_section_names_each_methods_yardstick_and_what_its_failing_models_fail_on():
    """The methods report's gate table: per target and method, the models that pass, the authors' model of the
    same w_R as the yardstick for the authors' loss and their largest for score-FP, the failing parts, and the
    loss plateau of the passing models beside the failing ones'."""
    import pandas as pd

    from fpbench.analysis.authors_levels import LEVELS
    from fpbench.reports.beyond_report import gate_count_lines, gate_frame, gate_section

    largest = max(v["rel_error"] for v in LEVELS["blob"].values())
    rows = [("paper", "fp", 1.0, 2 * LEVELS["blob"][1.0]["rel_error"], 1.0, 0.01),
            ("paper", "fp", 1.0, 50 * LEVELS["blob"][1.0]["rel_error"], 1.0, 0.02),
            ("score-FP", "score_fp", 1.0, 2 * largest, 0.5, 0.03)]
    df = pd.DataFrame([{"target": "blob", "label": label, "method": m, "param_w_r": w, "seed": i,
                        "convergence.rel_error": e, "convergence.ratio_min_late": r, "convergence.ratio_max_late": 1.0,
                        "convergence.loss_plateau": p} for i, (label, m, w, e, r, p) in enumerate(rows)])
    table = gate_frame(df).set_index("method")
    assert table.loc["paper", "pass"] == "1 of 2" and table.loc["paper", "failing on"] == "score error"
    assert table.loc["paper", "yardstick"] == "authors' model, same w_R"
    assert table.loc["score-FP", "yardstick"] == "authors' largest" and table.loc["score-FP", "x yardstick"] == 2.0
    assert table.loc["score-FP", "pass"] == "0 of 1" and table.loc["score-FP", "failing on"] == "score ratio"
    assert "median 0.01 over the 1 passing models; 0.025 over the 2 failing models." in "\n".join(gate_section(df))
    assert "median 0.01 over the 1 passing models; no model fails." in "\n".join(gate_section(df.iloc[:1]))
    from fpbench.reports.beyond_report import summary_lines

    tier = [line for line in summary_lines({"S": []}, df, "x", None, rows={"S": df}) if "Models at tier" in line]
    assert tier == ["- S: **Models at tier**: none (some model fails the trained tier); 1 of 3 reach authors' "
                    "quality, 1 of 3 reach trained."]
    assert gate_count_lines(df) == ["- **Convergence**: 1 of 3 trained models pass the gate; by method (the gate "
                                    "section below gives the evidence): paper 1 of 2; score-FP 0 of 1."]


def test_a_warm_start_is_paired_with_the_same_loss_and_parameters_from_scratch():
    """``compare.warm_versus_cold``: warm_fp at w_R pairs with fp at the same w_R (never the w_R = 0 model it
    starts from) by target and seed; a warm start that ends higher on its loss in every pair reads 'warm higher'
    at the smallest p 5 pairs allow, and one that ends where the cold start does is not read as higher."""
    import numpy as np
    import pandas as pd

    from fpbench.analysis.compare import warm_versus_cold

    rows = []
    for target in ("blob", "checker"):
        for seed in range(3):
            for method, w, loss in (("fp", 0.0, 1.0), ("fp", 1.0, 2.0), ("warm_fp", 1.0, 2.2)):
                rows.append({"target": target, "seed": seed, "method": method, "model": "potential",
                             "param_w_r": w, "label": f"{method} [w_r={w:g}]", "final.loss": loss + 0.01 * seed,
                             "convergence.rel_error": 0.01})
    df = pd.DataFrame(rows)
    table = warm_versus_cold(df).set_index("quantity")
    assert list(table["method"].unique()) == ["warm_fp [w_r=1]"]
    loss = table.loc["final training loss"]
    assert loss["pairs"] == 6 and np.isclose(loss["warm / cold"], np.exp(np.mean(np.log(
        [(2.2 + 0.01 * s) / (2.0 + 0.01 * s) for s in range(3)] * 2))))
    assert loss["p warm higher"] <= 2 ** -5 and loss["p warm lower"] == 1.0
    assert table.loc["relative score error", "p warm higher"] == 1.0  # equal in every pair: no direction
    same = df.assign(**{"final.loss": np.where(df["method"] == "warm_fp", df["final.loss"] - 0.2, df["final.loss"])})
    assert warm_versus_cold(same).set_index("quantity").loc["final training loss", "p warm higher"] > 0.05


def test_the_ranking_marks_better_or_worse_only_when_the_pairs_models_pass_the_gate():
    from types import SimpleNamespace

    from fpbench.reports.beyond_report import versus

    row = SimpleNamespace(method="m", baseline="b", p_lower=0.002, p_higher=1.0, log_ratio=0.7)
    assert versus(row, None).endswith("x0.50 **better**")
    held = versus(row, "2 of 6 models (the method's and the baseline's) fail the convergence gate")
    assert "**" not in held and held.endswith("(not decided: 2 of 6 models (the method's and the baseline's) fail "
                                              "the convergence gate)")
    assert versus(SimpleNamespace(**{**vars(row), "p_lower": 1.0, "p_higher": 0.002}), None).endswith("**worse**")
