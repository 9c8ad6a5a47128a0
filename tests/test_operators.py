"""Operators against central finite differences (float64), curl of potential vs score models."""

import pytest
import torch

from fpbench.core import operators as ops
from fpbench.core.models import PotentialMLP, ScoreMLP

from .conftest import gen

H = 1e-5  # central differences: error O(H^2) ~ 1e-10 relative, round-off O(eps/H) ~ 1e-11


def _models():
    torch.manual_seed(0)
    # beta = 5 keeps the softplus smooth on the finite-difference scale H.
    return PotentialMLP(dim=3, beta=5.0).double(), ScoreMLP(dim=3, beta=5.0).double()


def _points(n=20, d=3):
    g = gen(1)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.rand(n, generator=g, dtype=torch.float64)


def _fd(fn, x, j):
    e = torch.zeros_like(x)
    e[:, j] = H
    return (fn(x + e) - fn(x - e)) / (2 * H)


def test_gradient_and_time_derivative_match_finite_differences():
    phi, _ = _models()
    x, t = _points()
    with torch.no_grad():
        fd = torch.stack([_fd(lambda z: phi.potential(z, t), x, j) for j in range(3)], -1)
        fd_t = (phi.potential(x, t + H) - phi.potential(x, t - H)) / (2 * H)
    torch.testing.assert_close(ops.gradient(phi.potential, x, t, create_graph=False), fd, rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(ops.time_derivative(phi.potential, x, t, create_graph=False), fd_t, rtol=1e-7, atol=1e-8)


def test_laplacian_matches_finite_differences_of_the_gradient():
    phi, _ = _models()
    x, t = _points()
    grad = lambda z: ops.gradient(phi.potential, z, t, create_graph=False)
    fd = sum(_fd(grad, x, j)[:, j] for j in range(3))
    torch.testing.assert_close(ops.laplacian(phi.potential, x, t, create_graph=False), fd, rtol=1e-6, atol=1e-7)


def test_jacobian_and_divergence_of_a_score_mlp_match_finite_differences():
    _, s = _models()
    x, t = _points()
    with torch.no_grad():
        fd = torch.stack([_fd(lambda z: s.score(z, t), x, j) for j in range(3)], -1)  # (n, i, j)
    jac = ops.jacobian(s.score, x, t, create_graph=False)
    torch.testing.assert_close(jac, fd, rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(ops.divergence(s.score, x, t, create_graph=False),
                               torch.diagonal(fd, dim1=1, dim2=2).sum(-1), rtol=1e-7, atol=1e-8)


def test_derivatives_bundle_agrees_with_the_single_operators():
    phi, _ = _models()
    x, t = _points()
    value, u_t, grad, lap = ops.derivatives(phi.potential, x, t, create_graph=False)
    torch.testing.assert_close(lap, ops.laplacian(phi.potential, x, t, create_graph=False))
    torch.testing.assert_close(grad, ops.gradient(phi.potential, x, t, create_graph=False))


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-4)])
def test_curl_of_a_potential_mlp_is_zero(dtype, tol):
    torch.manual_seed(0)
    for d in (2, 4):
        phi = PotentialMLP(dim=d).to(dtype)
        g = gen(2)
        x, t = torch.randn(50, d, generator=g, dtype=dtype), torch.rand(50, generator=g, dtype=dtype)
        score = lambda z, tt: phi.score(z, tt, create_graph=True)
        scale = ops.jacobian(score, x, t, create_graph=False).abs().amax((1, 2))
        assert (ops.curl(score, x, t).abs() <= tol * scale.clamp_min(1)).all()


def test_curl_of_a_random_score_mlp_is_not_zero():
    torch.manual_seed(0)
    for d in (2, 4):
        s = ScoreMLP(dim=d, beta=1.0).double()
        g = gen(3)
        x, t = torch.randn(50, d, generator=g, dtype=torch.float64), torch.rand(50, generator=g, dtype=torch.float64)
        assert ops.curl(s.score, x, t).abs().mean() > 1e-3


def test_curl_in_2d_is_d1_s2_minus_d2_s1():
    # s = (-y, x) has curl 2 everywhere; s = grad(x^2 y) has curl 0.
    x = torch.randn(10, 2, dtype=torch.float64)
    t = torch.zeros(10, dtype=torch.float64)
    rot = lambda z, tt: torch.stack([-z[:, 1], z[:, 0]], -1)
    torch.testing.assert_close(ops.curl(rot, x, t), torch.full((10,), 2.0, dtype=torch.float64))
    grad_field = lambda z, tt: torch.stack([2 * z[:, 0] * z[:, 1], z[:, 0] ** 2], -1)
    torch.testing.assert_close(ops.curl(grad_field, x, t), torch.zeros(10, dtype=torch.float64))


def test_hutchinson_estimators_are_unbiased():
    phi, s = _models()
    x, t = _points(n=5)
    n_probes = 4000
    # Rademacher: Var(v^T A v) = 2 sum_{i != j} A_ij^2 per probe; allow 5 standard errors.
    hess = ops.jacobian(lambda z, tt: ops.gradient(phi.potential, z, tt), x, t, create_graph=False)
    off = (hess**2).sum((1, 2)) - (torch.diagonal(hess, dim1=1, dim2=2) ** 2).sum(-1)
    se = torch.sqrt(2 * off / n_probes)
    lap = ops.laplacian(phi.potential, x, t, create_graph=False)
    est = ops.laplacian_hutchinson(phi.potential, x, t, n_probes=n_probes, generator=gen(4), create_graph=False)
    assert ((est - lap).abs() <= 5 * se + 1e-12).all()
    jac = ops.jacobian(s.score, x, t, create_graph=False)
    off_j = (jac**2).sum((1, 2)) - (torch.diagonal(jac, dim1=1, dim2=2) ** 2).sum(-1)
    div_est = ops.divergence_hutchinson(s.score, x, t, n_probes=n_probes, generator=gen(5), create_graph=False)
    div = ops.divergence(s.score, x, t, create_graph=False)
    assert ((div_est - div).abs() <= 5 * torch.sqrt(2 * off_j / n_probes) + 1e-12).all()


def test_hutchinson_curl_norm_approaches_the_exact_one():
    _, s = _models()
    x, t = _points(n=5)
    exact = ops.curl(s.score, x, t)
    est = ops.curl_norm_hutchinson(s.score, x, t, n_probes=4000, generator=gen(6))
    torch.testing.assert_close(est, exact.abs(), rtol=0.05, atol=1e-6)
