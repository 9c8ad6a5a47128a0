"""A score model trained outside fpbench, evaluated by it. The protocol: an object with

    score(x, t)      -> (n, d)   x: (n, d) and t: (n,) torch tensors; differentiable by torch
    potential(x, t)  -> (n,)     optional: a log-density up to a constant in x (then R~, eq. 20, is measured)

returned by a factory (``factory()``, or ``factory(seed=K)`` when it takes a seed), or a TorchScript file
whose module has ``score`` (and ``potential``) exported. From the repository root:

    fpbench evaluate examples/external_model.py:make_model --target blob --scale smoke
    python examples/external_model.py model.pt && fpbench evaluate model.pt --target blob --scale smoke

The model here is a *moment-matched Gaussian*: p0 replaced by the Gaussian with its mean and covariance,
fitted on samples "elsewhere", and diffused exactly under the paper's OU process (dx = -x dt + dW):
x_t ~ N(m mu, m^2 Sigma + s^2 I) with m = e^{-t}, s^2 = (1 - e^{-2t}) / 2. It is exact for a Gaussian
target and a crude one for a multimodal one, which is what the report then shows against the baseline.
"""

import sys

import torch
from torch import nn


class GaussianFit(nn.Module):
    """log N(x; m(t) mu, m(t)^2 Sigma + s(t)^2 I) under the OU process: potential and score."""

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("cov", cov)

    def _moments(self, t: torch.Tensor):
        m = torch.exp(-t)[:, None, None]
        s2 = (0.5 * (1 - torch.exp(-2 * t)))[:, None, None]
        eye = torch.eye(self.mean.shape[0], dtype=self.cov.dtype, device=self.cov.device)
        return m[:, :, 0] * self.mean.to(t.dtype), m**2 * self.cov.to(t.dtype) + s2 * eye.to(t.dtype)

    @torch.jit.export
    def potential(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        mu, cov = self._moments(t)
        diff = (x - mu)[:, :, None]
        solved = torch.linalg.solve(cov, diff)
        return -0.5 * (diff * solved).sum((1, 2)) - 0.5 * torch.logdet(cov)

    @torch.jit.export
    def score(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        mu, cov = self._moments(t)
        return -torch.linalg.solve(cov, (x - mu)[:, :, None])[:, :, 0]

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.score(x, t)


def fit(samples: torch.Tensor) -> GaussianFit:
    """The "training": mean and covariance of the data."""
    return GaussianFit(samples.mean(0), torch.cov(samples.T))


def make_model(seed: int = 0) -> GaussianFit:
    """The factory fpbench calls: fits on 20,000 samples of the blob target drawn with ``seed``."""
    from fpbench.core.targets import make_target

    data = make_target("blob").sample(20_000, torch.Generator().manual_seed(seed), dtype=torch.float64)
    return fit(data).float()


if __name__ == "__main__":  # python examples/external_model.py model.pt: the same model as TorchScript
    torch.jit.script(make_model()).save(sys.argv[1] if len(sys.argv) > 1 else "model.pt")
