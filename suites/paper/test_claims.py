"""The paper's claims, one test each (fpbench.analysis.claims has the statistics and the gates).

A PASS passes; a FAIL fails with the statistic, p-value and effect (the claim does not reproduce on
these results); a claim the data cannot decide, or an INCONCLUSIVE test, is skipped with its reason.
Every claim is decided on its p-value adjusted by Holm's method across the claims (``claims.evaluate_claims``).

    pytest suites/paper -rs                              # smoke scale (CI)
    pytest suites/paper -rs --fpbench-scale quick        # the laptop-scale results
"""

import pytest

from fpbench.analysis import claims
from fpbench.analysis.stats import FAIL, PASS


def decide(outcome: claims.ClaimOutcome) -> None:
    name = f"{outcome.claim.key} ({outcome.claim.source}: {outcome.claim.paper_says})"
    if outcome.skipped:
        pytest.skip(f"{name} cannot be decided here: {outcome.skipped}")
    text = f"{name}\n  {outcome.result.summary()}\n  measured: {outcome.measured}"
    print(text)
    if outcome.result.verdict == FAIL:
        pytest.fail(f"does not reproduce: {text}", pytrace=False)
    if outcome.result.verdict != PASS:
        pytest.skip(f"INCONCLUSIVE: {text}")


@pytest.fixture(scope="module")
def outcomes(claim_results) -> dict:
    """Every claim decided at once, so that Holm's adjustment sees the whole family."""
    paper, records = claim_results["paper"]
    decided = claims.evaluate_claims(paper, claims.oracle_frame(records, claim_results["store"]),
                                     claim_results["curl"][0])
    return {o.claim.key: o for o in decided}


def test_c1_table1_gap_shrinks_with_w_r(outcomes):
    decide(outcomes["C1"])


def test_c2_table2_moderate_w_r_improves_ode_and_w_r_10_undoes_it(outcomes):
    decide(outcomes["C2"])


def test_c2b_table2_w_r_10_is_worse_than_none(outcomes):
    decide(outcomes["C2b"])


def test_c3_table3_sde_degrades_with_w_r(outcomes):
    decide(outcomes["C3"])


def test_c4_fig4_residual_trades_off_against_dsm_within_a_target(outcomes):
    decide(outcomes["C4"])


def test_c5_fig5_residual_follows_gap_within_a_cell(outcomes):
    decide(outcomes["C5"])


def test_t1_theorem1_gap_falls_at_least_as_fast_as_the_residual(outcomes):
    decide(outcomes["T1"])


def test_c6_fig1_free_score_networks_have_curl(outcomes):
    decide(outcomes["C6"])


# fpbench's own checks (not the paper's claims; never in the claims' Holm family)

def test_h1_check_potential_models_have_no_curl(outcomes):
    decide(outcomes["H1"])


def test_h2_check_exact_score_has_zero_residual(outcomes):
    decide(outcomes["H2"])


def test_h3_check_exact_score_has_no_gap(outcomes):
    decide(outcomes["H3"])
