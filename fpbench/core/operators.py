"""Batched differential operators of scalar fields phi(x, t) and vector fields s(x, t).

Every function takes a *row-independent* batched callable (row i of the output depends only on
row i of the input, as for an MLP or an exact density), x of shape (n, d) and t of shape (n,).
Row independence makes grad_x sum_i phi(x_i) the batch of per-row gradients, so one reverse pass
gives all n gradients; second derivatives take d more passes (exact), or one pass per probe
vector (Hutchinson) for large d.

Implementation note: these use ``torch.autograd.grad(create_graph=True)`` rather than nested
``torch.func`` transforms. On the authors' network with 50,000 points, nested ``torch.func.vjp``
measured 4.3x slower on CPU (it replays the forward pass once per direction), and
``torch.special.log_ndtr`` (checkerboard density) has no vmap batching rule. The results agree
to float precision; ``create_graph`` defaults to True so the outputs can be trained through.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

ScalarField = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (n,d),(n,) -> (n,)
VectorField = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (n,d),(n,) -> (n,d)


def _leaf(x: torch.Tensor) -> torch.Tensor:
    return x if x.requires_grad else x.detach().requires_grad_(True)


def grad_of_sum(out: torch.Tensor, inp: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """d(sum out)/d inp: the per-row gradients of a row-independent function (zero where ``out`` does not
    depend on ``inp`` at all, e.g. the checkerboard's piecewise-constant density at t = 0)."""
    if not out.requires_grad:
        return torch.zeros_like(inp)
    (g,) = torch.autograd.grad(out.sum(), inp, create_graph=create_graph, retain_graph=True,
                               allow_unused=True)
    return torch.zeros_like(inp) if g is None else g


def gradient(phi: ScalarField, x, t, create_graph: bool = True) -> torch.Tensor:
    """grad_x phi(x, t), shape (n, d)."""
    with torch.enable_grad():
        x = _leaf(x)
        return grad_of_sum(phi(x, t), x, create_graph)


def time_derivative(phi: ScalarField, x, t, create_graph: bool = True) -> torch.Tensor:
    """d phi / dt (x, t), shape (n,)."""
    with torch.enable_grad():
        t = _leaf(t)
        return grad_of_sum(phi(x, t), t, create_graph)


def jacobian(s: VectorField, x, t, create_graph: bool = True) -> torch.Tensor:
    """J_ij = d s_i / d x_j, shape (n, d_out, d); d_out reverse passes."""
    with torch.enable_grad():
        x = _leaf(x)
        out = s(x, t)
        rows = [grad_of_sum(out[:, i], x, create_graph) for i in range(out.shape[-1])]
    return torch.stack(rows, dim=1)


def divergence(s: VectorField, x, t, create_graph: bool = True) -> torch.Tensor:
    """div_x s = sum_i d s_i / d x_i, exact, shape (n,)."""
    with torch.enable_grad():
        x = _leaf(x)
        out = s(x, t)
        return sum(grad_of_sum(out[:, i], x, create_graph)[:, i] for i in range(out.shape[-1]))


def laplacian(phi: ScalarField, x, t, create_graph: bool = True) -> torch.Tensor:
    """Delta_x phi = div grad phi, exact, shape (n,)."""
    return divergence(lambda xx, tt: gradient(phi, xx, tt, create_graph=True), x, t, create_graph)


def derivatives(phi: ScalarField, x, t, create_graph: bool = True):
    """(phi, d phi/dt, grad_x phi, Delta_x phi) sharing one forward pass; the residuals' workhorse."""
    with torch.enable_grad():
        x, t = _leaf(x), _leaf(t)
        value = phi(x, t)
        gx, gt = torch.autograd.grad(value.sum(), (x, t), create_graph=True)
        lap = sum(grad_of_sum(gx[:, j], x, create_graph)[:, j] for j in range(x.shape[-1]))
    if not create_graph:
        value, gx, gt = value.detach(), gx.detach(), gt.detach()
    return value, gt, gx, lap


def _probes(x: torch.Tensor, n_probes: int, generator) -> torch.Tensor:
    """Rademacher probe vectors, shape (n_probes, n, d)."""
    v = torch.randint(0, 2, (n_probes, *x.shape), generator=generator, device=x.device)
    return (2 * v - 1).to(x.dtype)


def divergence_hutchinson(s: VectorField, x, t, n_probes: int = 8, generator=None,
                          create_graph: bool = True) -> torch.Tensor:
    """Unbiased div s ~ mean_v v^T J v (Hutchinson 1989), Rademacher v; shape (n,)."""
    with torch.enable_grad():
        x = _leaf(x)
        out = s(x, t)
        est = [(grad_of_sum((out * v).sum(-1), x, create_graph) * v).sum(-1) for v in _probes(x, n_probes, generator)]
    return torch.stack(est).mean(0)


def laplacian_hutchinson(phi: ScalarField, x, t, n_probes: int = 8, generator=None,
                         create_graph: bool = True) -> torch.Tensor:
    """Unbiased Delta phi ~ mean_v v^T H v, Rademacher v; shape (n,)."""
    return divergence_hutchinson(lambda xx, tt: gradient(phi, xx, tt, create_graph=True), x, t,
                                 n_probes, generator, create_graph)


def curl(s: VectorField, x, t, create_graph: bool = False) -> torch.Tensor:
    """Curl of s: the scalar d1 s2 - d2 s1 in 2D; ||J - J^T||_F / sqrt(2) otherwise (shape (n,)).

    In 2D, ||J - J^T||_F / sqrt(2) = |d1 s2 - d2 s1|, so the two agree up to sign.
    """
    jac = jacobian(s, x, t, create_graph=create_graph)
    if x.shape[-1] == 2:
        return jac[:, 1, 0] - jac[:, 0, 1]
    return torch.linalg.matrix_norm(jac - jac.transpose(1, 2)) / math.sqrt(2)


def curl_norm_hutchinson(s: VectorField, x, t, n_probes: int = 16, generator=None) -> torch.Tensor:
    """||J - J^T||_F / sqrt(2) with ||A||_F^2 = E ||A v||^2 for Rademacher v; A v = J v - J^T v.

    J v is a forward-mode product (torch.func.jvp), J^T v a reverse-mode one; shape (n,).
    """
    from torch.func import jvp, vjp

    fn = lambda xx: s(xx, t)  # noqa: E731
    sq = []
    for v in _probes(x, n_probes, generator):
        _, jv = jvp(fn, (x.detach(),), (v,))
        _, pull = vjp(fn, x.detach())
        (jtv,) = pull(v)
        sq.append(((jv - jtv) ** 2).sum(-1))
    return torch.sqrt(torch.stack(sq).mean(0) / 2)
