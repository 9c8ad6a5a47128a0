"""Targets written outside fpbench (the user-target protocol of fpbench.core.targets.user_target)."""

import math

import torch


class Ring:
    """Samples only: a noisy unit circle."""

    dim = 2

    def __init__(self, noise: float = 0.1):
        self.noise = noise

    def sample(self, n, generator):
        angle = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
        r = 1.0 + self.noise * torch.randn(n, generator=generator, dtype=torch.float64)
        return torch.stack([r * torch.cos(angle), r * torch.sin(angle)], 1)


class Gaussian:
    """With its exact diffused density under any linear SDE: N(0, m^2 v + s^2) per coordinate."""

    dim = 2

    def __init__(self, var: float = 0.5):
        self.var = var

    def sample(self, n, generator):
        return math.sqrt(self.var) * torch.randn(n, 2, generator=generator, dtype=torch.float64)

    def log_prob(self, x, t, sde):
        m, s = sde.marginal(t)
        var = (m**2 * self.var + s**2)[:, None]
        return (-0.5 * x**2 / var - 0.5 * torch.log(2 * math.pi * var)).sum(-1)
