"""Models: one protocol, ``score(x, t) -> (n, d)``; potential models also ``potential(x, t) -> (n,)``.

- ``PotentialMLP``: phi_theta(x, t) ~ log p(x, t) up to log Z_t (section 2.3); score = grad_x phi.
  Defaults reproduce the authors' network (REFERENCE.md): input (t, x_1, ..., x_d), three
  Linear + Softplus(beta = 100) layers of width 80, then Linear(80, 1).
- ``ScoreMLP``: s_theta(x, t) in R^d directly, the usual non-conservative parametrisation.
- ``ExactScore``: the oracle, log p(x, t) of a target under an SDE, exact (``fpbench.core.targets``).
"""

from __future__ import annotations

import torch
from torch import nn

from . import operators as ops
from .errors import FpbenchError


def mlp(d_in: int, d_out: int, width: int, depth: int, beta: float) -> nn.Sequential:
    """``depth`` Linear + Softplus(beta) layers of ``width``, then a Linear to ``d_out``."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(d_in if i == 0 else width, width), nn.Softplus(beta=beta)]
    layers.append(nn.Linear(width, d_out))
    return nn.Sequential(*layers)


def _time_input(x: torch.Tensor, t) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[:-1])
    return torch.cat([t[..., None], x], dim=-1)  # (t, x), the authors' input order


class PotentialMLP(nn.Module):
    """phi_theta(x, t): R^d x [0, T] -> R; score = grad_x phi_theta (conservative by construction)."""

    is_potential = True

    def __init__(self, dim: int = 2, width: int = 80, depth: int = 3, beta: float = 100.0):
        super().__init__()
        self.dim, self.width, self.depth, self.beta = dim, width, depth, beta
        self.net = mlp(dim + 1, 1, width, depth, beta)

    def potential(self, x: torch.Tensor, t) -> torch.Tensor:
        return self.net(_time_input(x, t)).squeeze(-1)

    def score(self, x: torch.Tensor, t, create_graph: bool = False) -> torch.Tensor:
        return ops.gradient(self.potential, x, t, create_graph=create_graph)

    def forward(self, x, t):
        return self.potential(x, t)


class ScoreMLP(nn.Module):
    """s_theta(x, t): R^d x [0, T] -> R^d, not constrained to be a gradient field."""

    is_potential = False

    def __init__(self, dim: int = 2, width: int = 80, depth: int = 3, beta: float = 100.0):
        super().__init__()
        self.dim, self.width, self.depth, self.beta = dim, width, depth, beta
        self.net = mlp(dim + 1, dim, width, depth, beta)

    def score(self, x: torch.Tensor, t, create_graph: bool = False) -> torch.Tensor:
        return self.net(_time_input(x, t))

    def forward(self, x, t):
        return self.score(x, t)


class ExactScore(nn.Module):
    """The oracle: potential = exact log p(x, t) of ``target`` under ``sde``; score its gradient."""

    is_potential = True

    def __init__(self, target, sde):
        super().__init__()
        self.target, self.sde, self.dim = target, sde, target.dim

    def potential(self, x: torch.Tensor, t) -> torch.Tensor:
        return self.target.log_prob(x, t, self.sde)

    def score(self, x: torch.Tensor, t, create_graph: bool = False) -> torch.Tensor:
        return self.target.score(x, t, self.sde, create_graph=create_graph)

    def forward(self, x, t):
        return self.potential(x, t)


MODELS = {"potential": PotentialMLP, "score": ScoreMLP}


def make_model(kind: str, dim: int, **params) -> nn.Module:
    """Build a trainable model: 'potential' (PotentialMLP) or 'score' (ScoreMLP)."""
    if kind not in MODELS:
        raise FpbenchError(f"unknown model {kind!r}; known: {', '.join(sorted(MODELS))}")
    try:
        return MODELS[kind](dim=dim, **params)
    except TypeError as err:
        raise FpbenchError(f"bad parameters for model {kind!r}: {err}") from None


def in_dtype(model, dtype):
    """``model`` with its parameters in the samplers' ``sample.dtype`` (a converted copy where it was trained
    in another ``train.dtype``): the score is then computed in the arithmetic the sampler runs in."""
    import copy

    params = list(model.parameters()) if isinstance(model, torch.nn.Module) else []
    if not params or all(p.dtype == dtype for p in params):
        return model
    return copy.deepcopy(model).to(dtype)
