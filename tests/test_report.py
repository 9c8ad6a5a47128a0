"""Report pieces computed from results: trends, dropped samples, the prior-score diagnostic."""

import pandas as pd
import pytest
import torch

from fpbench.analysis.paper_values import TABLES
from fpbench.analysis.stats import summarise
from fpbench.core.models import ExactScore
from fpbench.core.sde import make_sde
from fpbench.core.targets import make_target
from fpbench.reports.suite_report import dropped_samples_section, trends_section
from fpbench.run.evaluate import prior_score_ratio


def _frame(values_by_table, inside=1.0):
    rows = []
    for w in (0.0, 0.1, 1.0, 10.0):
        row = {"target": "blob", "param_w_r": w, "inside_grid_ode": inside, "inside_grid_sde": 1.0}
        for table, fn in values_by_table.items():
            row[f"{table}.value"] = fn(w)
        rows.append(row)
    return pd.DataFrame(rows)


def test_trends_follow_the_paper_when_the_values_are_the_papers():
    df = _frame({t: (lambda w, t=t: TABLES[t][w][0]) for t in TABLES})
    text = trends_section(df)
    assert "3 of 3 rows move with w_R in the paper's direction" in text


def test_trends_say_so_when_a_direction_is_reversed():
    df = _frame({"w2_ode_sde": lambda w: 1 + w, "w2_ode_p0": lambda w: TABLES["w2_ode_p0"][w][0],
                 "w2_sde_p0": lambda w: TABLES["w2_sde_p0"][w][0]})
    assert "2 of 3 rows" in trends_section(df)


def test_dropped_samples_are_reported_only_when_present():
    assert dropped_samples_section(_frame({}, inside=0.99)) == ""
    text = dropped_samples_section(_frame({}, inside=0.5))
    assert "4 of 4 cases keep less than 95%" in text and "50.0%" in text


def test_summary_uses_a_t_interval_over_seeds_and_the_bootstrap_for_one():
    import numpy as np

    mean, low, high, kind = summarise(np.array([1.0, 2.0, 3.0]), np.zeros(3), np.zeros(3))
    assert mean == 2.0 and kind == "t over 3 seeds" and low < 2.0 < high
    assert summarise(np.array([1.0]), np.array([0.5]), np.array([1.5]))[1:3] == (0.5, 1.5)


def test_prior_score_ratio_is_one_for_the_exact_score_and_zero_for_a_zero_score():
    sde = make_sde("ou")
    exact = ExactScore(make_target("blob"), sde)
    gen = torch.Generator().manual_seed(0)
    assert abs(prior_score_ratio(exact, sde, 2, gen, torch.float64, None) - 1) < 1e-3

    class Zero:
        def score(self, x, t):
            return torch.zeros_like(x)

    assert prior_score_ratio(Zero(), sde, 2, gen, torch.float64, None) == 0.0


def _record(value, ode_vs_pub, floor=0.002):
    est = {"value": value, "ci_low": value - 0.001, "ci_high": value + 0.001}
    return {"target": "blob", "w_r": 0.0, "n": 200_000, "floor": {"mean": floor}, "w2_ode_sde": est,
            "w2_ode_p0": dict(est, value=0.010967, ci_low=0.0105, ci_high=0.0115), "w2_sde_p0": est,
            "w2_ode_vs_published": ode_vs_pub, "w2_sde_vs_published": 0.002, "w2_p0_vs_published": 0.002}


def test_disagreements_name_the_histogram_that_departs_from_the_published_one():
    from fpbench.reports.reference_report import disagreements

    lines = disagreements([_record(0.02, ode_vs_pub=0.014)])
    assert any("Table 1" in line and "our ODE histogram is W2² = 0.014000" in line for line in lines)
    assert any("Table 3" in line and "upward bias at our n" in line for line in lines)
    assert not any("Table 2" in line for line in lines)  # the paper's value is inside that interval


def test_an_undecided_claim_says_why_in_a_few_words():
    """The summary's INCONCLUSIVE bullet names what stopped the test (its Holm-adjusted p above α, its
    effect below the needed size), not the whole test record."""
    from fpbench.analysis import claims as cl
    from fpbench.analysis.stats import ClaimTest
    from fpbench.reports.claims_report import verdict_lines

    def outcome(key, p, effect, p_holm):
        test = ClaimTest("Spearman", -0.2, p, 0.9, effect, "rho", -0.4, 0.7, 12, 0.05, 0.3, "INCONCLUSIVE")
        return cl.ClaimOutcome(cl.CLAIMS[key], result=test, p_holm=p_holm)

    lines = verdict_lines([outcome("C4", 0.0227, 0.245, 0.068), outcome("C5", 0.01, 0.1, 0.03)])
    assert lines == ["- **INCONCLUSIVE**: C4: p = 0.068 (Holm) > α = 0.05, rho = 0.245, below the needed 0.3; "
                     "C5: rho = 0.1, below the needed 0.3."]


def test_a_failed_claim_about_trained_models_gets_its_diagnostics_and_is_not_blamed_on_the_budget():
    """A FAIL of C1-C5 comes only from models that passed the convergence gate: its section shows the
    collapse diagnostics per w_R and says so; an oracle claim's FAIL gets no such section."""
    from fpbench.analysis import claims as cl
    from fpbench.analysis.stats import FAIL, ClaimTest
    from fpbench.reports.claims_report import why_section

    df = _frame({"w2_ode_sde": lambda w: 0.01 * (1 + w)}).assign(
        prior_score_ratio=[1.0, 0.99, 0.98, 0.97], log_fp_residual=[0.1, 0.05, 0.01, 0.001])
    failed = ClaimTest("Page", 1.0, 0.9, 0.01, -0.5, "slope", -0.9, -0.1, 3, 0.05, 0.0, FAIL)
    text = why_section(df, [cl.ClaimOutcome(cl.CLAIMS["C1"], result=failed)])
    assert text.startswith("## C1: FAIL on models that pass the convergence gate")
    assert "budget" not in text
    row = next(line for line in text.splitlines() if line.replace(" ", "").startswith("|10|"))
    assert [c.strip() for c in row.split("|")[2:-1]] == ["0.97", "1", "1", "0.001", "0.11"]
    assert why_section(df, [cl.ClaimOutcome(cl.CHECKS["H2"], result=failed)]) == ""


def test_the_distance_to_the_paper_is_measured_per_cell():
    """Ratios to the paper's cells, whether fpbench's interval holds the paper's value, and the distance in the
    paper's own half-widths where its intervals are known."""
    import math

    from fpbench.analysis.paper_values import paper_value
    from fpbench.reports.suite_report import distance_frame, distance_section

    rows = []
    for target in ("blob", "checker"):
        for w in (0.0, 1.0):
            for seed, factor in enumerate((1.99, 2.01)):  # twice the paper's value, seed to seed +-0.5%
                row = {"target": target, "param_w_r": w, "seed": seed}
                for table in ("w2_ode_sde", "w2_ode_p0", "w2_sde_p0"):
                    v = factor * paper_value(table, target, w)
                    row |= {f"{table}.value": v, f"{table}.ci_low": v, f"{table}.ci_high": v}
                rows.append(row)
    frame = distance_frame(pd.DataFrame(rows), {("w2_ode_sde", "blob", 0.0): 0.001})
    assert len(frame) == 12 and frame["ratio"].round(9).eq(2.0).all()
    assert not frame["interval holds the paper's"].any()  # t interval over 2 seeds: about [1.87, 2.13] x paper
    blob = frame[(frame["table"] == "Table 1") & (frame["target"] == "blob") & (frame["w_R"] == 0.0)].iloc[0]
    assert blob["distance (paper's half-widths)"] == pytest.approx(0.011599 / (1.96 * 0.001))
    assert math.isnan(frame.iloc[-1]["distance (paper's half-widths)"])
    assert "Median ratio to the paper's cell 2.00" in distance_section(pd.DataFrame(rows), {})
    from fpbench.analysis.paper_intervals import paper_sds  # the committed spreads: every cell has its distance

    assert "the median distance is" in distance_section(pd.DataFrame(rows), paper_sds())
    assert distance_frame(pd.DataFrame(rows), paper_sds())["distance (paper's half-widths)"].gt(0).all()
