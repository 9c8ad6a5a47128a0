"""Planted score errors (fpbench.core.planted) against closed forms and independent computations."""

import math

import pytest
import torch
from scipy import integrate

from fpbench.core import operators as ops
from fpbench.core import planted as pl
from fpbench.core.models import ExactScore
from fpbench.core.residuals import log_fp_residual_mc
from fpbench.core.sde import OU
from fpbench.core.targets import make_target

SDE = OU()


def _points(n, d, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = 2.0 * torch.randn(n, d, generator=gen, dtype=torch.float64)
    t = 0.05 + 2.0 * torch.rand(n, generator=gen, dtype=torch.float64)
    return x, t


def _p_times(field, target):
    """x -> p(x, t) * field(x, t): the probability flux of a score error."""
    return lambda x, t: target.log_prob(x, t, SDE).exp()[:, None] * field(x, t)


@pytest.mark.parametrize("name, params", [("blob", {}), ("checker", {}), ("gmm", {"dim": 3}), ("gmm", {"dim": 4})])
def test_solenoidal_error_carries_no_probability_flux(name, params):
    """div(p A grad p) = 0 to round-off (autograd, float64), while the unrotated twin's flux
    div(p grad p) is of the size of its terms: the test can tell the two apart."""
    target = make_target(name, **params)
    x, t = _points(200, target.dim)
    solenoidal = pl.SolenoidalError(target, SDE, 1.0)
    twin = pl.GradientError(target, SDE, 1.0, pl.DensityTwin(target, SDE))
    div_sol = ops.divergence(_p_times(lambda xx, tt: solenoidal.error(xx, tt, create_graph=True), target), x, t)
    div_twin = ops.divergence(_p_times(lambda xx, tt: twin.error(xx, tt, create_graph=True), target), x, t)
    scale = div_twin.abs().max()
    assert scale > 1e-6
    assert div_sol.abs().max() <= 1e-12 * scale


def test_solenoidal_curl_is_eps_laplacian_of_density():
    """In 2D the curl of s* + eps J grad p is eps Delta p (the exact score's curl is zero)."""
    target, eps = make_target("blob"), 0.7
    x, t = _points(300, 2, seed=1)
    model = pl.SolenoidalError(target, SDE, eps)
    curl = ops.curl(lambda xx, tt: model.score(xx, tt, create_graph=True), x, t)
    lap_p = ops.laplacian(lambda xx, tt: target.log_prob(xx, tt, SDE).exp(), x, t)
    torch.testing.assert_close(curl, eps * lap_p, rtol=1e-9, atol=1e-12)


def test_gradient_error_adds_eps_grad_psi_in_closed_form():
    """For the Gaussian bump psi = b(t) exp(-|x - c|^2 / 2r^2): grad psi = -psi (x - c) / r^2."""
    target, eps, centre, radius = make_target("blob"), 0.3, (0.5, -0.2), 0.8
    pulse = pl.Pulse(1.0, 0.7)
    model = pl.GradientError(target, SDE, eps, pl.Bump("gauss", centre, radius, pulse))
    x, t = _points(300, 2, seed=2)
    c = torch.tensor(centre, dtype=torch.float64)
    psi = pulse(t) * torch.exp(-((x - c) ** 2).sum(-1) / (2 * radius**2))
    expected = target.score(x, t, SDE) - eps * psi[:, None] * (x - c) / radius**2
    torch.testing.assert_close(model.score(x, t), expected, rtol=1e-10, atol=1e-12)


def test_gradient_residual_vanishes_quadratically_and_equals_the_exact_at_zero():
    """R~ (eq. 20) of log p + eps psi: at eps = 0 exactly the exact density's R~ on the same points; as eps
    halves it falls by 4 (r = eps L psi + O(eps^2), so R~ = eps^2 E[(L psi)^2] + O(eps^3))."""
    target = make_target("blob")
    bump = pl.Bump("wave", (0.5, 0.5), 0.75, pl.Pulse(1.0, 0.7))

    def residual(model):
        gen = torch.Generator().manual_seed(3)
        return float(log_fp_residual_mc(model.potential, SDE, 2, 4000, generator=gen, dtype=torch.float64))

    exact = residual(ExactScore(target, SDE))
    assert residual(pl.GradientError(target, SDE, 0.0, bump)) == exact
    values = [residual(pl.GradientError(target, SDE, eps, bump)) for eps in (0.04, 0.02, 0.01)]
    assert values[0] > values[1] > values[2] > 1e6 * max(exact, 1e-300)
    assert values[0] / values[1] == pytest.approx(4.0, rel=0.05)
    assert values[1] / values[2] == pytest.approx(4.0, rel=0.03)


@pytest.mark.parametrize("centre, width", [(0.02, 0.35), (1.0, 0.35), (2.0, 0.7)])
def test_unit_mass_pulse_integrates_to_one(centre, width):
    pulse = pl.Pulse(centre, width, unit_mass=True)
    value, _ = integrate.quad(lambda s: float(pulse(torch.tensor(math.exp(s), dtype=torch.float64))) * math.exp(s),
                              math.log(centre) - 12 * width, math.log(centre) + 12 * width)
    assert value == pytest.approx(1.0, rel=1e-8)


@pytest.mark.parametrize("dim", [2, 3, 5])
def test_antisymmetric_matrix_is_antisymmetric_and_rotates_pairs(dim):
    a = pl.antisymmetric(dim)
    torch.testing.assert_close(a.T, -a)
    assert int((a != 0).sum()) == 2 * (dim // 2)
    if dim == 2:
        torch.testing.assert_close(a @ torch.tensor([1.0, 0.0], dtype=torch.float64),
                                   torch.tensor([0.0, 1.0], dtype=torch.float64))


def test_unknown_bump_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown bump shape 'ring'; known: gauss, dipole, wave"):
        pl.Bump("ring", (0.0, 0.0), 1.0, pl.Pulse(1.0, 0.5))


def test_planted_errors_on_the_checkerboard_at_t_zero_are_zero_not_an_error():
    """At t = 0 the checkerboard's density is piecewise constant (no autograd graph): grad p = 0, so the
    solenoidal error and the twin's are zero there (the adaptive reference ODE solver evaluates t = 0)."""
    target = make_target("checker")
    x = torch.tensor([[0.1, 0.2], [5.0, 5.0]], dtype=torch.float64)
    t = torch.zeros(2, dtype=torch.float64)
    assert torch.equal(pl.SolenoidalError(target, SDE, 2.0).error(x, t), torch.zeros(2, 2, dtype=torch.float64))
    twin = pl.GradientError(target, SDE, 2.0, pl.DensityTwin(target, SDE))
    assert torch.equal(twin.score(x, t), target.score(x, t, SDE))
