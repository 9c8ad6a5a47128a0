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
