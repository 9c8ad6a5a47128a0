"""DSM loss (eq. 5): ranking of exact vs perturbed scores, closed form for a Gaussian target."""

import math

import pytest
import torch
from scipy import integrate

from fpbench.core.losses import dsm_batch, dsm_loss, dsm_loss_terms, sample_times
from fpbench.core.models import ExactScore
from fpbench.core.sde import make_sde
from fpbench.core.targets import GaussianMixture, make_target

from .conftest import gen


def test_dsm_ranks_the_exact_score_below_a_perturbed_one():
    target, sde = make_target("circles2"), make_sde("ou")
    exact = ExactScore(target, sde)
    batch = dsm_batch(target.sample(20_000, gen(0), dtype=torch.float64), sde, "beta12", 1e-2, gen(1))
    perturbed = lambda x, t: exact.score(x, t) * 1.1
    assert dsm_loss(exact.score, sde, batch) < dsm_loss(perturbed, sde, batch)


@pytest.mark.parametrize("sde_name,weight,law", [("ou", "likelihood", "beta12"), ("vp", "likelihood", "uniform"),
                                                  ("ve", "sigma2", "uniform")])
def test_dsm_of_exact_score_equals_closed_form_for_a_gaussian(sde_name, weight, law):
    # p0 = N(0, v0 I_d): E||grad log p(x_t|x_0)||^2 = d / sigma^2 and E||s*||^2 = d / (m^2 v0 + sigma^2), so
    # L_DSM(s*) = E_t lambda(t) d (1/sigma^2 - 1/(m^2 v0 + sigma^2)).
    d, v0, t_eps = 3, 0.7, 0.05
    sde = make_sde(sde_name)
    target = GaussianMixture(torch.zeros(1, d), v0)
    exact = ExactScore(target, sde)
    batch = dsm_batch(target.sample(200_000, gen(2), dtype=torch.float64), sde, law, t_eps, gen(3))
    terms = dsm_loss_terms(exact.score, sde, batch, weight)

    def integrand(t):
        tt = torch.tensor([t], dtype=torch.float64)
        m, s = (v.item() for v in sde.marginal(tt))
        lam = sde.diffusion(tt).item() ** 2 if weight == "likelihood" else s**2
        return lam * d * (1 / s**2 - 1 / (m**2 * v0 + s**2))

    T = sde.T
    if law == "uniform":
        closed = integrate.quad(lambda t: integrand(t) / (T - t_eps), t_eps, T, limit=200)[0]
    else:  # t = T Beta(1, 2) + t_eps: density 2 (1 - (t - t_eps)/T) / T on [t_eps, T + t_eps]
        closed = integrate.quad(lambda t: integrand(t) * 2 * (1 - (t - t_eps) / T) / T, t_eps, T + t_eps,
                                limit=200)[0]
    se = terms.std().item() / math.sqrt(len(terms))
    assert abs(terms.mean().item() - closed) <= 4 * se


def test_constant_score_offset_adds_its_weighted_square():
    # L(s* + c) = L(s*) + E[lambda] ||c||^2 exactly in expectation; per batch: cross term has mean 0.
    target, sde = make_target("blob"), make_sde("ou")
    exact = ExactScore(target, sde)
    batch = dsm_batch(target.sample(50_000, gen(4), dtype=torch.float64), sde, "uniform", 0.05, gen(5))
    c = torch.tensor([0.3, -0.4], dtype=torch.float64)
    diff = dsm_loss_terms(lambda x, t: exact.score(x, t) + c, sde, batch) - dsm_loss_terms(exact.score, sde, batch)
    se = diff.std().item() / math.sqrt(len(diff))
    assert abs(diff.mean().item() - 0.25) <= 4 * se


def test_beta12_time_law_has_density_two_times_one_minus_t():
    t = sample_times(200_000, 10.0, "beta12", 0.0, gen(6), torch.float64)
    assert t.min() >= 0 and t.max() <= 10
    assert t.mean().item() == pytest.approx(10 / 3, rel=0.01)  # mean of Beta(1, 2) is 1/3


def test_unknown_weighting_and_time_law_are_clear_errors():
    sde = make_sde("ou")
    with pytest.raises(ValueError, match="unknown time law"):
        sample_times(3, 1.0, "lognormal")
    batch = dsm_batch(torch.zeros(4, 2), sde, generator=gen(7))
    with pytest.raises(ValueError, match="unknown weighting"):
        dsm_loss(lambda x, t: x, sde, batch, weight="fisher")
