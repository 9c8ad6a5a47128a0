"""Planted score errors: the exact score s* = grad log p(x, t) of a target, plus an error of known form
and size ``eps``. Every one is a model (``score(x, t)``, and ``potential(x, t)`` for gradient errors),
usable by every sampler, residual and metric. With no training at all, they isolate how an error of
a given kind moves p_ODE, p_SDE and their gap (the error-injection lab, ``fpbench.run.lab``).

- ``GradientError``: potential phi = log p + eps psi(x, t), score s* + eps grad psi. A potential model,
  so R~ (eq. 20) is computed exactly as for a trained one. Two sources of psi:
  - ``Bump``: psi = b(t) psi0(x), a shape psi0 localised around a centre (``SHAPES``) times a
    ``Pulse`` b(t) localised in t (late in generation: t near 0; early: t near T);
  - ``DensityTwin``: psi = p(x, t), so eps grad p: the gradient twin of the solenoidal error below,
    the same size |eps grad p| at every (x, t).
- ``SolenoidalError``: s = s* + eps A grad p(x, t), A a constant antisymmetric matrix (in 2D the 90
  degree rotation J). div(p A grad p) = sum_ij A_ij (d_i p d_j p + p d_ij p) = 0, since A is
  antisymmetric and both bracketed terms are symmetric in (i, j). So p satisfies the Fokker-Planck
  equations of the probability-flow ODE (eq. 10) and the reverse SDE (eq. 7) with this score exactly
  as with s*: in continuous time neither sampler's marginals move, however large eps. Yet the score
  error, the curl (eps Delta p in 2D) and R^s (eq. 32) are not zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from . import operators as ops
from .errors import FpbenchError


@dataclass(frozen=True)
class Pulse:
    """b(t) = exp(-log(t / centre)^2 / (2 width^2)): a bump in log t around ``centre`` (peak 1). With
    ``unit_mass`` it is divided by its integral over t > 0, centre * width * sqrt(2 pi) * e^{width^2/2},
    so that int b dt = 1 whatever the centre (the error's total push is the same at every position)."""

    centre: float
    width: float
    unit_mass: bool = False

    @property
    def mass(self) -> float:
        return self.centre * self.width * math.sqrt(2 * math.pi) * math.exp(self.width**2 / 2)

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        log_ratio = torch.log(t.clamp_min(torch.finfo(t.dtype).tiny) / self.centre)
        b = torch.exp(-(log_ratio**2) / (2 * self.width**2))
        return b / self.mass if self.unit_mass else b


def _gauss(z: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * (z**2).sum(-1))


# psi0 of z = (x - centre) / radius: a bump, a shift (odd in z_1) and a ripple (cos of 2 z_1).
SHAPES = {
    "gauss": _gauss,
    "dipole": lambda z: z[..., 0] * _gauss(z),
    "wave": lambda z: torch.cos(2.0 * z[..., 0]) * _gauss(z),
}


@dataclass(frozen=True)
class Bump:
    """psi(x, t) = b(t) psi0((x - centre) / radius), psi0 one of ``SHAPES``."""

    shape: str
    centre: tuple
    radius: float
    pulse: Pulse

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise FpbenchError(f"unknown bump shape {self.shape!r}; known: {', '.join(SHAPES)}")

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        z = (x - torch.as_tensor(self.centre, dtype=x.dtype, device=x.device)) / self.radius
        return self.pulse(t) * SHAPES[self.shape](z)


class DensityTwin:
    """psi(x, t) = p(x, t), the target's exact density: eps grad psi = eps grad p."""

    def __init__(self, target, sde):
        self.target, self.sde = target, sde

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.target.log_prob(x, t, self.sde).exp()


def _rows(t, x: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[:-1])


class GradientError(nn.Module):
    """phi(x, t) = log p(x, t) + eps psi(x, t); score grad phi = s* + eps grad psi."""

    is_potential = True

    def __init__(self, target, sde, eps: float, psi):
        super().__init__()
        self.target, self.sde, self.eps, self.psi, self.dim = target, sde, float(eps), psi, target.dim

    def potential(self, x: torch.Tensor, t) -> torch.Tensor:
        t = _rows(t, x)
        return self.target.log_prob(x, t, self.sde) + self.eps * self.psi(x, t)

    def error(self, x: torch.Tensor, t, create_graph: bool = False) -> torch.Tensor:
        """eps grad psi(x, t), shape (n, d)."""
        return self.eps * ops.gradient(lambda xx, tt: self.psi(xx, tt), x, _rows(t, x), create_graph)

    def score(self, x: torch.Tensor, t, create_graph: bool = False) -> torch.Tensor:
        return ops.gradient(self.potential, x, _rows(t, x), create_graph)

    def forward(self, x, t):
        return self.potential(x, t)


def antisymmetric(dim: int, dtype=torch.float64) -> torch.Tensor:
    """A: rotation by 90 degrees in each coordinate pair (x_1, x_2), (x_3, x_4), ...; in 2D
    A = J = [[0, -1], [1, 0]] (J (a, b) = (-b, a)). A^T = -A; for odd d the last coordinate is fixed."""
    a = torch.zeros(dim, dim, dtype=dtype)
    for i in range(0, dim - 1, 2):
        a[i, i + 1], a[i + 1, i] = -1.0, 1.0
    return a


class SolenoidalError(nn.Module):
    """s = s* + eps A grad p(x, t), A = ``antisymmetric(d)``: div(p A grad p) = 0 (module docstring)."""

    is_potential = False

    def __init__(self, target, sde, eps: float):
        super().__init__()
        self.target, self.sde, self.eps, self.dim = target, sde, float(eps), target.dim
        self.matrix = antisymmetric(target.dim)

    def error(self, x: torch.Tensor, t, create_graph: bool = False) -> torch.Tensor:
        """eps A grad p(x, t) = eps p A s*, shape (n, d)."""
        t = _rows(t, x)
        density = lambda xx, tt: self.target.log_prob(xx, tt, self.sde).exp()  # noqa: E731
        grad_p = ops.gradient(density, x, t, create_graph)
        return self.eps * grad_p @ self.matrix.to(grad_p).T

    def score(self, x: torch.Tensor, t, create_graph: bool = False) -> torch.Tensor:
        t = _rows(t, x)
        return self.target.score(x, t, self.sde, create_graph) + self.error(x, t, create_graph)

    def forward(self, x, t):
        return self.score(x, t)
