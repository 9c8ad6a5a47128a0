"""Spurious modes (fpbench.core.modes) against closed forms: the exact density has none, a mixture
with a planted third component has exactly one where it was planted, and the off-support mass of a
known mixture matches an independent quadrature of its components."""

import math

import numpy as np
import torch

from fpbench.core.modes import ModeSettings, compare_modes, local_maxima
from fpbench.core.sde import make_sde
from fpbench.core.targets import DENSITY_TARGETS, GaussianMixture, make_target

SDE = make_sde("ou")


def _log_prob(target):
    return lambda x, t: target.log_prob(x, t, SDE)


def test_local_maxima_of_a_known_array():
    a = np.zeros((5, 5))
    a[1, 1], a[3, 4], a[3, 3] = 1.0, 2.0, 1.5  # (3, 3) is next to the larger (3, 4): not a maximum
    assert sorted(map(tuple, local_maxima(a, 1e-6))) == [(1, 1), (3, 4)]
    assert [tuple(i) for i in local_maxima(a, 0.5)] == [(3, 4)]  # exp(1 - 2) < 0.5 of the largest


def test_the_exact_density_has_no_spurious_mode_on_any_target():
    for name in DENSITY_TARGETS:
        target = make_target(name)
        if target.dim != 2:
            continue
        out = compare_modes(_log_prob(target), _log_prob(target), dtype=torch.float64)
        assert out["modes_spurious"] == 0 and out["modes_missing"] == 0, name
        assert out["offsupport_mass"] == out["offsupport_mass_exact"] < 1e-3, name


def test_two_gaussians_have_two_modes_and_a_planted_third_is_found_where_planted():
    target = make_target("twogauss")
    exact = compare_modes(_log_prob(target), _log_prob(target), dtype=torch.float64)
    assert exact["modes_exact"] == 2
    s = ModeSettings()
    half = target.params["separation"] / 2
    planted = GaussianMixture([[-half, 0.0], [half, 0.0], [0.0, 0.0]], target.params["std"] ** 2,
                              weights=[0.45, 0.45, 0.1])
    out = compare_modes(_log_prob(planted), _log_prob(target), s, dtype=torch.float64)
    assert out["modes_model"] == 3 and out["modes_spurious"] == 1 and out["modes_missing"] == 0
    # the third component's mass where p_t is negligible: at t = 0.01 the middle component is
    # N(0, m^2 std^2 + sigma^2); its mass inside the off-support region is nearly all of its 0.1
    assert 0.05 < out["offsupport_mass"] <= 0.1 + exact["offsupport_mass_exact"]


def test_off_support_mass_of_a_shifted_mixture_matches_an_independent_quadrature():
    """A model that is the target moved sideways by 1: its mass where p_t < support x max, against the
    same integral done with scipy on a finer grid."""
    from scipy.stats import multivariate_normal

    target, s = make_target("twogauss"), ModeSettings()
    half, std = target.params["separation"] / 2, target.params["std"]
    shifted = GaussianMixture([[-half, 1.0], [half, 1.0]], std**2)
    out = compare_modes(_log_prob(shifted), _log_prob(target), s, dtype=torch.float64)
    m, sigma = (v.item() for v in SDE.marginal(torch.tensor([s.t], dtype=torch.float64)))
    var = m**2 * std**2 + sigma**2
    axis = np.linspace(s.low, s.high, s.nodes)
    xx, yy = np.meshgrid(axis, axis, indexing="ij")
    pts = np.stack([xx.ravel(), yy.ravel()], 1)

    def mix(dy):
        return sum(0.5 * multivariate_normal([c * m, dy * m], var * np.eye(2)).pdf(pts) for c in (-half, half))

    p, q = mix(0.0), mix(1.0)
    off = p < s.support * p.max()
    assert math.isclose(out["offsupport_mass"], q[off].sum() / q.sum(), rel_tol=1e-6)
    assert out["modes_spurious"] == 2  # both moved modes are 1 > radius from the true ones


def test_cases_measure_modes_of_potential_models_only():
    """The pipeline's hook: the exact score (a potential) has the exact's modes, a free score model none."""
    from fpbench.core.models import ExactScore, ScoreMLP
    from fpbench.run.evaluate import mode_diagnostics

    target = make_target("twogauss")
    out = mode_diagnostics(ExactScore(target, SDE), target, SDE, torch.float64, None)
    assert (out["modes_model"], out["modes_spurious"], out["modes_missing"]) == (2, 0, 0)
    assert mode_diagnostics(ScoreMLP(), target, SDE, torch.float32, None) == {}
    assert mode_diagnostics(ExactScore(make_target("gmm"), SDE), make_target("gmm"), SDE, torch.float64, None) == {}
