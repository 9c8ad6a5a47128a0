"""Forward-mode derivatives of E same-shape MLPs at once, without nested autograd.

fpbench's networks (``fpbench.core.models.mlp``) are Linear + Softplus(beta) stacks on the input
z = (t, x_1, ..., x_d). Pushing derivatives forward through such a stack is exact and cheap:
for a hidden pre-activation h with tangents h_k = dh/dz_k, second tangents h_kl and Laplacian
Lh = sum_{i in x} h_ii, the activation a = softplus(h) has

    a_k  = s'(h) h_k,     a_kl = s'(h) h_kl + s''(h) h_k h_l,
    La   = s'(h) Lh + s''(h) sum_{i in x} h_i^2,

and a Linear layer maps values, tangents and second tangents alike (bias on values only). All
rows (values, the tangents, the Laplacian) of all E members go through one batched matmul per
layer, so the log-FP residual (eq. 16/20) costs about (d + 3) forward passes instead of the
d + 2 nested reverse passes of ``fpbench.core.operators``; the parameter gradient of a loss built
from them is one ordinary backward pass.

Parameters are stacked from the members' own ``nn.Linear`` weights on every call
(``torch.stack`` is differentiable), so gradients land in each member's parameters and one
Adam over all of them is E independent Adams. Verified against ``fpbench.core.operators`` (which is
verified against closed forms) in ``tests/test_jet.py``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Jet:
    """Outputs of E members at n points: ``value`` (E, n, o); ``tangent`` (E, k, n, o) for the k
    requested input directions; ``laplacian`` (E, n, o) over x; ``hessian`` (E, d, d, n, o) over x."""

    value: torch.Tensor
    tangent: torch.Tensor | None = None
    laplacian: torch.Tensor | None = None
    hessian: torch.Tensor | None = None


def supports(model) -> bool:
    """True when ``model.net`` is an ``fpbench.core.models.mlp`` stack (Linear, Softplus, ..., Linear)."""
    net = getattr(model, "net", None)
    if not isinstance(net, nn.Sequential) or len(net) % 2 != 1:
        return False
    return all(isinstance(m, nn.Linear if i % 2 == 0 else nn.Softplus) for i, m in enumerate(net))


class BatchedMLP:
    """E models of one shape (PotentialMLP or ScoreMLP) evaluated together; inputs are (E, n, .)."""

    def __init__(self, models):
        self.models = list(models)
        if not self.models or not all(supports(m) for m in self.models):
            raise ValueError("BatchedMLP needs fpbench MLP models (Linear + Softplus stacks)")
        net = self.models[0].net
        self.beta, self.threshold = float(net[1].beta), float(net[1].threshold)
        self.is_potential = bool(getattr(self.models[0], "is_potential", False))
        self.dim = self.models[0].dim
        self._layers = None

    @property
    def spec(self) -> tuple[float, float, bool, int]:
        """(beta, threshold, is_potential, dim): with ``layers()``, all that defines the members."""
        return self.beta, self.threshold, self.is_potential, self.dim

    @classmethod
    def from_layers(cls, layers: list, spec: tuple[float, float, bool, int]) -> BatchedMLP:
        """Members given by stacked ``layers`` [(W, b)] and ``spec``: a pure function of tensors, which
        ``torch.compile`` can trace once for any members of the same shape."""
        batched = cls.__new__(cls)
        batched.models, batched._layers = [], list(layers)
        batched.beta, batched.threshold, batched.is_potential, batched.dim = spec
        return batched

    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(W (E, out, in), b (E, out))], stacked from the members' parameters (differentiable)."""
        if self._layers is not None:
            return self._layers
        nets = [m.net for m in self.models]
        if len(nets) == 1:  # one member (the CPU's way): a view, no copy
            return [(nets[0][i].weight.unsqueeze(0), nets[0][i].bias.unsqueeze(0)) for i in range(0, len(nets[0]), 2)]
        return [(torch.stack([n[i].weight for n in nets]), torch.stack([n[i].bias for n in nets]))
                for i in range(0, len(nets[0]), 2)]

    def _activation(self, h: torch.Tensor):
        """softplus(h) and its first two derivatives (torch's linear regime above the threshold)."""
        s1, a, s2 = SoftplusDerivatives.apply(h, self.beta, self.threshold, True, True)
        return a, s1, s2

    @staticmethod
    def _input(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t[..., None].to(x.dtype), x], dim=-1)  # (t, x): the models' input order

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Outputs (E, n, o) for x (E, n, d), t (E, n)."""
        a = self._input(x, t)
        layers = self.layers()
        for i, (w, b) in enumerate(layers):
            a = _matmul(a, w.transpose(1, 2), b)
            if i < len(layers) - 1:
                a = F.softplus(a, self.beta, self.threshold)
        return a

    def jet(self, x: torch.Tensor, t: torch.Tensor, directions: list[int], laplacian: bool = False,
            hessian: bool = False) -> Jet:
        """Values and forward-mode derivatives; ``directions`` index z = (t, x) (0 is t, 1..d are x).
        ``laplacian``/``hessian`` are over x and need all x directions among ``directions``."""
        d = x.shape[-1]
        xdirs = [directions.index(1 + i) for i in range(d)] if (laplacian or hessian) else []
        layers = self.layers()
        w0, b0 = layers[0]
        z = self._input(x, t)
        h = _matmul(z, w0.transpose(1, 2), b0)  # (E, n, w)
        dh = w0[:, None, :, directions].permute(0, 3, 1, 2)  # (E, k, 1, w): constant in n
        lh = torch.zeros_like(h) if laplacian else None
        hh = torch.zeros((*h.shape[:1], d, d, *h.shape[1:]), dtype=h.dtype, device=h.device) if hessian else None
        for w, b in layers[1:]:
            a, s1, s2 = self._activation(h)
            da = s1[:, None] * dh
            if laplacian:
                lh = s1 * lh + s2 * (dh[:, xdirs] ** 2).sum(1)
            if hessian:
                dx = dh[:, xdirs]
                hh = s1[:, None, None] * hh + s2[:, None, None] * dx[:, :, None] * dx[:, None, :]
            h, dh, lh, hh = self._linear(w, b, a, da, lh, hh)
        return Jet(h, dh, lh, hh)

    @staticmethod
    def _linear(w, b, a, da, la, ha):
        """One Linear layer on values, tangents, Laplacian and Hessian rows in a single batched matmul."""
        e, n, width = a.shape
        parts = [a, da.expand(e, da.shape[1], n, width).reshape(e, -1, width)]
        if la is not None:
            parts.append(la)
        if ha is not None:
            parts.append(ha.reshape(e, -1, width))
        out = _matmul(torch.cat(parts, 1), w.transpose(1, 2))
        o, k = out.shape[-1], da.shape[1]
        h = out[:, :n] + b[:, None, :]
        dh = out[:, n:n + k * n].reshape(e, k, n, o)
        rest = out[:, n + k * n:]
        lh = rest[:, :n] if la is not None else None
        hh = rest[:, -ha[0].numel() // width:].reshape(e, *ha.shape[1:3], n, o) if ha is not None else None
        return h, dh, lh, hh

    # --- what the losses and samplers need -------------------------------------------------------

    def score(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """s(x, t), (E, n, d): grad_x phi for potentials, the output for score models.

        For potentials the gradient is written out in reverse mode (chain rule from the output
        back to the input, as ordinary tensor operations): one forward pass keeping s'(h) of each
        layer, then one pass of matmuls with the transposed weights. Fewer operations than the d
        tangents of forward mode, and differentiable once by autograd for training."""
        if not self.is_potential:
            return self.forward(x, t)
        layers = self.layers()
        a, slopes = self._input(x, t), []
        for i, (w, b) in enumerate(layers[:-1]):
            h = _matmul(a, w.transpose(1, 2), b)
            # the last hidden layer's value is not needed for the gradient
            s1, a, _ = SoftplusDerivatives.apply(h, self.beta, self.threshold, i < len(layers) - 2, False)
            slopes.append(s1)
        g = layers[-1][0] * slopes[-1]  # d phi / d h_L: (E, 1, w) * (E, n, w)
        for i in range(len(layers) - 2, 0, -1):
            g = torch.bmm(g, layers[i][0]) * slopes[i - 1]
        return _matmul(g, layers[0][0][:, :, 1:])  # drop the t column of the first layer

    def potential_derivatives(self, x: torch.Tensor, t: torch.Tensor):
        """(u, d_t u, grad_x u, Delta_x u) of potentials: (E, n), (E, n), (E, n, d), (E, n)."""
        j = self.jet(x, t, list(range(x.shape[-1] + 1)), laplacian=True)
        tangent = j.tangent[..., 0]
        return j.value[..., 0], tangent[:, 0], tangent[:, 1:].permute(0, 2, 1), j.laplacian[..., 0]

    def score_derivatives(self, x: torch.Tensor, t: torch.Tensor):
        """(s, d_t s, Jacobian J_ij = ds_i/dx_j, grad_x div s) of score models:
        (E, n, d), (E, n, d), (E, n, d, d), (E, n, d)."""
        j = self.jet(x, t, list(range(x.shape[-1] + 1)), hessian=True)
        s_t = j.tangent[:, 0]
        jac = j.tangent[:, 1:].permute(0, 2, 3, 1)  # (E, n, i, j)
        return j.value, s_t, jac, _grad_div(j.hessian)


def _matmul(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """a @ b (+ bias) for (E, n, k) @ (E, k, m) (bias (E, m)); a thin result (m <= 8: a potential's
    output, a score's d columns) goes through ``ThinMatmul``. The bias is added after the product,
    not by ``baddbmm``: that first copies the broadcast bias into every row of its output, a slow
    strided copy (measured 242 us per (4000, 80) output, against about 40 us for the addition, which
    ``torch.compile`` also fuses into the next elementwise loop)."""
    out = torch.bmm(a, b) if b.shape[-1] > 8 else ThinMatmul.apply(a, b)
    return out if bias is None else out + bias[:, None, :]


class ThinMatmul(torch.autograd.Function):
    """a @ b for (E, n, k) @ (E, k, m) with few columns m, each product of the forward and backward
    in the layout that MKL runs fastest (measured for n = 4000, k = 80, m = 2, one thread: the
    product 215 us as a @ b, 110 us as (b^T a^T)^T; grad_a 477 us as (b g^T)^T, 35 us as g b^T;
    grad_b 265 us as a^T g, 34 us as (g^T a)^T). The same numbers; differentiable again (the
    score-FP residual of a potential differentiates its score)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return torch.bmm(b.transpose(1, 2), a.transpose(1, 2)).transpose(1, 2)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        grad_a = torch.bmm(g.contiguous(), b.transpose(1, 2)) if ctx.needs_input_grad[0] else None
        grad_b = torch.bmm(g.transpose(1, 2), a).transpose(1, 2) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b


class SoftplusDerivatives(torch.autograd.Function):
    """(s1, [value], [s2]) of torch's softplus with ``beta``, ``threshold`` at h, as one autograd node:
    s1 = softplus'(h) = sigmoid(beta h), s2 = softplus''(h) = beta s1 (1 - s1), and the value
    softplus(h) when ``value``; s2 when ``curvature``. Its backward is
    grad_h = g_value s1 + g_s1 s2 + g_s2 s3 with s3 = softplus'''(h) = beta s2 (1 - 2 s1).

    One node instead of autograd's chain of sigmoid, clamp, products and softplus saves most of the
    elementwise passes of the backward (measured at quick scale, 2 threads: the chain's clamp
    backward alone took 1.3 ms of a 10 ms DSM iteration). In torch's linear
    regime beta h > threshold, softplus is the identity: s1 = 1, s2 = s3 = 0. In float32 the sigmoid
    rounds to 1 there by itself; its argument is clamped to [-30, 30], which changes s1 by at most
    sigmoid(-30) = 9e-14 (far below float32 resolution of the sums it enters) and avoids exp's
    slow path at large arguments. Wider dtypes are exact, with the mask. Differentiable once (the
    losses need the parameter gradient of the jets, not its derivative)."""

    @staticmethod
    def forward(ctx, h, beta: float, threshold: float, value: bool, curvature: bool):
        if torch.compiler.is_compiling():
            s1, a = softplus_from_one_exp(h, beta, threshold)
        else:
            s1, a = _softplus_eager(h, beta, threshold, value)
        s2 = torch.addcmul(s1 * beta, s1, s1, value=-beta)  # beta s1 (1 - s1)
        ctx.beta = beta
        ctx.save_for_backward(s1, s2)
        return s1, (a if value else None), (s2 if curvature else None)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_s1, g_value, g_s2):
        s1, s2 = ctx.saved_tensors
        grad = torch.zeros_like(s1)
        if g_value is not None:
            grad.addcmul_(g_value, s1)
        if g_s1 is not None:
            grad.addcmul_(g_s1, s2)
        if g_s2 is not None:  # s3 = beta s2 - 2 beta s1 s2
            g_s2 = g_s2 * s2
            grad.add_(g_s2, alpha=ctx.beta).addcmul_(g_s2, s1, value=-2 * ctx.beta)
        return grad, None, None, None, None


def _softplus_eager(h: torch.Tensor, beta: float, threshold: float, value: bool):
    """(s1, softplus) by torch's kernels: the fewest passes when every operation is its own loop."""
    bh = h * beta
    if h.dtype == torch.float32:
        s1 = torch.sigmoid(bh.clamp_(-30.0, 30.0))
    else:
        s1 = torch.where(bh > threshold, torch.ones_like(h), torch.sigmoid(bh))
    return s1, (F.softplus(h, beta, threshold) if value else None)


def softplus_from_one_exp(h: torch.Tensor, beta: float, threshold: float):
    """(sigmoid(beta h), softplus(h)) from one exp e = exp(-beta |h|) in (0, 1]: with r = 1/(1 + e),
    sigmoid = r for h >= 0 and e r below; softplus = relu(h) - log(r)/beta, torch's identity above
    the threshold. Fused by ``torch.compile`` into one loop with one exp and one log per element
    (torch's kernels take two exps, one overflowing, and a log1p, which inductor does not vectorise
    as well as log). Equal to torch's kernels up to rounding: log(r) = -log1p(e) to an absolute
    error of one ulp of 1 (1.2e-7 in float32), so softplus to 1.2e-7/beta absolute (tested)."""
    e = torch.exp(-beta * h.abs())
    r = 1 / (1 + e)
    linear = beta * h > threshold
    s1 = torch.where(linear, 1.0, torch.where(h >= 0, r, e * r))
    a = torch.where(linear, h, torch.relu(h) - torch.log(r) / beta)
    return s1, a


def _grad_div(hessian: torch.Tensor) -> torch.Tensor:
    """grad_k div s = sum_i d_k d_i s_i from the Hessian (E, k, i, n, o=i)."""
    return torch.diagonal(hessian, dim1=2, dim2=4).sum(-1).permute(0, 2, 1)


# Rows per evaluation of the samplers' score: a chunk of particles is evaluated in blocks of this many
# rows, whose activations stay in cache (measured 2026-12-05 on one CPU thread, the authors' network: a
# quick-scale case's 60,000 ODE and SDE samples in 50.0 s against 59.3 s at once, the same samples bit for
# bit; tests/test_jet.py). Other shapes can differ from one evaluation in the last bits (MKL picks its kernel
# path by the number of rows); a case's numbers stay its own, the block being fixed.
SCORE_BLOCK = 8192


def _jet_score(model):
    batched = BatchedMLP([model])
    return lambda x, t: batched.score(x[None], torch.as_tensor(t, dtype=x.dtype, device=x.device)
                                      .expand(x.shape[:-1])[None])[0]


def fast_score(model, block: int = SCORE_BLOCK):
    """``model``'s score as a row-independent (n, d), (n,) -> (n, d) callable through the jet, evaluated
    in blocks of ``block`` rows without an autograd graph (the samplers' score), or ``model.score`` when
    the model is not an fpbench MLP."""
    if not supports(model):
        return model.score
    jet = _jet_score(model)

    def score(x: torch.Tensor, t) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[:-1])
        with torch.no_grad():
            if len(x) <= block:
                return jet(x, t)
            return torch.cat([jet(x[i:i + block], t[i:i + block]) for i in range(0, len(x), block)])

    return score


def compiled_score(model):
    """``fast_score`` through ``torch.compile`` (static shapes: one trace per chunk size and model, about
    16 s each on this CPU): inductor fuses the softplus derivatives and the chain rule's products into a
    few loops around the matmuls (measured on one thread, the authors' network, chunks of 4096: 1.5x the
    eager jet's particle-steps/s). Where compiling fails (no C++ compiler, an unsupported build), this
    warns once and returns the eager ``fast_score``: the same numbers up to rounding."""
    eager = fast_score(model)
    if not supports(model):
        return eager
    compiled, state = torch.compile(_jet_score(model), dynamic=False), {"failed": False}

    def score(x: torch.Tensor, t) -> torch.Tensor:
        if not state["failed"]:
            try:
                return compiled(x, t)
            except Exception as err:  # a compiler problem: the eager path gives the same numbers
                state["failed"] = True
                warnings.warn(f"torch.compile failed ({type(err).__name__}: {str(err)[:200]}); sampling without it",
                              stacklevel=2)
        return eager(x, t)

    return score
