"""Forward SDEs dx = f(x, t) dt + g(t) dW (eq. 1 of the paper).

Every SDE here is linear, f(x, t) = a(t) x, so the perturbation kernel is Gaussian:
x_t | x_0 ~ N(m(t) x_0, sigma(t)^2 I). Samplers, residuals and losses take an SDE
object and never hard-code the Ornstein-Uhlenbeck process of the paper's section 4.

Shapes: x is (n, d), t is (n,) or a scalar tensor; outputs follow x's dtype and device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import FpbenchError


def _as_tensor(t, like: torch.Tensor | None = None) -> torch.Tensor:
    if isinstance(t, torch.Tensor):
        return t
    if like is not None:
        return torch.as_tensor(t, dtype=like.dtype, device=like.device)
    return torch.as_tensor(t, dtype=torch.get_default_dtype())


def randn(shape, generator=None, dtype=None, device=None) -> torch.Tensor:
    """Standard normals drawn on the generator's device (CPU by default), then moved to ``device``:
    a seed gives the same numbers whichever device the computation runs on."""
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, dtype=dtype, device=gen_device).to(device)


def rand(shape, generator=None, dtype=None, device=None) -> torch.Tensor:
    """Uniforms on [0, 1), drawn like ``randn``."""
    gen_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, dtype=dtype, device=gen_device).to(device)


class LinearSDE:
    """Base class: f(x, t) = a(t) x, scalar g(t), prior pi = N(0, prior_var I).

    Subclasses define ``drift_coef(t)`` = a(t), ``diffusion(t)`` = g(t) and
    ``marginal(t)`` = (m(t), sigma(t)).
    """

    name: str = "linear"
    T: float = 1.0
    prior_var: float = 1.0

    def drift_coef(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def diffusion(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def marginal(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def drift(self, x: torch.Tensor, t) -> torch.Tensor:
        """f(x, t) = a(t) x, shape (n, d)."""
        a = _as_tensor(t, x).to(x.dtype)
        return self.drift_coef(a).reshape(-1, *([1] * (x.dim() - 1))) * x

    def div_drift(self, x: torch.Tensor, t) -> torch.Tensor:
        """div f(x, t) = d a(t), shape (n,)."""
        t = _as_tensor(t, x).to(x.dtype)
        return (x.shape[-1] * self.drift_coef(t)).expand(x.shape[:-1])

    def drift_jacobian_coef(self, t: torch.Tensor) -> torch.Tensor:
        """grad f = a(t) I: the scalar a(t) (used by the score-FP residual, eq. 32)."""
        return self.drift_coef(t)

    def prior_sample(self, n: int, d: int, generator: torch.Generator | None = None,
                     dtype=None, device=None) -> torch.Tensor:
        """n draws from pi = N(0, prior_var I_d)."""
        return math.sqrt(self.prior_var) * randn((n, d), generator, dtype, device)

    def prior_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log pi(x), shape (n,)."""
        d = x.shape[-1]
        return -0.5 * (x**2).sum(-1) / self.prior_var - 0.5 * d * math.log(2 * math.pi * self.prior_var)

    def kernel_sample(self, x0: torch.Tensor, t: torch.Tensor,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x_t = m(t) x_0 + sigma(t) eps; returns (x_t, eps)."""
        m, s = self.marginal(t)
        eps = randn(x0.shape, generator, x0.dtype, x0.device)
        return m[:, None] * x0 + s[:, None] * eps, eps

    def config(self) -> dict:
        return {"name": self.name, **{k: v for k, v in vars(self).items()}}


@dataclass
class OU(LinearSDE):
    """The paper's Ornstein-Uhlenbeck process (section 4): f = -x, g = 1, T = 10.

    m(t) = e^{-t}, sigma(t)^2 = (1 - e^{-2t}) / 2, prior N(0, I/2) (REFERENCE.md).
    """

    T: float = 10.0
    name: str = "ou"

    @property
    def prior_var(self) -> float:
        return 0.5

    def drift_coef(self, t):
        return -torch.ones_like(t)

    def diffusion(self, t):
        return torch.ones_like(t)

    def marginal(self, t):
        return torch.exp(-t), torch.sqrt(-0.5 * torch.expm1(-2 * t))


@dataclass
class VP(LinearSDE):
    """Variance-preserving SDE of Song et al. (2021): beta(t) = beta_min + t (beta_max - beta_min).

    f = -beta(t) x / 2, g = sqrt(beta(t)), m(t) = exp(-B(t)/2), sigma(t)^2 = 1 - exp(-B(t)),
    B(t) = beta_min t + (beta_max - beta_min) t^2 / 2; prior N(0, I); T = 1.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    T: float = 1.0
    name: str = "vp"

    @property
    def prior_var(self) -> float:
        return 1.0

    def beta(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def drift_coef(self, t):
        return -0.5 * self.beta(t)

    def diffusion(self, t):
        return torch.sqrt(self.beta(t))

    def marginal(self, t):
        big_b = self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2
        return torch.exp(-0.5 * big_b), torch.sqrt(-torch.expm1(-big_b))


@dataclass
class VE(LinearSDE):
    """Variance-exploding SDE of Song et al. (2021): sigma_n(t) = sigma_min (sigma_max/sigma_min)^t.

    f = 0, g(t) = sigma_n(t) sqrt(2 log(sigma_max/sigma_min)); the exact kernel variance is
    sigma_n(t)^2 - sigma_min^2 (zero at t = 0); prior N(0, (sigma_max^2 - sigma_min^2) I); T = 1.
    sigma_min = 0.05 (not Song's 0.01) keeps sigma(t) >= 0.04 for t >= 0.05, where the rings'
    exact log-density is accurate to 1e-8 (``Rings``).
    """

    sigma_min: float = 0.05
    sigma_max: float = 10.0
    T: float = 1.0
    name: str = "ve"

    @property
    def prior_var(self) -> float:
        return self.sigma_max**2 - self.sigma_min**2

    def _log_ratio(self) -> float:
        return math.log(self.sigma_max / self.sigma_min)

    def drift_coef(self, t):
        return torch.zeros_like(t)

    def diffusion(self, t):
        return self.sigma_min * torch.exp(t * self._log_ratio()) * math.sqrt(2 * self._log_ratio())

    def marginal(self, t):
        var = self.sigma_min**2 * torch.expm1(2 * t * self._log_ratio())
        return torch.ones_like(t), torch.sqrt(var)


SDES = {"ou": OU, "vp": VP, "ve": VE}


def make_sde(name: str, **params) -> LinearSDE:
    """Build an SDE by name ('ou', 'vp', 've'); unknown names raise ValueError."""
    if name not in SDES:
        raise FpbenchError(f"unknown SDE {name!r}; known: {', '.join(sorted(SDES))}")
    try:
        return SDES[name](**params)
    except TypeError as err:
        raise FpbenchError(f"bad parameters for SDE {name!r}: {err}") from None
