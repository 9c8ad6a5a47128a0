"""SDE marginals against the moment ODEs solved numerically; prior densities are normalised."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from fpbench.core.sde import SDES, make_sde

from .conftest import gen


@pytest.mark.parametrize("name", list(SDES))
def test_marginal_solves_the_moment_odes(name):
    # For dx = a(t) x dt + g dW: m' = a m, v' = 2 a v + g^2, m(0) = 1, v(0) = 0.
    sde = make_sde(name)
    a = lambda t: sde.drift_coef(torch.tensor(t, dtype=torch.float64)).item()
    g2 = lambda t: sde.diffusion(torch.tensor(t, dtype=torch.float64)).item() ** 2
    ts = np.linspace(0, sde.T, 7)[1:]
    sol = solve_ivp(lambda t, y: [a(t) * y[0], 2 * a(t) * y[1] + g2(t)], (0, sde.T), [1.0, 0.0],
                    t_eval=ts, rtol=1e-11, atol=1e-13)
    m, s = sde.marginal(torch.tensor(ts, dtype=torch.float64))
    np.testing.assert_allclose(m.numpy(), sol.y[0], rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(s.numpy() ** 2, sol.y[1], rtol=1e-7, atol=1e-10)


def test_paper_ou_process():
    sde = make_sde("ou")
    t = torch.tensor([0.5], dtype=torch.float64)
    m, s = sde.marginal(t)
    assert m.item() == pytest.approx(math.exp(-0.5))
    assert s.item() ** 2 == pytest.approx(0.5 * (1 - math.exp(-1)))
    x = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    torch.testing.assert_close(sde.drift(x, t), -x)
    assert sde.T == 10 and sde.prior_var == 0.5


@pytest.mark.parametrize("name", list(SDES))
def test_prior_log_prob_is_a_normalised_density_of_its_samples(name):
    sde = make_sde(name)
    x = sde.prior_sample(200_000, 2, gen(0), dtype=torch.float64)
    assert x.var(0).numpy() == pytest.approx([sde.prior_var] * 2, rel=0.02)
    h, lim = 0.05 * math.sqrt(sde.prior_var), 7 * math.sqrt(sde.prior_var)
    axis = torch.arange(-lim, lim, h, dtype=torch.float64) + h / 2
    mass = sde.prior_log_prob(torch.cartesian_prod(axis, axis)).exp().sum() * h * h
    assert mass.item() == pytest.approx(1.0, abs=1e-6)


def test_unknown_sde_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown SDE 'cld'"):
        make_sde("cld")
