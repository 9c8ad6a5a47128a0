"""Convergence evidence for a trained model, measured against the oracle.

Every built-in target has an exact score s* = grad log p(x, t), so how far a model is from having
learned its target is measured, not assumed. At the times ``GATE_FRACTIONS`` x T, with x ~ p_t
(x_0 ~ p0 pushed through the forward kernel):

- the *score ratio* r(t) = E[s_theta . s*] / E|s*|^2: 1 when the model's score has the exact
  score's size along it, 0 for the trivial log-FP solution u = 2t + c (eq. 16 with a zero score),
  toward which every w_R > 0 model first collapses;
- the *relative score error* e(t) = E|s_theta - s*|^2 / E|s*|^2 (0 for the exact score).

Their summary: the smallest and largest r(t) over the late times (t >= ``LATE_FRACTION`` T, where
the regulariser does not shrink a converged score: the authors' 12 models all have r within 4% of 1
there, while at t = 0.001 T their w_R = 10 models have r = 0.3-0.8), and the mean of e(t) over all
gate times, each with a delta-method standard error over the sampled points (``ratio_of_means``). The
*loss plateau* is the relative change of the median logged loss between the two halves of the last
``PLATEAU_TAIL`` of training (small when training has stopped improving; the median is not moved by
the occasional spike of a minibatch loss).

The gate that reads this evidence, and its thresholds, are in ``fpbench.analysis.claims``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import streams

GATE_FRACTIONS = (0.001, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0)  # x T: for the paper's OU (T = 10) 0.01 ... 10
LATE_FRACTION = 0.05
EARLY_FRACTION = 0.05  # the score error over t <= 0.05 T, where the ODE's quality is decided, is reported apart
GATE_POINTS = 4000  # x ~ p_t per gate time
PLATEAU_TAIL = 0.2


def score_profile(score, target, sde, n: int = GATE_POINTS, generator: torch.Generator | None = None,
                  dtype=torch.float32, device=None) -> dict:
    """r(t) and e(t) of ``score(x, t)`` at ``GATE_FRACTIONS`` x T (module docstring), with their
    summaries. The exact score is computed in float64; the model in ``dtype`` on ``device``."""
    gen = generator or torch.Generator().manual_seed(0)
    times, ratio, error, ratio_se, error_se = [], [], [], [], []
    for fraction in GATE_FRACTIONS:
        t_value = fraction * sde.T
        x0 = target.sample(n, gen, dtype=torch.float64)
        t = torch.full((n,), t_value, dtype=torch.float64)
        xt, _ = sde.kernel_sample(x0, t, gen)
        exact = target.score(xt, t, sde).detach()
        model = score(xt.to(device, dtype), t.to(device, dtype)).detach().double().cpu()
        norm = (exact**2).sum(-1)
        times.append(t_value)
        for values, out, se in (((model * exact).sum(-1), ratio, ratio_se),
                                (((model - exact) ** 2).sum(-1), error, error_se)):
            value, sd = ratio_of_means(values.numpy(), norm.numpy())
            out.append(value)
            se.append(sd)
    late = [i for i, f in enumerate(GATE_FRACTIONS) if f >= LATE_FRACTION]
    early = [i for i, f in enumerate(GATE_FRACTIONS) if f <= EARLY_FRACTION]
    low, high = min(late, key=lambda i: ratio[i]), max(late, key=lambda i: ratio[i])
    mean_se = lambda idx: float(np.sqrt(np.sum(np.square([error_se[i] for i in idx])))) / len(idx)  # noqa: E731
    return {"times": times, "ratio": ratio, "rel_error_t": error, "ratio_min_late": ratio[low],
            "ratio_max_late": ratio[high], "rel_error": float(np.mean(error)),
            "ratio_min_late_se": ratio_se[low], "ratio_max_late_se": ratio_se[high],
            "rel_error_se": mean_se(range(len(error))),
            "rel_error_early": float(np.mean([error[i] for i in early])), "rel_error_early_se": mean_se(early)}


def ratio_of_means(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """mean(a) / mean(b) over the same points, with its delta-method standard error:
    var(r) ~ (var(a) - 2 r cov(a, b) + r^2 var(b)) / (n mean(b)^2)."""
    r = float(a.mean() / b.mean())
    cov = np.cov(a, b)
    var = (cov[0, 0] - 2 * r * cov[0, 1] + r**2 * cov[1, 1]) / (len(a) * b.mean() ** 2)
    return r, float(np.sqrt(max(var, 0.0)))


def _tail(history: list[dict], key: str, tail: float) -> np.ndarray:
    """``key`` of the logged rows in the last ``tail`` of training (empty without a history or the key)."""
    if not history:
        return np.array([])
    last = history[-1]["iteration"]
    start = last - tail * (last + 1)
    return np.array([h[key] for h in history if h["iteration"] >= start and key in h], dtype=float)


def loss_plateau(history: list[dict], tail: float = PLATEAU_TAIL) -> float:
    """|median loss over the last half of the tail - median over its first half| / |the first|, from the
    logged history (NaN with fewer than 4 logged points in the tail)."""
    losses = _tail(history, "loss", tail)
    if len(losses) < 4:
        return math.nan
    first, second = np.median(losses[: len(losses) // 2]), np.median(losses[len(losses) // 2:])
    return float(abs(second - first) / max(abs(first), np.finfo(float).tiny))


def final_loss(history: list[dict], key: str = "loss", tail: float = PLATEAU_TAIL) -> float:
    """Where training ended on the loss it minimised (or on one of its logged terms, ``key``): the median of the
    logged values over the last ``tail`` of training (a minibatch's loss is noisy; NaN without a history)."""
    values = _tail(history, key, tail)
    return float(np.median(values)) if len(values) else math.nan


def evidence(model, target, sde, history: list[dict], seed: int, dtype=torch.float32, device=None) -> dict:
    """The convergence record stored with every case's metrics: the score profile and the loss plateau."""
    gen = streams.generator(seed, streams.CONVERGENCE)
    out = score_profile(lambda x, t: model.score(x, t), target, sde, GATE_POINTS, gen, dtype, device)
    out["loss_plateau"] = loss_plateau(history)
    return out
