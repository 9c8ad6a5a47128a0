"""The paper's claims, one test each (fpbench.claims has the statistics and the gates).

A PASS passes; a FAIL fails with the statistic, p-value and effect (the claim does not reproduce on
these results); a claim the data cannot decide, or an INCONCLUSIVE test, is skipped with its reason.

    pytest suites/paper -rs                              # smoke scale (CI)
    pytest suites/paper -rs --fpbench-scale quick        # the laptop-scale results
"""

import pytest

from fpbench import claims
from fpbench.stats import FAIL, PASS


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
def paper(claim_results):
    return claim_results["paper"][0]


def test_c1_table1_gap_shrinks_with_w_r(paper):
    decide(claims.claim_c1(paper))


def test_c2_table2_moderate_w_r_improves_ode(paper):
    decide(claims.claim_c2(paper))


def test_c3_table3_sde_degrades_with_w_r(paper):
    decide(claims.claim_c3(paper))


def test_c4_fig4_residual_trades_off_against_dsm(paper):
    decide(claims.claim_c4(paper))


def test_c5_fig5_theorem1_residual_bounds_gap(paper):
    decide(claims.claim_c5(paper))


def test_c6_fig1_free_score_networks_have_curl(claim_results, paper):
    decide(claims.claim_c6(paper, claim_results["curl"][0]))


def test_c7a_exact_score_has_zero_residual(paper):
    decide(claims.claim_c7a(sorted(paper["target"].unique())))


def test_c7b_exact_score_has_no_gap(claim_results):
    decide(claims.claim_c7b(claims.oracle_frame(claim_results["paper"][1], claim_results["store"])))
