"""The error-injection lab's claims L1-L4 (fpbench.analysis.lab_claims), one test each, on exact scores with
planted errors (no training: ``fpbench lab`` measures the same models and writes reports/lab.md).

A PASS passes, a FAIL fails with the statistic, p-value and effect, an INCONCLUSIVE or undecidable claim is
skipped with its reason; verdicts use p-values adjusted by Holm's method across the lab's claims.

    pytest suites/paper/test_lab_claims.py -rs --fpbench-scale quick
"""

import pytest

from fpbench.analysis import lab_claims

from .test_claims import decide


@pytest.fixture(scope="module")
def lab_outcomes(lab_results) -> dict:
    pulse = lab_results["lab"]["families"]["pulse"]
    return {o.claim.key: o for o in lab_claims.evaluate_lab(lab_results["frame"], pulse["late"], pulse["early"])}


def test_l1_theorem1_gap_scales_at_least_linearly_in_residual(lab_outcomes):
    decide(lab_outcomes["L1"])


def test_l1_one_constant_for_linear_bound(lab_outcomes):
    decide(lab_outcomes["L1-lin"])


def test_l1_one_constant_for_square_root_bound(lab_outcomes):
    decide(lab_outcomes["L1-sqrt"])


def test_l2_only_gradient_part_of_score_error_matters(lab_outcomes):
    decide(lab_outcomes["L2"])


def test_l3_late_errors_hurt_sde_early_errors_hurt_ode(lab_outcomes):
    decide(lab_outcomes["L3"])


def test_l4_small_gap_needs_small_score_residual(lab_outcomes):
    decide(lab_outcomes["L4"])


def test_l4_score_residual_orders_gradient_gaps(lab_outcomes):
    decide(lab_outcomes["L4-suff"])
