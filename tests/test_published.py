"""The authors' published models as cases of the paper suite (fpbench.analysis.published) and the claims
decided on them (``fpbench reference claims``, reports/reference-claims.md)."""

import hashlib
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from fpbench.analysis import claims as cl
from fpbench.analysis import published
from fpbench.analysis.authors_levels import LEVELS
from fpbench.analysis.paper_values import W_R, paper_value
from fpbench.analysis.reference import ReferenceError, checkpoint_path, reference_dir
from fpbench.cli import main
from fpbench.reports import claims_report as cr
from fpbench.reports.suite_report import authors_outcomes
from fpbench.run.config import AUTHORS_RESAMPLING
from fpbench.run.results import collect
from fpbench.run.store import Store, flatten_metrics, write_json
from fpbench.run.suite import expand, load_suite

try:
    ROOT = reference_dir()
except ReferenceError:
    ROOT = None
needs_artefacts = pytest.mark.skipif(ROOT is None,
                                     reason="the authors' artefacts are absent (../shared/paper/reference)")
TINY = {"sample": {"n": 3000, "nfe": 40, "fine_steps": 10, "chunk": 3000},
        "metrics": {"n_boot": 2, "floor_reps": 2, "residual_points": 2000, "dsm_points": 3000, "curl_points": 300,
                    "disc_points": 50}}


def test_the_cases_are_the_paper_suites_at_its_paper_scale_with_the_published_model_and_resampling():
    cases = published.authors_cases(seeds=2)
    paper = {(c.config["target"]["name"], c.config["method"]["params"]["w_r"], c.config["seed"]): c.config
             for c in expand(load_suite("paper"), "paper", seeds=2)}
    assert len(cases) == 24 and len({c.key for c in cases}) == 24
    assert [c.config["seed"] for c in cases] == [0] * 12 + [1] * 12  # whole seeds first
    for case in cases:
        cfg = case.config
        own = paper[(cfg["target"]["name"], cfg["method"]["params"]["w_r"], cfg["seed"])]
        assert cfg["train"] == own["train"] and cfg["sde"] == own["sde"] and cfg["method"] == own["method"]
        assert cfg["sample"] == {**own["sample"], **AUTHORS_RESAMPLING["sample"]}
        assert cfg["sample"]["nfe"] == 800 and cfg["sample"]["n"] >= 200_000  # the authors' sampler; the issue's n
        assert cfg["model"]["kind"] == "authors" and cfg["scale"] == published.SCALE
        assert cfg["model"]["checkpoint"] == f"{cfg['target']['name']}/w{cfg['method']['params']['w_r']:.1f}"


@needs_artefacts
def test_a_published_model_is_measured_like_a_trained_case(tmp_path, monkeypatch):
    for section, values in TINY.items():
        monkeypatch.setitem(AUTHORS_RESAMPLING, section, values)
    case = [c for c in published.authors_cases(1) if c.config["target"]["name"] == "blob"][0]
    assert case.config["method"]["params"]["w_r"] == 0.0
    record = published.run_authors_case(case, Store(tmp_path), ROOT)
    m, path = record["metrics"], checkpoint_path(ROOT, "blob", 0.0)
    assert record["train"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    for table in ("w2_ode_sde", "w2_ode_p0", "w2_sde_p0"):
        assert m[table]["ci_low"] <= m[table]["value"] <= m[table]["ci_high"] and m[table]["n"] == 3000
    assert m["log_fp_residual"] > 0 and m["curl_max_t0"] < 1e-3 and "oracle" not in m
    # the case pipeline measures the published model exactly as `fpbench reference levels` did (same stream)
    for key in ("ratio_min_late", "ratio_max_late", "rel_error", "rel_error_early"):
        assert m["convergence"][key] == pytest.approx(LEVELS["blob"][0.0][key], rel=1e-4), key
    row = flatten_metrics(record)
    assert row["param_w_r"] == 0.0 and row["scale"] == published.SCALE and row["model"] == "authors"
    # reports/reference.md's row: our fresh p0 histogram and the published one are draws of one law
    from fpbench.reports.reference_report import comparison_row, diagnostics

    compared = comparison_row(record, Store(tmp_path), ROOT)
    assert compared["w2_p0_vs_published"] <= 3 * m["floor"]["mean"]
    assert 0 < compared["w2_ode_vs_published"] < 1 and len(diagnostics([compared])) == 1
    again = published.run_authors_case(case, Store(tmp_path), ROOT)  # done: read back, not rerun
    assert again["metrics"]["w2_ode_sde"] == m["w2_ode_sde"] and again["sample_seconds"] == record["sample_seconds"]


def test_a_failing_model_is_stored_as_failed_and_a_busy_one_left_to_its_owner(tmp_path, monkeypatch):
    cases = published.authors_cases(1)
    busy, broken = cases[1], cases[2]

    def fake_run(case, store, root, device=None, log=print, compile=False):
        if case.key == broken.key:
            raise RuntimeError("sampler exploded")
        write_json(store.case_dir(case.key) / "metrics.json", {"key": case.key, "config": case.config, "metrics": {}})

    monkeypatch.setattr(published, "run_authors_case", fake_run)
    monkeypatch.setattr(published, "check_checkpoints", lambda *args: None)  # no checkpoints here: fake models
    lock = Store(tmp_path).case_lock(busy.key)
    lock.acquire()
    logged = []
    try:
        df, _records, missing = published.run_authors(tmp_path, str(tmp_path), seeds=1, log=logged.append)
    finally:
        lock.release()
    assert len(df) == 10 and len(missing) == 2
    assert any("failed: sampler exploded" in m for m in missing)
    assert any(line.startswith("busy") and busy.label in line for line in logged)
    assert Store(tmp_path).failure(broken.key)["message"] == "sampler exploded"


def _synthetic_store(root, seeds=2, noise=0.05, reverse_table1=False):
    """Records of the published models' cases whose W2² are the paper's tables x exp(N(0, noise)), with
    the authors' convergence levels and R~ falling / L_DSM rising with w_R (as Figs. 4, 5)."""
    rng, store = np.random.default_rng(1), Store(root)
    for case in published.authors_cases(seeds):
        target, w_r = case.config["target"]["name"], case.config["method"]["params"]["w_r"]
        metrics = {"floor": {"mean": 1e-5}, "inside_grid_ode": 0.999, "inside_grid_sde": 0.999, "inside_grid_p0": 0.999,
                   "convergence": {**{k: v for k, v in LEVELS[target][w_r].items() if k != "log_fp_residual"},
                                   "loss_plateau": 0.0},
                   "log_fp_residual": 5.0 / (1 + 10 * w_r) * math.exp(rng.normal(0, noise)),
                   "dsm_loss": 1.0 + 0.01 * w_r + 0.001 * rng.random(), "dsm_loss_exact": 1.0}
        for table in ("w2_ode_sde", "w2_ode_p0", "w2_sde_p0"):
            level = W_R[::-1][W_R.index(w_r)] if table == "w2_ode_sde" and reverse_table1 else w_r
            v = paper_value(table, target, level) * math.exp(rng.normal(0, noise))
            metrics[table] = {"value": v, "ci_low": 0.9 * v, "ci_high": 1.1 * v, "n": 200_000}
        write_json(store.case_dir(case.key) / "metrics.json",
                   {"key": case.key, "config": case.config, "metrics": metrics, "train": {"history": []},
                    "sample_seconds": 1.0, "device": "cpu", "torch": "x"})
    return store


def test_the_report_decides_the_claims_on_the_published_models_and_says_so_first(tmp_path):
    _synthetic_store(tmp_path / "results")
    out = tmp_path / "reference-claims.md"
    assert main(["reference", "claims", "--no-run", "--seeds", "2", "--results", str(tmp_path / "results"),
                 "--dir", str(tmp_path), "--out", str(out), "--calibration-reps", "40"]) == 0
    text = out.read_text()
    assert text.index("## Summary") < text.index("## Tables 1-3") < text.index("## The paper's claims as tests")
    summary = text[text.index("## Summary"):text.index("## Tables 1-3")]
    assert "- **PASS**: C1 (Table 1)" in summary and "C3 (Table 3)" in summary  # the paper's tables, planted
    assert "- **Convergence**: 24 of 24 trained models pass the gate" in summary
    assert "the family for Holm's adjustment is these" in text and "## Calibration of the claim tests" in text
    assert "24 finished case(s) of 24" in text and (tmp_path / "figures" / "reference-claims-calibration.png").exists()


def test_a_reversed_table_1_fails_c1_on_the_published_models(tmp_path):
    """The same data with Table 1's w_R order reversed: the trend test must say FAIL, not PASS."""
    df, _records, _missing = collect(_synthetic_store(tmp_path, reverse_table1=True), published.authors_cases(2))
    outcomes = {o.claim.key: o for o in cl.trained_claims(df)}
    assert outcomes["C1"].verdict == "FAIL" and outcomes["C3"].verdict == "PASS"
    assert all(math.isfinite(o.p_holm) for o in outcomes.values() if o.result is not None)


def test_the_paper_reports_claims_table_puts_the_published_models_verdicts_beside(tmp_path):
    assert authors_outcomes(Store(tmp_path / "empty")) == (None, 0)  # none run: no column
    theirs, seeds = authors_outcomes(_synthetic_store(tmp_path / "results"))
    assert seeds == 2
    ours = [cl.ClaimOutcome(cl.CLAIMS[k], skipped="models not converged: 3 of 12", inconclusive=True)
            for k in ("C1", "C2", "C6")]
    table = cr.claims_table(ours, beside=theirs)
    column = dict(zip(table["claim"].str[:2], table[cr.BESIDE_COLUMN]))
    assert column["C1"].startswith("**PASS** (Holm p = ") and column["C6"] == "—"
    summary = cr.summary_section(ours, collect(Store(tmp_path / "results"), published.authors_cases(2))[0], "quick",
                                 None, theirs, seeds)
    assert ("- on the authors' published models (2 sampling seeds per model; reports/reference-claims.md): "
            "**PASS**: C1") in summary


def test_the_recomputed_tables_are_cached_by_the_histograms_they_read(tmp_path, monkeypatch):
    from fpbench.analysis.reference import TableCell
    from fpbench.reports import reference_report

    (tmp_path / "precomputed_dists").mkdir()
    hist = tmp_path / "precomputed_dists" / "weights_truth_64_3000000_blob.npy"
    np.save(hist, np.ones(4))
    calls = []
    monkeypatch.setattr(reference_report, "recompute_tables",
                        lambda root: calls.append(1) or [TableCell("w2_ode_sde", "blob", 0.0, 0.5 * len(calls), 0.5)])
    first = reference_report.recomputed_tables(tmp_path, tmp_path / "cache", log=lambda m: None)
    assert reference_report.recomputed_tables(tmp_path, tmp_path / "cache", log=lambda m: None) == first
    assert len(calls) == 1 and first[0].recomputed == 0.5
    np.save(hist, np.zeros(4))  # a changed published file: computed again
    assert reference_report.recomputed_tables(tmp_path, tmp_path / "cache", log=lambda m: None)[0].recomputed == 1.0


@needs_artefacts
def test_a_refused_checkpoint_stops_the_run_before_any_model_is_sampled(tmp_path, monkeypatch):
    """A truncated checkpoint among the 12: the run refuses it before sampling anything (it used to sample
    the other models first, for hours)."""
    root = Path(shutil.copytree(ROOT, tmp_path / "reference", ignore=shutil.ignore_patterns("precomputed_dists")))
    bad = checkpoint_path(root, "checker", 10.0)
    bad.write_bytes(bad.read_bytes()[:200])
    sampled = []
    monkeypatch.setattr(published, "run_authors_case", lambda *args, **kwargs: sampled.append(1))
    with pytest.raises(ReferenceError, match="refusing checkpoint .*truncated"):
        published.run_authors(root, str(tmp_path / "results"), seeds=1, log=lambda *_: None)
    assert sampled == []


def test_a_run_with_a_bundle_commits_each_case_and_resumes_from_it_on_another_machine(tmp_path, monkeypatch):
    """--bundle: each finished case goes into the bundle (no weights: the checkpoint is the authors'); a
    deadline starts no more cases; a fresh store given the bundle runs only the cases it lacks."""
    from types import SimpleNamespace

    from fpbench.run import audit as au
    from fpbench.run import bundle as bd
    from fpbench.run.store import SAMPLES_FILE

    ran, clock = [], {"now": 0.0}

    def fake_run(case, store, root, device=None, log=print, compile=False):
        ran.append(case.key)
        clock["now"] += 1.0
        out = store.case_dir(case.key)
        write_json(out / "config.json", case.config)
        np.savez(out / SAMPLES_FILE, ode=np.ones((64, 64)))
        write_json(out / "metrics.json", {"key": case.key, "config": case.config, "metrics": {}})

    monkeypatch.setattr(published, "run_authors_case", fake_run)
    monkeypatch.setattr(published, "check_checkpoints", lambda *args: None)
    monkeypatch.setattr(published, "time", SimpleNamespace(time=lambda: clock["now"]))
    bundle = tmp_path / "bundle"
    _df, _records, missing = published.run_authors(tmp_path, str(tmp_path / "first"), seeds=1, log=lambda *_: None,
                                                   bundle=bundle, deadline=3.0)  # three cases' worth
    assert len(ran) == 3 and len(missing) == 9
    manifest = bd.verify_bundle(bundle)
    assert sorted(manifest["cases"]) == sorted(ran) and not any(f.endswith("model.pt") for f in manifest["files"])
    with pytest.raises(bd.BundleError, match="no case trained by fpbench"):
        au.audit(bundle, 1, tmp_path / "audit")
    first = list(ran)
    df, _records, missing = published.run_authors(tmp_path, str(tmp_path / "second"), seeds=1, log=lambda *_: None,
                                                  bundle=bundle)
    assert len(df) == 12 and not missing and set(ran[3:]).isdisjoint(first) and len(ran) == 12
    assert len(bd.verify_bundle(bundle)["cases"]) == 12


def test_the_claims_are_decided_on_whole_sampling_seeds_only():
    """A seed with some of its 12 models finished is left out (its count said), so that no model has more
    replicates than another; its records go with its rows."""
    import pandas as pd

    from fpbench.reports.authors_report import _left_out_lines

    rows = [{"seed": s, "target": t, "param_w_r": w} for s in (0, 1) for t in ("blob", "circles2", "checker")
            for w in W_R]
    rows += [{"seed": 2, "target": "blob", "param_w_r": w} for w in W_R[:3]]
    df, records = pd.DataFrame(rows), [{"row": i} for i in range(len(rows))]
    kept, kept_records, left_out = published.whole_seeds(df, records)
    assert sorted(kept["seed"].unique()) == [0, 1] and len(kept) == 24
    assert [r["row"] for r in kept_records] == list(range(24)) and left_out == {2: 3}
    assert "seed 2 (3 of 12 finished) left out" in _left_out_lines(left_out)[0]
    assert published.whole_seeds(df[df["seed"] == 2], records[24:])[0].empty
    assert _left_out_lines({}) == []


def test_the_report_says_why_c5_and_t1_cannot_be_decided_on_one_checkpoint_per_cell():
    import pandas as pd

    from fpbench.reports.authors_report import structural_lines

    rows = [{"seed": s, "target": t, "param_w_r": w, "floor.mean": 0.002, "log_fp_residual": 1.0 / (1 + w),
             "w2_ode_sde.value": 0.02 if w == 0.0 else 0.003} for s in (0, 1) for t in ("blob", "checker") for w in W_R]
    (line,) = structural_lines(pd.DataFrame(rows))
    assert "published 1 checkpoint per cell" in line and "these have blob 1, checker 1" in line
