"""Denoising score matching (eq. 5 of the paper).

    L_DSM = E_{t, x_0 ~ p0, x_t ~ p(. | x_0)} [ lambda(t) || grad log p(x_t | x_0) - s(x_t, t) ||^2 ],
    grad log p(x_t | x_0) = -(x_t - m(t) x_0) / sigma(t)^2 = -eps / sigma(t).

Weightings: 'likelihood' lambda = g(t)^2 (the paper's choice; = 1 for the OU process) and
'sigma2' lambda = sigma(t)^2. Time laws: 'uniform' t ~ U(t_eps, T) (the paper's text) and
'beta12' t = T * Beta(1, 2) + t_eps (the authors' code, REFERENCE.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import FpbenchError
from .residuals import PAPER_T0
from .sde import rand

WEIGHTINGS = ("likelihood", "sigma2")
TIME_LAWS = ("uniform", "beta12")


def sample_times(n: int, T: float, law: str = "beta12", t_eps: float = PAPER_T0, generator=None,
                 dtype=None, device=None) -> torch.Tensor:
    """Training times: 'uniform' U(t_eps, T) or 'beta12' T * Beta(1, 2) + t_eps (density 2(1 - t/T)/T)."""
    u = rand(n, generator, dtype, device)
    if law == "uniform":
        return t_eps + (T - t_eps) * u
    if law == "beta12":  # inverse CDF of Beta(1, 2): 1 - sqrt(1 - u)
        return T * (1 - torch.sqrt(1 - u)) + t_eps
    raise FpbenchError(f"unknown time law {law!r}; known: {', '.join(TIME_LAWS)}")


def weighting(sde, t: torch.Tensor, kind: str = "likelihood") -> torch.Tensor:
    """lambda(t): 'likelihood' g(t)^2 or 'sigma2' sigma(t)^2."""
    if kind == "likelihood":
        return sde.diffusion(t) ** 2
    if kind == "sigma2":
        return sde.marginal(t)[1] ** 2
    raise FpbenchError(f"unknown weighting {kind!r}; known: {', '.join(WEIGHTINGS)}")


@dataclass(frozen=True)
class DSMBatch:
    """One draw of (x_0, t, eps, x_t) for the DSM objective."""

    x0: torch.Tensor
    t: torch.Tensor
    eps: torch.Tensor
    xt: torch.Tensor


def dsm_batch(x0: torch.Tensor, sde, time_law: str = "beta12", t_eps: float = PAPER_T0,
              generator=None) -> DSMBatch:
    t = sample_times(x0.shape[0], sde.T, time_law, t_eps, generator, x0.dtype, x0.device)
    xt, eps = sde.kernel_sample(x0, t, generator)
    return DSMBatch(x0, t, eps, xt)


def dsm_loss_terms(score_fn, sde, batch: DSMBatch, weight: str = "likelihood") -> torch.Tensor:
    """Per-sample lambda(t) || -eps/sigma(t) - s(x_t, t) ||^2, shape (n,)."""
    _, sigma = sde.marginal(batch.t)
    target = -batch.eps / sigma[:, None]
    return weighting(sde, batch.t, weight) * ((score_fn(batch.xt, batch.t) - target) ** 2).sum(-1)


def dsm_loss(score_fn, sde, batch: DSMBatch, weight: str = "likelihood") -> torch.Tensor:
    """Monte Carlo estimate of L_DSM (eq. 5) on one batch."""
    return dsm_loss_terms(score_fn, sde, batch, weight).mean()
