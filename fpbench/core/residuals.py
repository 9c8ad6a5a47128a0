"""Fokker-Planck residuals of the paper: density (eq. 18), log-density (eq. 20), score (eq. 32).

Each has a pointwise function (for plots and tests) and a Monte Carlo estimate over
Omega x [t0, T] with (x, s) uniform, which is what V(T - t)^{-1} int int (.)^2 means:

    R(t0) = E_{s ~ U(t0, T), x ~ U(Omega)} [ residual(x, s)^2 ].

Omega is a box (``Box``); the default is the authors' [-3.5, 3.5]^2 with t0 = 1e-5
(REFERENCE.md), overridable everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import operators as ops
from .sde import rand

PAPER_EDGES = (-3.5, 3.5)  # the authors' box [-3.5, 3.5]^d (REFERENCE.md): Omega of eq. 20 and the W2² grid's box
PAPER_T0 = 1e-5  # the authors' smallest t: of the residuals' time range and of the DSM time law (REFERENCE.md)


@dataclass(frozen=True)
class Box:
    """Omega = [low, high]^d, the domain of the residuals."""

    low: float = PAPER_EDGES[0]
    high: float = PAPER_EDGES[1]

    def sample(self, n: int, d: int, generator=None, dtype=None, device=None) -> torch.Tensor:
        u = rand((n, d), generator, dtype, device)
        return self.low + (self.high - self.low) * u


PAPER_BOX = Box(*PAPER_EDGES)  # the authors' collocation box


def log_fp_residual(potential, sde, x, t, create_graph: bool = False) -> torch.Tensor:
    """Pointwise log-FP residual (eq. 16, integrand of eq. 20), shape (n,):

        r(x, t) = d_t u + div f + grad u . f - g^2/2 ||grad u||^2 - g^2/2 Delta u,

    for u = ``potential(x, t)`` (any additive constant in x-independent log Z_t changes only d_t u;
    the paper's phi_theta is such an unnormalised u). For the OU process of section 4 this is
    d_t u - 2 - x . grad u - ||grad u||^2 / 2 - Delta u / 2 (d = 2).
    x: (n, d); t: (n,).
    """
    _, u_t, grad_u, lap_u = ops.derivatives(potential, x, t, create_graph=create_graph)
    return log_fp_residual_from(u_t, grad_u, lap_u, sde, x, t)


def log_fp_residual_from(u_t, grad_u, lap_u, sde, x, t) -> torch.Tensor:
    """Eq. 16 from the derivatives of u at (x, t) (rows: x (n, d), t (n,)), however they were computed."""
    f = sde.drift(x, t)
    g2 = sde.diffusion(t) ** 2
    return (u_t + sde.div_drift(x, t) + (grad_u * f).sum(-1)
            - 0.5 * g2 * (grad_u**2).sum(-1) - 0.5 * g2 * lap_u)


def density_fp_residual(density, sde, x, t, create_graph: bool = False) -> torch.Tensor:
    """Pointwise density FP residual (eq. 14, integrand of eq. 18), shape (n,):

        r(x, t) = d_t p + div(f p) - g^2/2 Delta p,   div(f p) = p div f + f . grad p,

    for p = ``density(x, t)``.
    """
    p, p_t, grad_p, lap_p = ops.derivatives(density, x, t, create_graph=create_graph)
    g2 = sde.diffusion(t) ** 2
    div_fp = p * sde.div_drift(x, t) + (sde.drift(x, t) * grad_p).sum(-1)
    return p_t + div_fp - 0.5 * g2 * lap_p


def score_fp_residual(score, sde, x, t, create_graph: bool = False) -> torch.Tensor:
    """Pointwise score-FP residual (eq. 32 integrand), shape (n, d):

        r = d_t s + grad(div f) + (grad s) f + (grad f) s - g^2 (grad s) s - g^2/2 grad(div s),

    with (grad s)_ij = d s_i / d x_j (so (grad s) f is the derivative of s along f). For the
    linear SDEs grad(div f) = 0 and grad f = a(t) I. For a gradient field s = grad u this is
    the x-gradient of the log-FP residual (eq. 16).
    """
    with torch.enable_grad():
        x = x if x.requires_grad else x.detach().requires_grad_(True)
        t = t if t.requires_grad else t.detach().requires_grad_(True)
        s = score(x, t)
        s_t = torch.stack([ops.grad_of_sum(s[:, i], t, True) for i in range(s.shape[-1])], -1)
        jac = torch.stack([ops.grad_of_sum(s[:, i], x, True) for i in range(s.shape[-1])], 1)
        div_s = torch.diagonal(jac, dim1=1, dim2=2).sum(-1)
        grad_div_s = ops.grad_of_sum(div_s, x, create_graph)
    out = score_fp_residual_from(s, s_t, jac, grad_div_s, sde, x, t)
    return out if create_graph else out.detach()


def score_fp_residual_from(s, s_t, jac, grad_div_s, sde, x, t) -> torch.Tensor:
    """Eq. 32 from s, d_t s, J_ij = ds_i/dx_j (n, d, d) and grad div s at (x, t), however computed."""
    f = sde.drift(x, t)
    a = sde.drift_jacobian_coef(t)[:, None]
    g2 = (sde.diffusion(t) ** 2)[:, None]
    jf = torch.einsum("nij,nj->ni", jac, f)
    js = torch.einsum("nij,nj->ni", jac, s)
    return s_t + jf + a * s - g2 * js - 0.5 * g2 * grad_div_s


def collocation_points(n, d, box: Box, t0: float, T: float, generator, dtype, device):
    x = box.sample(n, d, generator, dtype, device)
    t = t0 + (T - t0) * rand(n, generator, dtype, device)
    return x, t


def log_fp_residual_mc(potential, sde, d: int, n: int = 50_000, box: Box = PAPER_BOX, t0: float = PAPER_T0,
                       generator=None, dtype=torch.float32, device=None, create_graph: bool = False):
    """Monte Carlo estimate of R~(theta, u, t0) (eq. 20): mean of r^2 over U(Omega) x U(t0, T)."""
    x, t = collocation_points(n, d, box, t0, sde.T, generator, dtype, device)
    return log_fp_residual(potential, sde, x, t, create_graph=create_graph).pow(2).mean()


def score_fp_residual_mc(score, sde, d: int, n: int = 50_000, box: Box = PAPER_BOX, t0: float = PAPER_T0,
                         generator=None, dtype=torch.float32, device=None, create_graph: bool = False):
    """Monte Carlo estimate of R^s(theta, s, t0) (eq. 32): mean of ||r||^2 over U(Omega) x U(t0, T)."""
    x, t = collocation_points(n, d, box, t0, sde.T, generator, dtype, device)
    return score_fp_residual(score, sde, x, t, create_graph=create_graph).pow(2).sum(-1).mean()


def density_fp_residual_mc(density, sde, d: int, n: int = 50_000, box: Box = PAPER_BOX, t0: float = PAPER_T0,
                           generator=None, dtype=torch.float32, device=None, create_graph: bool = False):
    """Monte Carlo estimate of R(theta, p, t0) (eq. 18): mean of r^2 over U(Omega) x U(t0, T)."""
    x, t = collocation_points(n, d, box, t0, sde.T, generator, dtype, device)
    return density_fp_residual(density, sde, x, t, create_graph=create_graph).pow(2).mean()
