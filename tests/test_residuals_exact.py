"""The exact diffused densities solve the Fokker-Planck equations (eqs. 16, 18, 31) to round-off."""

import pytest
import torch

from fpbench.core import operators as ops
from fpbench.core.models import ExactScore
from fpbench.core.residuals import Box, density_fp_residual, log_fp_residual, score_fp_residual
from fpbench.core.sde import make_sde
from fpbench.core.targets import make_target

from .conftest import ALL_PAIRS, gen

N = 300
T0 = 0.05


def _points(target, sde, seed=0):
    g = gen(seed)
    x = Box().sample(N, target.dim, g, dtype=torch.float64)
    t = T0 + (sde.T - T0) * torch.rand(N, generator=g, dtype=torch.float64)
    return x, t


@pytest.mark.parametrize("target_name,sde_name", ALL_PAIRS)
def test_exact_density_has_zero_log_fp_residual(target_name, sde_name):
    target, sde = make_target(target_name), make_sde(sde_name)
    x, t = _points(target, sde)
    r = log_fp_residual(ExactScore(target, sde).potential, sde, x, t)
    assert r.abs().max() <= 1e-8


@pytest.mark.parametrize("target_name,sde_name", ALL_PAIRS)
def test_time_rescaled_density_has_order_one_log_fp_residual(target_name, sde_name):
    target, sde = make_target(target_name), make_sde(sde_name)
    x, t = _points(target, sde, seed=1)
    wrong = lambda xx, tt: target.log_prob(xx, 1.3 * tt, sde)
    r = log_fp_residual(wrong, sde, x, t / 1.3)  # keep 1.3 t inside [T0, T]
    assert r.abs().max() >= 1.0


@pytest.mark.parametrize("target_name,sde_name", ALL_PAIRS)
def test_exact_density_has_zero_density_fp_residual(target_name, sde_name):
    target, sde = make_target(target_name), make_sde(sde_name)
    x, t = _points(target, sde, seed=2)
    r = density_fp_residual(lambda xx, tt: target.log_prob(xx, tt, sde).exp(), sde, x, t)
    assert r.abs().max() <= 1e-8


@pytest.mark.parametrize("target_name,sde_name", ALL_PAIRS)
def test_time_rescaled_density_has_nonzero_density_fp_residual(target_name, sde_name):
    target, sde = make_target(target_name), make_sde(sde_name)
    x, t = _points(target, sde, seed=3)
    wrong = lambda xx, tt: target.log_prob(xx, 1.3 * tt, sde).exp()
    r = density_fp_residual(wrong, sde, x, t / 1.3)
    # The density itself is small far from the data: compare with the size of d_t p.
    p_t = ops.time_derivative(wrong, x, t / 1.3, create_graph=False)
    assert r.abs().max() >= 0.1 * p_t.abs().max()


def _score_fp_scale(score, sde, x, t):
    """Largest of the terms of eq. 32 per point (d_t s, (grad s) f, (grad f) s, g^2 (grad s) s,
    g^2/2 grad div s): the residual, their sum, is round-off relative to it."""
    d = x.shape[-1]
    s = score(x, t).detach()
    s_t = torch.stack([ops.time_derivative(lambda xx, tt, i=i: score(xx, tt)[:, i], x, t, create_graph=False)
                       for i in range(d)], -1)
    jac = ops.jacobian(score, x, t, create_graph=False)
    grad_div = ops.gradient(lambda xx, tt: ops.divergence(score, xx, tt), x, t, create_graph=False)
    g2 = (sde.diffusion(t) ** 2)[:, None]
    terms = [s_t, torch.einsum("nij,nj->ni", jac, sde.drift(x, t)), sde.drift_jacobian_coef(t)[:, None] * s,
             g2 * torch.einsum("nij,nj->ni", jac, s), 0.5 * g2 * grad_div]
    return torch.stack([term.abs().max(-1).values for term in terms]).max(0).values


@pytest.mark.parametrize("target_name,sde_name", ALL_PAIRS)
def test_exact_score_has_zero_score_fp_residual(target_name, sde_name):
    target, sde = make_target(target_name), make_sde(sde_name)
    x, t = _points(target, sde, seed=4)
    score = lambda xx, tt: target.score(xx, tt, sde, create_graph=True)
    r = score_fp_residual(score, sde, x, t).abs().max(-1).values
    scale = _score_fp_scale(score, sde, x, t)
    # Absolute 1e-8 where the terms are O(1); relative 1e-8 where they are large (VE, small t).
    assert (r <= 1e-8 * scale.clamp_min(1.0)).all(), f"worst {r.max():.2e}"


@pytest.mark.parametrize("target_name,sde_name", [("blob", "ou"), ("circles2", "vp"), ("checker", "ve")])
def test_time_rescaled_score_has_order_one_score_fp_residual(target_name, sde_name):
    target, sde = make_target(target_name), make_sde(sde_name)
    x, t = _points(target, sde, seed=5)
    wrong = lambda xx, tt: target.score(xx, 1.3 * tt, sde, create_graph=True)
    r = score_fp_residual(wrong, sde, x, t / 1.3)
    assert r.abs().max() >= 1.0


def test_score_fp_residual_of_a_gradient_field_is_the_gradient_of_the_log_fp_residual():
    # Independent route: eq. 32 for s = grad u against grad_x of eq. 16 for u.
    torch.manual_seed(0)
    from fpbench.core.models import PotentialMLP

    model = PotentialMLP(beta=5.0).double()
    sde = make_sde("ou")
    x, t = _points(make_target("blob"), sde, seed=6)
    rs = score_fp_residual(lambda xx, tt: model.score(xx, tt, create_graph=True), sde, x, t)
    grad_r = ops.gradient(lambda xx, tt: log_fp_residual(model.potential, sde, xx, tt, create_graph=True),
                          x, t, create_graph=False)
    torch.testing.assert_close(rs, grad_r, rtol=1e-9, atol=1e-9)


def test_paper_ou_log_fp_residual_matches_section_4_formula():
    # Section 4 writes the OU residual as u_t - 2 - x.grad u - |grad u|^2/2 - Delta u/2.
    torch.manual_seed(0)
    from fpbench.core.models import PotentialMLP

    model = PotentialMLP(beta=5.0).double()
    sde = make_sde("ou")
    x, t = _points(make_target("blob"), sde, seed=7)
    _, u_t, grad_u, lap = ops.derivatives(model.potential, x, t, create_graph=False)
    expected = u_t - 2 - (x * grad_u).sum(-1) - 0.5 * (grad_u**2).sum(-1) - 0.5 * lap
    torch.testing.assert_close(log_fp_residual(model.potential, sde, x, t), expected)
