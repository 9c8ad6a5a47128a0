"""Target distributions p0 with their exact diffused densities p(x, t) under any linear SDE.

Under a linear SDE, x_t = m(t) x_0 + sigma(t) eps, so p(., t) = (p0 pushed by x -> m x) * N(0, sigma^2 I).
Each target gives ``sample(n, generator)`` from p0, ``log_prob(x, t, sde)`` = log p(x, t) exactly
(t = 0 by the direct formula) and ``score(x, t, sde)`` = grad_x log p(x, t) by autograd.

The three 2D targets are those of the authors' code (``../shared/paper/REFERENCE.md``); every
parameter lives in ``TARGET_DEFAULTS`` and can be overridden by ``make_target(name, **params)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .errors import FpbenchError

# One place for every target parameter (REFERENCE.md, "Targets (2D)").
TARGET_DEFAULTS: dict[str, dict] = {
    "blob": {  # the paper's "Gaussian mixture": 9 equal Gaussians, cov 0.2 I, all scaled by 0.65
        "means": [[2, 2], [2, -2], [-2, 2], [-2, -2], [0, 0], [4, 0], [-4, 0], [0, 4], [0, -4]],
        "var": 0.2,
        "scale": 0.65,
    },
    "circles2": {  # "concentric circles": radius ~ N(R_k, s^2), uniform angle, all scaled by 2
        "radii": [0.65, 1.4],
        "radial_std": 0.1,
        "weights": [0.5, 0.5],
        "scale": 2.0,
        "quadrature_nodes": 128,
    },
    "checker": {  # "checkerboard": 8 uniform squares of side 0.25, all scaled by 6
        "corners": [[0, 0], [0.5, 0], [0.25, 0.25], [0.75, 0.25],
                    [0, 0.5], [0.5, 0.5], [0.25, 0.75], [0.75, 0.75]],
        "offset": [-0.5, -0.5],
        "side": 0.25,
        "scale": 6.0,
    },
    "gmm": {  # d-dimensional mixture beyond the paper: components at +-spread e_j, isotropic std
        "dim": 4,
        "spread": 2.5,
        "std": 0.5,
    },
    # The 2D toys of the generative-modelling literature (the FFJORD / score-SDE benchmarks), scaled into
    # the paper's box. 8gaussians has an exact density; the others are samples-only.
    "8gaussians": {"radius": 2.0, "std": 0.25},
    # Two well-separated Gaussians at (+-separation/2, 0): the "spurious third mode" case of Plainer et al.
    # (NeurIPS 2025), where a potential model trained by DSM alone can grow a mode between the two
    # (fpbench.core.modes measures it). fpbench's choice of separation and width: nothing between the modes
    # at small t (p_t there ~ exp(-separation^2 / (8 std^2)) of the peaks), overlap by t ~ 1.
    "twogauss": {"separation": 3.0, "std": 0.25},
    "moons": {"noise": 0.1, "scale": 1.2},
    "swissroll": {"noise": 0.3, "scale": 0.22},
    "pinwheel": {"radial_std": 0.3, "tangential_std": 0.1, "arms": 5, "rate": 0.25, "scale": 1.0},
    "samples": {"path": ""},  # a user's .npy / .npz (array "x" or the first) of samples, one row each
}


def _split_by_time(x, t, sde, diffused, direct):
    """Evaluate ``direct(x)`` where t == 0 and ``diffused(x, m, s)`` elsewhere (row-wise)."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[:-1])
    at_zero = t == 0
    if not at_zero.any():
        m, s = sde.marginal(t)
        return diffused(x, m, s)
    out = torch.empty(x.shape[:-1], dtype=x.dtype, device=x.device)
    out = out.index_put((at_zero,), direct(x[at_zero]))
    if (~at_zero).any():
        m, s = sde.marginal(t[~at_zero])
        out = out.index_put((~at_zero,), diffused(x[~at_zero], m, s))
    return out


def _log1mexp(a: torch.Tensor) -> torch.Tensor:
    """log(1 - e^a) for a <= 0, accurate on both sides of -log 2 (Maechler 2012)."""
    return torch.where(a > -math.log(2), torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(a)))


_ASYMPTOTIC_Z = 30.0
# Hankel series I0(z) e^{-z} ~ (2 pi z)^{-1/2} sum_k a_k z^{-k}, a_k = a_{k-1} (2k - 1)^2 / (8k).
_HANKEL = [1.0]
for _k in range(1, 16):
    _HANKEL.append(_HANKEL[-1] * (2 * _k - 1) ** 2 / (8 * _k))


def log_i0e(z: torch.Tensor) -> torch.Tensor:
    """log(I0(z) e^{-|z|}), with derivatives accurate for large |z|.

    For |z| >= 30 the Hankel series (16 terms, truncation below 1e-17 relative) replaces
    log(i0e), whose derivative i1e/i0e - 1 ~ -1/(2z) otherwise cancels catastrophically.
    """
    za = z.abs()
    big = za >= _ASYMPTOTIC_Z
    z_big = torch.where(big, za, torch.full_like(za, _ASYMPTOTIC_Z))
    inv = 1.0 / z_big
    series = torch.zeros_like(za)
    for a_k in reversed(_HANKEL):
        series = series * inv + a_k
    asymptotic = torch.log(series) - 0.5 * torch.log(2 * math.pi * z_big)
    z_small = torch.where(big, torch.zeros_like(za), za)
    return torch.where(big, asymptotic, torch.log(torch.special.i0e(z_small)))


def log_diff_ndtr(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """log(Phi(hi) - Phi(lo)) for lo < hi, stable in both tails (uses Phi(b) - Phi(a) = Phi(-a) - Phi(-b))."""
    flip = lo > 0
    a = torch.where(flip, -hi, lo)
    b = torch.where(flip, -lo, hi)
    log_b = torch.special.log_ndtr(b)
    return log_b + _log1mexp(torch.special.log_ndtr(a) - log_b)


class Target:
    """A target p0 in R^dim; subclasses implement ``sample``, ``log_prob0`` and ``_log_prob_t``."""

    name = "target"
    dim = 2

    def __init__(self, **params):
        self.params = params

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=None, device=None):
        raise NotImplementedError

    def log_prob0(self, x: torch.Tensor) -> torch.Tensor:
        """log p0(x) by the direct formula, shape (n,)."""
        raise NotImplementedError

    def _log_prob_t(self, x, m, s):
        raise NotImplementedError

    def log_prob(self, x: torch.Tensor, t, sde) -> torch.Tensor:
        """Exact log p(x, t) under ``sde`` (t = 0 rows by the direct formula), shape (n,)."""
        return _split_by_time(x, t, sde, self._log_prob_t, self.log_prob0)

    def score(self, x: torch.Tensor, t, sde, create_graph: bool = False) -> torch.Tensor:
        """Exact score grad_x log p(x, t) by autograd, shape (n, d)."""
        with torch.enable_grad():
            xr = x if x.requires_grad else x.detach().requires_grad_(True)
            logp = self.log_prob(xr, t, sde)
            if not logp.requires_grad:  # e.g. the checkerboard at t = 0: piecewise constant in x
                return torch.zeros_like(x)
            (g,) = torch.autograd.grad(logp.sum(), xr, create_graph=create_graph, allow_unused=True)
        return torch.zeros_like(x) if g is None else g

    def config(self) -> dict:
        return {"name": self.name, **self.params}


class GaussianMixture(Target):
    """p0 = sum_k w_k N(mu_k, diag(v_k)); diffused: N(m mu_k, m^2 v_k + sigma^2) (closed form)."""

    name = "gmm"

    def __init__(self, means, variances, weights=None, name: str = "gmm", **params):
        super().__init__(**params)
        self.name = name
        self.means = torch.as_tensor(means, dtype=torch.float64)
        k, self.dim = self.means.shape
        self.variances = torch.as_tensor(variances, dtype=torch.float64).expand(k, self.dim).clone()
        w = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else torch.as_tensor(weights)
        self.log_weights = torch.log(w / w.sum())

    def sample(self, n, generator=None, dtype=None, device=None):
        dtype = dtype or torch.get_default_dtype()
        comp = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x = self.means[comp] + self.variances[comp].sqrt() * z
        return x.to(dtype=dtype, device=device)

    def _log_prob_t(self, x, m, s):
        mu = self.means.to(x)
        v = self.variances.to(x)
        mean = m[:, None, None] * mu  # (n, K, d)
        var = m[:, None, None] ** 2 * v + (s**2)[:, None, None]
        comp = -0.5 * ((x[:, None, :] - mean) ** 2 / var + torch.log(2 * math.pi * var)).sum(-1)
        return torch.logsumexp(comp + self.log_weights.to(x), dim=-1)

    def log_prob0(self, x):
        zero = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        return self._log_prob_t(x, torch.ones_like(zero), zero)


class Checkerboard(Target):
    """Uniform on K equal squares [a_k, a_k + L]^2; diffused density is a product of normal CDFs:

    p(x, t) = sum_k (1/K) prod_j [Phi((x_j - m a_kj)/sigma) - Phi((x_j - m a_kj - m L)/sigma)] / (m L).
    """

    name = "checker"

    def __init__(self, corners, offset, side, scale, **params):
        super().__init__(corners=corners, offset=offset, side=side, scale=scale, **params)
        base = torch.as_tensor(corners, dtype=torch.float64) + torch.as_tensor(offset, dtype=torch.float64)
        self.lower = scale * base  # (K, 2) lower-left corners
        self.side = scale * side
        self.dim = self.lower.shape[1]

    def sample(self, n, generator=None, dtype=None, device=None):
        dtype = dtype or torch.get_default_dtype()
        k = torch.randint(self.lower.shape[0], (n,), generator=generator)
        u = torch.rand(n, self.dim, generator=generator, dtype=torch.float64)
        return (self.lower[k] + self.side * u).to(dtype=dtype, device=device)

    def _log_prob_t(self, x, m, s):
        lo = self.lower.to(x)
        m_, s_ = m[:, None, None], s[:, None, None]
        upper_z = (x[:, None, :] - m_ * lo) / s_
        lower_z = (x[:, None, :] - m_ * (lo + self.side)) / s_
        per_axis = log_diff_ndtr(lower_z, upper_z) - torch.log(m_ * self.side)
        return torch.logsumexp(per_axis.sum(-1), dim=-1) - math.log(lo.shape[0])

    def log_prob0(self, x):
        lo = self.lower.to(x)
        inside = ((x[:, None, :] >= lo) & (x[:, None, :] <= lo + self.side)).all(-1).any(-1)
        log_density = -math.log(lo.shape[0] * self.side**self.dim)
        return torch.where(inside, log_density, -math.inf).to(x.dtype)


class Rings(Target):
    """Rings: radius r ~ sum_k w_k N(R_k, s^2), angle ~ U(0, 2 pi), x = r (cos, sin).

    The angular integral of the heat kernel is (1/2pi) int exp(kappa cos) = I0(kappa), so
    p(x, t) = sum_k w_k int N(r; R_k, s^2) exp(-(rho^2 + m^2 r^2) / 2 sigma^2) I0(m rho r / sigma^2) dr
              / (2 pi sigma^2).
    Writing I0(z) = e^z K(z) with K(z) = I0(z) e^{-z} entire, and combining the Gaussians in r:
        p_k(x, t) = exp(-(rho - m R_k)^2 / 2 S^2) E[K(m rho r / sigma^2)] / (2 pi sigma S),
        S^2 = sigma^2 + m^2 s^2,  r ~ N((R_k sigma^2 + m rho s^2) / S^2, s^2 sigma^2 / S^2),
    and the expectation, of a slowly varying entire function, is by Gauss-Hermite quadrature.

    Accuracy (tests/test_targets.py, against scipy.quad of the radial integral, 128 nodes):
    |error in log p| <= 1e-10 for sigma(t)/m(t) >= ``ACCURATE_NOISE`` = 0.05 (OU: t >= 2.5e-3), and
    <= 1e-8 down to sigma/m = 0.02 (OU: t >= 4e-4); it degrades below (1e-5 at 0.01). The loss
    near 0.02 is the far side of the rings (r < 0, a second peak of the integrand that the nodes
    do not reach) seen from near the origin. t = 0 uses the direct formula.
    """

    name = "circles2"
    ACCURATE_NOISE = 0.05

    def __init__(self, radii, radial_std, weights, scale, quadrature_nodes=128, **params):
        super().__init__(radii=radii, radial_std=radial_std, weights=weights, scale=scale,
                         quadrature_nodes=quadrature_nodes, **params)
        self.radii = scale * torch.as_tensor(radii, dtype=torch.float64)
        self.radial_std = scale * radial_std
        w = torch.as_tensor(weights, dtype=torch.float64)
        self.log_weights = torch.log(w / w.sum())
        z, wz = np.polynomial.hermite.hermgauss(quadrature_nodes)
        self.gh_nodes = torch.as_tensor(z)
        self.gh_log_weights = torch.as_tensor(np.log(wz / math.sqrt(math.pi)))
        self.dim = 2

    def sample(self, n, generator=None, dtype=None, device=None):
        dtype = dtype or torch.get_default_dtype()
        comp = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        r = self.radii[comp] + self.radial_std * torch.randn(n, generator=generator, dtype=torch.float64)
        theta = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
        x = torch.stack([r * torch.cos(theta), r * torch.sin(theta)], dim=-1)
        return x.to(dtype=dtype, device=device)

    @staticmethod
    def _log_k(z):
        """log K(z) = log(I0(z) e^{-z}) = log i0e(|z|) + |z| - z (K is entire)."""
        return log_i0e(z) + (z.abs() - z)

    def _log_prob_t(self, x, m, s):
        rho = torch.sqrt((x**2).sum(-1).clamp_min(torch.finfo(x.dtype).tiny))[:, None]  # (n, 1)
        big_r, sr = self.radii.to(x)[None, :], self.radial_std  # (1, K)
        m, s = m[:, None], s[:, None]
        big_s2 = s**2 + m**2 * sr**2
        c = m * rho / s**2
        centre = c * (big_r * s**2 + m * rho * sr**2) / big_s2  # c * posterior mean
        spread = math.sqrt(2) * m * rho * sr / (s * torch.sqrt(big_s2))  # c * sqrt(2 posterior var)
        z, log_wz = self.gh_nodes.to(x), self.gh_log_weights.to(x)
        log_e_k = torch.logsumexp(log_wz + self._log_k(centre[..., None] + spread[..., None] * z), -1)
        log_norm = torch.log(2 * math.pi * s * torch.sqrt(big_s2))
        log_pk = -((rho - m * big_r) ** 2) / (2 * big_s2) + log_e_k - log_norm
        return torch.logsumexp(log_pk + self.log_weights.to(x), dim=-1)

    def log_prob0(self, x):
        rho = torch.sqrt((x**2).sum(-1))[:, None]
        big_r, sr = self.radii.to(x)[None, :], self.radial_std
        log_norm = -0.5 * math.log(2 * math.pi * sr**2)
        both = torch.stack([-(rho - big_r) ** 2, -(rho + big_r) ** 2]) / (2 * sr**2) + log_norm
        log_q = torch.logsumexp(both, 0)  # density of |r| at rho, per ring
        return torch.logsumexp(log_q + self.log_weights.to(x), -1) - torch.log(2 * math.pi * rho[:, 0])


class SampleTarget(Target):
    """A target given by ``draw(n, generator) -> (n, d)`` float64 samples and, optionally, its exact
    diffused ``log_prob(x, t, sde)`` (t of shape (n,)). Without one it is samples-only: DSM training, both
    samplers and every W2^2 need only samples; the metrics that need the exact density (the oracle, the
    convergence evidence, the exact score's L_DSM) are reported as not available."""

    def __init__(self, name: str, dim: int, draw, log_prob=None, **params):
        super().__init__(**params)
        self.name, self.dim, self._draw, self._log_prob = name, dim, draw, log_prob
        self.has_density = log_prob is not None

    def sample(self, n, generator=None, dtype=None, device=None):
        return self._draw(n, generator).to(dtype=dtype or torch.get_default_dtype(), device=device)

    def log_prob(self, x, t, sde):
        if self._log_prob is None:
            raise NoDensityError(f"target {self.name!r} has samples only: no exact density")
        return self._log_prob(x, torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[:-1]), sde)

    def score(self, x, t, sde, create_graph: bool = False):
        if self._log_prob is None:
            raise NoDensityError(f"target {self.name!r} has samples only: no exact score")
        return super().score(x, t, sde, create_graph)


class NoDensityError(FpbenchError):
    """A quantity that needs the exact density, asked of a samples-only target."""


def has_density(target) -> bool:
    return getattr(target, "has_density", True)


def _uniform(n, generator):
    return torch.rand(n, generator=generator, dtype=torch.float64)


def _normal(n, generator, d=None):
    return torch.randn(n, *([d] if d else []), generator=generator, dtype=torch.float64)


def _moons(noise, scale, **params):
    """Two interleaving half circles (scikit-learn's make_moons), centred, times ``scale``."""
    def draw(n, gen):
        upper = _uniform(n, gen) < 0.5
        angle = math.pi * _uniform(n, gen)
        x = torch.where(upper, torch.cos(angle), 1 - torch.cos(angle)) - 0.5
        y = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle)) - 0.25
        return scale * (torch.stack([x, y], 1) + noise * _normal(n, gen, 2))
    return SampleTarget("moons", 2, draw, noise=noise, scale=scale, **params)


def _swissroll(noise, scale, **params):
    """scikit-learn's 2D Swiss roll (t cos t, t sin t), t ~ U(1.5 pi, 4.5 pi), times ``scale``."""
    def draw(n, gen):
        t = 1.5 * math.pi * (1 + 2 * _uniform(n, gen))
        return scale * (torch.stack([t * torch.cos(t), t * torch.sin(t)], 1) + noise * _normal(n, gen, 2))
    return SampleTarget("swissroll", 2, draw, noise=noise, scale=scale, **params)


def _pinwheel(radial_std, tangential_std, arms, rate, scale, **params):
    """The pinwheel of Johnson et al. (2016): ``arms`` Gaussian arms bent by an angle growing with radius."""
    def draw(n, gen):
        arm = torch.randint(arms, (n,), generator=gen)
        r = 1.0 + radial_std * _normal(n, gen)
        tangential = tangential_std * _normal(n, gen)
        angle = 2 * math.pi * arm / arms + rate * torch.exp(r)
        x, y = r, tangential
        return scale * torch.stack([x * torch.cos(angle) - y * torch.sin(angle),
                                    x * torch.sin(angle) + y * torch.cos(angle)], 1)
    return SampleTarget("pinwheel", 2, draw, radial_std=radial_std, tangential_std=tangential_std, arms=arms,
                        rate=rate, scale=scale, **params)


def _eight_gaussians(radius, std, **params):
    angles = torch.arange(8, dtype=torch.float64) * math.pi / 4
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], 1)
    return GaussianMixture(means, std**2, name="8gaussians", radius=radius, std=std, **params)


def _two_gaussians(separation, std, **params):
    means = torch.tensor([[-separation / 2, 0.0], [separation / 2, 0.0]], dtype=torch.float64)
    return GaussianMixture(means, std**2, name="twogauss", separation=separation, std=std, **params)


def _samples(path, **params):
    """A user's samples from an .npy or .npz file (array ``x``, else the first), drawn with replacement."""
    from pathlib import Path

    if not path or not Path(path).exists():
        raise FpbenchError(f"target 'samples': no file {path!r} (give path = '....npy' or '....npz')")
    loaded = np.load(path)
    data = loaded if isinstance(loaded, np.ndarray) else loaded["x" if "x" in loaded.files else loaded.files[0]]
    data = torch.as_tensor(np.asarray(data, dtype=np.float64))
    if data.ndim != 2 or not torch.isfinite(data).all():
        raise FpbenchError(f"target 'samples': {path} must hold a finite (n, d) array; got shape {tuple(data.shape)}")
    return SampleTarget("samples", data.shape[1], lambda n, gen: data[torch.randint(len(data), (n,), generator=gen)],
                        path=path, **params)


def _blob(means, var, scale, **params):
    means = scale * torch.as_tensor(means, dtype=torch.float64)
    return GaussianMixture(means, var * scale**2, name="blob", **params)


def _gmm(dim, spread, std, **params):
    eye = torch.eye(dim, dtype=torch.float64)
    means = spread * torch.cat([eye, -eye])
    return GaussianMixture(means, std**2, name="gmm", dim=dim, spread=spread, std=std, **params)


_BUILDERS = {"blob": _blob, "circles2": lambda **p: Rings(**p), "checker": lambda **p: Checkerboard(**p),
             "gmm": _gmm, "8gaussians": _eight_gaussians, "twogauss": _two_gaussians, "moons": _moons,
             "swissroll": _swissroll, "pinwheel": _pinwheel, "samples": _samples}


def make_target(name: str, **overrides) -> Target:
    """Build a target by name with its defaults from TARGET_DEFAULTS, any of them overridden; or a user's
    ``module:Class`` / ``file.py:Class`` built with the overrides as keyword arguments (``user_target``)."""
    if ":" in name:
        return user_target(name, **overrides)
    if name not in _BUILDERS:
        raise FpbenchError(f"unknown target {name!r}; known: {', '.join(sorted(_BUILDERS))}")
    unknown = set(overrides) - set(TARGET_DEFAULTS[name])
    if unknown:
        raise FpbenchError(f"unknown parameter(s) {sorted(unknown)} for target {name!r}; "
                         f"known: {sorted(TARGET_DEFAULTS[name])}")
    target = _BUILDERS[name](**{**TARGET_DEFAULTS[name], **overrides})
    target.params = {**TARGET_DEFAULTS[name], **overrides}
    return target


def user_target(spec: str, **params) -> Target:
    """A user's target class: it needs ``sample(n, generator)`` (float64 rows) and ``dim``; with a
    ``log_prob(x, t, sde)`` (the exact diffused log-density) it has an exact density and every oracle metric
    works, without one it is samples-only. Wrapped so that the pipeline sees fpbench's ``Target`` protocol."""
    from .imports import load_attr

    obj = load_attr(spec, "target")(**params)
    if not callable(getattr(obj, "sample", None)) or not isinstance(getattr(obj, "dim", None), int):
        raise FpbenchError(f"target {spec!r}: the object needs sample(n, generator) and an integer dim")
    draw = lambda n, gen: torch.as_tensor(obj.sample(n, gen), dtype=torch.float64)  # noqa: E731
    log_prob = obj.log_prob if callable(getattr(obj, "log_prob", None)) else None
    return SampleTarget(spec, obj.dim, draw, log_prob, **params)


USER_DATA_TARGETS = ("samples",)  # built from a user's file (a path parameter)
TARGETS = tuple(name for name in _BUILDERS if name not in USER_DATA_TARGETS)  # built from their defaults alone
DENSITY_TARGETS = tuple(name for name in TARGETS if has_density(make_target(name)))  # the oracle's targets
