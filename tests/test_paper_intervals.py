"""The paper's own tables with error bars (fpbench.analysis.paper_intervals), on synthetic grid laws
whose W2² is known in closed form, and end to end on a small synthetic set of published histograms."""

import math

import numpy as np
import pytest

from fpbench.analysis import paper_intervals as pi
from fpbench.analysis.paper_values import TARGETS, W_R
from fpbench.core.metrics import PAPER_GRID, from_xy_order, grid_w2_from_weights


def _gaussian_law(centre=(0.0, 0.0), std=0.5) -> np.ndarray:
    """A Gaussian's mass on the paper's grid, fpbench's node order (node (i, j) at i * 64 + j), cut to
    zero beyond 2.5 sd (a small support keeps every OT solve fast)."""
    nodes = PAPER_GRID.nodes()
    r2 = ((nodes - np.asarray(centre)) ** 2).sum(1) / std**2
    w = np.where(r2 <= 2.5**2, np.exp(-r2 / 2), 0.0)
    return w / w.sum()


@pytest.mark.parametrize("k", [0, 1, 3])
def test_a_shifted_copy_has_the_translation_as_its_exact_w2(k):
    """The OT solver on the grid against the closed form (k h)² of a translation by k nodes."""
    p, q, truth = pi.shifted_pair(_gaussian_law((1.0, -0.5)), k)
    assert truth == pytest.approx((k * 7 / 63) ** 2, rel=1e-12)
    assert grid_w2_from_weights(p, q) == pytest.approx(truth, rel=1e-9, abs=1e-12)
    moved = q.reshape(64, 64)  # moved along x: fpbench's first index
    assert np.allclose(moved[k:, :], p.reshape(64, 64)[:64 - k, :])


def test_the_basic_interval_removes_the_bootstraps_bias():
    interval = pi.Interval.from_replicates(0.010, [0.012, 0.013, 0.011, 0.012])
    assert interval.basic_value == pytest.approx(2 * 0.010 - 0.012)
    low, high = interval.bounds("basic")
    assert interval.bounds("floor", floor=0.003) == pytest.approx((0.010 - 0.003 - 1.96 * np.std(
        [0.012, 0.013, 0.011, 0.012], ddof=1), 0.010 + 1.96 * np.std([0.012, 0.013, 0.011, 0.012], ddof=1)))
    sd = np.std([0.012, 0.013, 0.011, 0.012], ddof=1)
    assert (low, high) == pytest.approx((0.008 - 1.96 * sd, 0.008 + 1.96 * sd))
    assert interval.bounds("normal")[1] == pytest.approx(0.010 + 1.96 * sd)
    with pytest.raises(ValueError, match="at least 2"):
        pi.Interval.from_replicates(0.01, [0.01])


def test_coverage_of_a_known_truth_is_measured_with_an_exact_interval():
    """Equal laws at a small n: the estimator reads about its floor, so the plain (normal) interval, centred
    on that biased value, never holds the truth 0, while the floor interval, whose low end allows for the
    whole floor, does."""
    law, n = _gaussian_law(std=0.3), 4000
    rng = np.random.default_rng(0)
    floor = float(np.mean([grid_w2_from_weights(pi.redraw(law, n, rng), pi.redraw(law, n, rng)) for _ in range(4)]))
    p, q, truth = pi.shifted_pair(law, 0)
    runs = [pi.coverage_run(p, q, n, 4, rng) for _ in range(6)]
    summary = pi.coverage_summary(runs, truth, floor)
    assert summary["runs"] == 6 and summary["truth"] == 0.0
    for method in pi.METHODS:
        share, low, high = summary[method]
        assert 0 <= low <= share <= high <= 1
    assert all(r["value"] > 0 for r in runs)
    assert summary["normal"][0] == 0.0 and summary["floor"][0] >= 0.5
    assert pi.interval_method({0: summary}) in ("floor", "none")


def test_the_preferred_interval_is_the_first_that_covers_everywhere():
    ok, low = (0.95, 0.8, 1.0), (0.5, 0.2, 0.8)
    assert pi.interval_method({1: {"normal": ok, "basic": ok, "floor": ok}}) == "normal"
    assert pi.interval_method({1: {"normal": low, "basic": ok, "floor": ok}, 0: {"normal": low, "basic": low,
                                                                               "floor": ok}}) == "floor"
    assert pi.interval_method({0: {"normal": low, "basic": low, "floor": low}}) == "none"


def test_differences_are_resolved_only_beyond_their_noise():
    reps = lambda v, spread: [v - spread, v, v + spread]  # noqa: E731
    cells = [{"table": "w2_ode_sde", "target": "blob", "w_r": w, "value": v, "paper": v, "replicates": reps(v, s)}
             for w, v, s in ((0.0, 0.010, 1e-4), (0.1, 0.005, 1e-4), (1.0, 0.0051, 1e-4))]
    rows = pi.resolved_differences(cells, "normal")
    assert [r["resolved"] for r in rows] == [True, False]
    floors = {"blob": {"values": [0.006]}}  # a floor above the first difference: not resolved any more
    assert [r["resolved"] for r in pi.resolved_differences(cells, "floor", floors)] == [False, False]
    assert rows[0]["difference"] == pytest.approx(-0.005) and rows[0]["sd"] == pytest.approx(math.sqrt(2) * 1e-4)


def test_the_study_and_its_report_end_to_end(tmp_path):
    """Synthetic published histograms (the authors' file names and axis order), a small n: every cell,
    floor and coverage run stored, a rerun reads them back, and the report holds every table."""
    from fpbench.reports.intervals_report import write_intervals_report

    d = tmp_path / "ref" / "precomputed_dists"
    d.mkdir(parents=True)
    to_xy = lambda w: w.reshape(64, 64).T.ravel()  # noqa: E731 - fpbench order -> the files' 'xy' order
    for i, target in enumerate(TARGETS):
        np.save(d / f"weights_truth_64_3000000_{target}.npy", to_xy(_gaussian_law(std=0.3 + 0.05 * i)))
        for w in W_R:
            for kind, shift in (("ode", 0.2), ("sde", 0.05)):
                law = _gaussian_law((shift / (1 + w), 0.0), 0.3 + 0.05 * i)
                np.save(d / f"weights_{kind}_64_3000000_100000_800_{target}_{w:.1f}.npy", to_xy(law))
    assert np.allclose(from_xy_order(to_xy(_gaussian_law((1, 0)))), _gaussian_law((1, 0)))
    s = pi.Settings(reps=2, floor_reps=2, coverage_runs=2, coverage_boot=2, n=2000)
    cache = tmp_path / "cache"
    study = pi.run_study(tmp_path / "ref", cache, s, tables=("w2_ode_sde",), log=lambda *_: None)
    assert len(study["cells"]) == 12 and set(study["coverage"]) == {0, 1}
    stored = sorted(p.name for p in cache.iterdir())
    again = pi.run_study(tmp_path / "ref", cache, s, tables=("w2_ode_sde",), log=lambda *_: None)
    assert again["cells"] == study["cells"] and sorted(p.name for p in cache.iterdir()) == stored
    out = write_intervals_report(study, tmp_path / "intervals.md", "fpbench reference intervals")
    text = out.read_text()
    assert "## Coverage of the intervals on known truths" in text and "not computed yet" in text  # tables 2, 3
    assert "resolved" in text or "within noise" in text


def test_the_spreads_module_holds_the_cells_replicates_and_the_store_overrides_it(tmp_path):
    """``write_spreads_module`` writes every cell's replicates as Python a reader imports back; ``paper_sds``
    takes a store's own cell records over the committed module's (a rerun with more replicates wins)."""
    import importlib.util

    s = pi.Settings(reps=3, n=2000)
    cells = [{"table": "w2_ode_sde", "target": "blob", "w_r": 0.0, "replicates": [0.0101, 0.0123456789012, 0.0099]},
             {"table": "w2_sde_p0", "target": "checker", "w_r": 10.0, "replicates": [1e-3, 2e-3, 4e-3]}]
    path = pi.write_spreads_module(cells, s, tmp_path / "spreads.py")
    spec = importlib.util.spec_from_file_location("spreads", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (module.REPS, module.N, module.SEED) == (3, 2000, 0)
    assert module.REPLICATES == {("w2_ode_sde", "blob", 0.0): [0.0101, 0.0123456789, 0.0099],
                                 ("w2_sde_p0", "checker", 10.0): [1e-3, 2e-3, 4e-3]}
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "cell-w2_ode_sde-blob-0-r3-n2000.json").write_text(
        '{"table": "w2_ode_sde", "target": "blob", "w_r": 0.0, "replicates": [1.0, 2.0, 3.0]}')
    from_store, committed = pi.paper_sds(tmp_path / "cache"), pi.paper_sds()
    assert from_store[("w2_ode_sde", "blob", 0.0)] == pytest.approx(1.0)
    assert from_store[("w2_ode_sde", "circles2", 0.1)] == committed[("w2_ode_sde", "circles2", 0.1)]


def test_the_committed_spreads_are_the_published_histograms_redrawn():
    """fpbench/analysis/paper_spreads.py is what `fpbench reference spreads` computes: every cell of Tables
    1-3 with its replicates at the paper's n, the first of one cell redrawn here from the published histograms
    with the study's stream."""
    from fpbench.analysis import paper_spreads
    from fpbench.analysis.reference import ReferenceError, reference_dir, table_histograms

    assert (paper_spreads.N, paper_spreads.REPS) == (pi.PAPER_N, pi.Settings().reps)
    assert set(paper_spreads.REPLICATES) == {(t, g, w) for t in pi.TABLES for g in TARGETS for w in W_R}
    assert all(len(r) == paper_spreads.REPS and min(r) > 0 for r in paper_spreads.REPLICATES.values())
    assert all(0 < sd < 1e-3 for sd in pi.paper_sds().values())  # the paper's cells are 1.7e-3 to 3.4e-2
    try:
        root = reference_dir()
    except ReferenceError as err:  # the published artefacts are not on this machine
        pytest.skip(str(err))
    table, target, w_r = "w2_ode_sde", "blob", 10.0
    index = TARGETS.index(target) * 100 + W_R.index(w_r) * 10 + list(pi.TABLES).index(table)
    a, b = table_histograms(root, table, target, w_r)
    [first] = pi.replicates(a, b, pi.PAPER_N, 1, np.random.default_rng([paper_spreads.SEED, index]))
    assert first == pytest.approx(paper_spreads.REPLICATES[(table, target, w_r)][0], rel=1e-8)
