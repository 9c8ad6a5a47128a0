"""Samplers of p_theta^SDE(., eps) and p_theta^ODE(., eps), stepping from t = T down to t = eps.

A time grid is a decreasing 1D tensor t_0 = T > t_1 > ... > t_N = eps; h_k = t_k - t_{k+1} > 0.
With f the forward drift, g the diffusion and s the score model:

- reverse SDE (eq. 12 / eq. 7):  x_{k+1} = x_k - h (f - g^2 s)(x_k, t_k) + g(t_k) sqrt(h) z_k
- probability-flow ODE (eq. 13 / eq. 10):  x_{k+1} = x_k - h (f - g^2 s / 2)(x_k, t_k)

Every sampler is a function (score, sde, x_T, ts, ...) -> x_eps. ``sample_pair`` draws one set of
prior points and runs the ODE and the SDE from the same points, in chunks.
"""

from __future__ import annotations

import math

import torch

from .errors import FpbenchError
from .sde import randn


def uniform_grid(T: float, n_steps: int, eps: float = 0.0, dtype=torch.float64) -> torch.Tensor:
    """n_steps equal steps from T down to eps."""
    return torch.linspace(T, eps, n_steps + 1, dtype=dtype)


def refined_grid(T: float, nfe: int, n_fine: int = 100, coarse_in_fine: int = 10, eps: float = 0.0,
                 dtype=torch.float64) -> torch.Tensor:
    """The authors' grid (REFERENCE.md): nfe - coarse_in_fine steps of h = (T - eps)/nfe, then the last
    coarse_in_fine * h split into n_fine equal steps (100 steps of h/10 by default) down to eps."""
    h = (T - eps) / nfe
    switch = eps + coarse_in_fine * h
    coarse = torch.linspace(T, switch, nfe - coarse_in_fine + 1, dtype=torch.float64)
    fine = torch.linspace(switch, eps, n_fine + 1, dtype=torch.float64)[1:]
    return torch.cat([coarse, fine]).to(dtype)


def subdivide(ts: torch.Tensor, k: int) -> torch.Tensor:
    """Every step of the grid split into k equal steps."""
    parts = [torch.linspace(a, b, k + 1, dtype=ts.dtype)[:-1] for a, b in zip(ts[:-1].tolist(), ts[1:].tolist())]
    return torch.cat(parts + [ts[-1:]])


def _reverse_drift(score, sde, x, t, diffusion_factor: float) -> torch.Tensor:
    """Forward-time drift f - c g^2 s, with c = 1 (SDE, eq. 6) or 1/2 (ODE, eq. 11)."""
    tt = torch.full(x.shape[:1], float(t), dtype=x.dtype, device=x.device)
    g2 = sde.diffusion(tt)[:, None] ** 2
    return sde.drift(x, tt) - diffusion_factor * g2 * score(x, tt)


def _g(sde, t) -> float:
    return float(sde.diffusion(torch.tensor(float(t), dtype=torch.float64)))


@torch.no_grad()  # scores take their own x-gradients; no graph may tie the path to weights
def euler_ode(score, sde, x_T: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
    """Euler for the probability-flow ODE (eq. 13): x <- x - h (f - g^2 s / 2)(x, t)."""
    x = x_T
    for t, t_next in zip(ts[:-1].tolist(), ts[1:].tolist()):
        x = x - (t - t_next) * _reverse_drift(score, sde, x, t, 0.5)
    return x


def _increment(x, h: float, k: int, generator, increments) -> torch.Tensor:
    """Brownian increment of step k: sqrt(h) z, or increments[k] when a path is given."""
    if increments is not None:
        return increments[k]
    return math.sqrt(h) * randn(x.shape, generator, x.dtype, x.device)


@torch.no_grad()  # scores take their own x-gradients; no graph may tie the path to weights
def euler_maruyama(score, sde, x_T: torch.Tensor, ts: torch.Tensor, generator=None,
                   noise_last_step: bool = False, increments=None) -> torch.Tensor:
    """Euler-Maruyama for the reverse SDE (eq. 12): x <- x - h (f - g^2 s)(x, t) + g(t) dW.

    dW ~ N(0, h I), or ``increments[k]`` for step k (a given Brownian path). As in the authors'
    code, the last step adds no noise unless ``noise_last_step``.
    """
    x = x_T
    steps = list(zip(ts[:-1].tolist(), ts[1:].tolist()))
    for k, (t, t_next) in enumerate(steps):
        h = t - t_next
        x = x - h * _reverse_drift(score, sde, x, t, 1.0)
        if noise_last_step or k < len(steps) - 1:
            x = x + _g(sde, t) * _increment(x, h, k, generator, increments)
    return x


@torch.no_grad()  # scores take their own x-gradients; no graph may tie the path to weights
def heun_ode(score, sde, x_T: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
    """Heun (explicit trapezoid, 2nd order) for the probability-flow ODE."""
    x = x_T
    for t, t_next in zip(ts[:-1].tolist(), ts[1:].tolist()):
        h = t - t_next
        v = _reverse_drift(score, sde, x, t, 0.5)
        x_pred = x - h * v
        x = x - 0.5 * h * (v + _reverse_drift(score, sde, x_pred, t_next, 0.5))
    return x


@torch.no_grad()  # scores take their own x-gradients; no graph may tie the path to weights
def heun_sde(score, sde, x_T: torch.Tensor, ts: torch.Tensor, generator=None,
             noise_last_step: bool = False, increments=None) -> torch.Tensor:
    """Stochastic Heun for the reverse SDE: the drift by the trapezoid rule, the noise g dW with g
    averaged over the step. For additive noise (g independent of x) it has strong order 1 with a
    smaller constant than Euler-Maruyama, and weak order 2."""
    x = x_T
    steps = list(zip(ts[:-1].tolist(), ts[1:].tolist()))
    for k, (t, t_next) in enumerate(steps):
        h = t - t_next
        noise = torch.zeros_like(x)
        if noise_last_step or k < len(steps) - 1:
            noise = 0.5 * (_g(sde, t) + _g(sde, t_next)) * _increment(x, h, k, generator, increments)
        b = _reverse_drift(score, sde, x, t, 1.0)
        x_pred = x - h * b + noise
        x = x - 0.5 * h * (b + _reverse_drift(score, sde, x_pred, t_next, 1.0)) + noise
    return x


class ReferenceODEError(RuntimeError):
    """The adaptive reference solver did not finish within its evaluation budget."""


def reference_ode(score, sde, x_T: torch.Tensor, t_end: float = 0.0, rtol: float = 1e-9,
                  atol: float = 1e-9, max_evals: int = 20_000) -> torch.Tensor:
    """Adaptive 8th-order Dormand-Prince (scipy ``solve_ivp``, DOP853) solution of the probability-flow
    ODE from T to t_end, all particles as one system: the high-accuracy reference that separates
    discretisation error from model error. (scipy keeps every stage inside [t_end, T]; torchdiffeq
    steps past the end and would query the score at t < 0.)"""
    from scipy.integrate import solve_ivp

    shape, dtype, device = x_T.shape, x_T.dtype, x_T.device
    evals = [0]

    def velocity(t, y):
        evals[0] += 1
        if evals[0] > max_evals:  # a diverging model makes the adaptive steps collapse
            raise ReferenceODEError(f"reference ODE needed more than {max_evals} evaluations")
        x = torch.as_tensor(y, dtype=dtype, device=device).reshape(shape)
        return _reverse_drift(score, sde, x, t, 0.5).detach().cpu().double().numpy().ravel()

    y0 = x_T.detach().cpu().double().numpy().ravel()
    sol = solve_ivp(velocity, (sde.T, t_end), y0, method="DOP853", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"reference ODE solver failed: {sol.message}")
    return torch.as_tensor(sol.y[:, -1], dtype=dtype).reshape(shape).to(device)


def ode_discretisation_pairs(score, sde, x_T: torch.Tensor, ts: torch.Tensor, scheme: str = "euler"):
    """(x_h, x_ref): the scheme on grid ``ts`` and the adaptive reference from the same x_T, a coupling of
    the two laws; None where the model's flow diverges so far that the reference cannot finish."""
    x_h = ODE_SAMPLERS[scheme](score, sde, x_T, ts)
    try:
        x_ref = reference_ode(score, sde, x_T, float(ts[-1]), rtol=1e-7, atol=1e-7, max_evals=5000)
    except ReferenceODEError:
        return None
    return x_h.detach(), x_ref.detach()


def sde_discretisation_pairs(score, sde, x_T: torch.Tensor, ts: torch.Tensor, generator, scheme: str = "euler",
                             k: int = 4):
    """(x_h, x_{h/k}): the scheme at steps h and h/k driven by the same Brownian path, a coupling."""
    fine = subdivide(ts, k)
    h_fine = (fine[:-1] - fine[1:]).to(x_T.dtype)
    dw_fine = torch.stack([math.sqrt(float(h)) * randn(x_T.shape, generator, x_T.dtype, x_T.device) for h in h_fine])
    dw = dw_fine.reshape(len(ts) - 1, k, *x_T.shape).sum(1)
    x_h = SDE_SAMPLERS[scheme](score, sde, x_T, ts, increments=dw, noise_last_step=True)
    x_fine = SDE_SAMPLERS[scheme](score, sde, x_T, fine, increments=dw_fine, noise_last_step=True)
    return x_h.detach(), x_fine.detach()


def coupling_bound(pairs) -> float:
    """E ||x - y||^2 over coupled pairs: an upper bound on W2^2 between their laws (NaN for None)."""
    if pairs is None:
        return math.nan
    a, b = pairs
    return float(((a - b) ** 2).sum(-1).mean())


def ode_discretisation(score, sde, x_T: torch.Tensor, ts: torch.Tensor, scheme: str = "euler") -> float:
    """E ||x_h - x_ref||^2 between the scheme on grid ``ts`` and the adaptive reference from the same
    x_T: a coupling of the two laws, so an upper bound on W2^2(p_ODE^h, p_ODE)."""
    return coupling_bound(ode_discretisation_pairs(score, sde, x_T, ts, scheme))


def sde_discretisation(score, sde, x_T: torch.Tensor, ts: torch.Tensor, generator, scheme: str = "euler",
                       k: int = 4) -> float:
    """E ||x_h - x_{h/k}||^2 with both driven by the same Brownian path: a coupling, so an upper
    bound on W2^2 between the laws at steps h and h/k (a proxy for the SDE's discretisation error)."""
    return coupling_bound(sde_discretisation_pairs(score, sde, x_T, ts, generator, scheme, k))


ODE_SAMPLERS = {"euler": euler_ode, "heun": heun_ode}
SDE_SAMPLERS = {"euler": euler_maruyama, "heun": heun_sde}


def sample_pair(score, sde, n: int, dim: int, ts: torch.Tensor, seed: int, scheme: str = "euler",
                chunk: int = 100_000, dtype=torch.float32, device=None, progress=None, sde_too: bool = True,
                noise_last_step: bool = False):
    """n ODE and n SDE samples of one model from the same prior points x_T ~ pi.

    Chunk c uses generators seeded (seed, c), so the result does not depend on chunk order. The SDE's last
    step adds no noise (the authors' code) unless ``noise_last_step``.
    Returns (x_ode, x_sde) as CPU tensors of shape (n, dim); with ``sde_too`` False, (x_ode, None)
    (the same ODE samples, the SDE not run).
    """
    if scheme not in ODE_SAMPLERS:
        raise FpbenchError(f"unknown sampler scheme {scheme!r}; known: {', '.join(ODE_SAMPLERS)}")
    ts = ts.to(torch.float64)
    odes, sdes = [], []
    for c, start in enumerate(range(0, n, chunk)):
        size = min(chunk, n - start)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + c)
        x_T = sde.prior_sample(size, dim, gen, dtype=dtype, device=device)
        odes.append(ODE_SAMPLERS[scheme](score, sde, x_T, ts).detach().cpu())
        if sde_too:
            sdes.append(SDE_SAMPLERS[scheme](score, sde, x_T, ts, gen, noise_last_step=noise_last_step).detach().cpu())
        if progress is not None:
            progress(size)
    return torch.cat(odes), torch.cat(sdes) if sde_too else None
