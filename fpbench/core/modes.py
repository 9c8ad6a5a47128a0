"""Spurious modes of a potential model's density at small t (Plainer et al., NeurIPS 2025).

A potential model phi_theta(x, t) defines a density q_t ∝ exp(phi_theta(x, t)) beside its score. DSM
constrains phi only where the data put mass, so between two well-separated modes at small t nothing
stops phi from rising: q_t can grow a mode that p_t does not have, and a simulation that samples q_t
(Langevin dynamics on the learned energy, as in molecular dynamics) visits it. The log-FP residual
(eq. 20) ties small t to large t, where the modes overlap, which is why it is said to remove such modes.

Both densities are evaluated on one node grid over a box (2D): the nodes, each density normalised over
them, their local maxima, and the mass each puts where p_t has (almost) none. The exact density is the
oracle: a model equal to it has no spurious mode and the exact's own off-support mass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .residuals import PAPER_EDGES


@dataclass(frozen=True)
class ModeSettings:
    """Where and how modes are looked for: fpbench's choices (the paper has no such measure), used as
    these defaults by every case and printed in the methods report."""

    t: float = 0.01  # the time at which q_t and p_t are compared (small: the data's own density)
    low: float = PAPER_EDGES[0]  # the box [low, high]^2: the paper's
    high: float = PAPER_EDGES[1]
    nodes: int = 141  # nodes per axis (spacing 0.05 on the paper's box)
    rel_height: float = 1e-3  # a local maximum counts as a mode when its density is >= this x the largest
    radius: float = 0.5  # a model mode farther than this from every exact mode is spurious
    support: float = 1e-4  # "where p_t has almost nothing": p_t < support x max p_t on the grid


def grid_nodes(s: ModeSettings, dtype=torch.float64) -> torch.Tensor:
    """(nodes^2, 2) nodes, node (i, j) at (lin[i], lin[j]), flat index i * nodes + j."""
    axis = torch.linspace(s.low, s.high, s.nodes, dtype=dtype)
    xx, yy = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)


def normalised_log_density(log_density: np.ndarray) -> np.ndarray:
    """Log of the node weights exp(log_density) / sum: a density normalised over the grid."""
    shifted = log_density - log_density.max()
    return shifted - np.log(np.exp(shifted).sum())


def local_maxima(log_w: np.ndarray, rel_height: float) -> np.ndarray:
    """(k, 2) grid indices of the nodes strictly above all 8 neighbours (edge nodes compared with those
    they have) whose weight is at least ``rel_height`` times the largest. log_w: (n, n)."""
    padded = np.pad(log_w, 1, constant_values=-np.inf)
    n = log_w.shape[0]
    is_max = np.ones_like(log_w, dtype=bool)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di or dj:
                is_max &= log_w > padded[1 + di:1 + di + n, 1 + dj:1 + dj + n]
    is_max &= log_w >= log_w.max() + np.log(rel_height)
    return np.argwhere(is_max)


def _log_density_on_grid(fn, x: torch.Tensor, t: float, chunk: int = 20_000) -> np.ndarray:
    out = []
    with torch.no_grad():
        for start in range(0, len(x), chunk):
            xs = x[start:start + chunk]
            out.append(fn(xs, torch.full((len(xs),), t, dtype=xs.dtype, device=xs.device)).detach().double().cpu())
    return torch.cat(out).numpy()


def compare_modes(model_log_density, exact_log_density, settings: ModeSettings = ModeSettings(),
                  dtype=torch.float32, device=None) -> dict:
    """The model's and the exact density's modes and off-support mass at ``settings.t`` on the grid.

    model_log_density(x, t): phi_theta (any additive constant); exact_log_density(x, t): log p_t.
    Returns counts of modes (model, exact, spurious: model modes farther than ``radius`` from every
    exact mode, missing: exact modes with no model mode within ``radius``) and the mass q_t and p_t put
    where p_t < ``support`` x its largest node value."""
    s = settings
    x = grid_nodes(s)
    shape = (s.nodes, s.nodes)
    log_q = normalised_log_density(_log_density_on_grid(model_log_density, x.to(device, dtype), s.t)).reshape(shape)
    log_p = normalised_log_density(_log_density_on_grid(exact_log_density, x, s.t)).reshape(shape)
    if not np.isfinite(log_q).all():
        raise ValueError("the model's potential is not finite on the mode grid")
    axis = np.linspace(s.low, s.high, s.nodes)
    model_modes = axis[local_maxima(log_q, s.rel_height)]
    exact_modes = axis[local_maxima(log_p, s.rel_height)]
    dist = np.linalg.norm(model_modes[:, None, :] - exact_modes[None, :, :], axis=-1)
    off = log_p < log_p.max() + np.log(s.support)
    return {"modes_model": len(model_modes), "modes_exact": len(exact_modes),
            "modes_spurious": int((dist.min(axis=1, initial=np.inf) > s.radius).sum()),
            "modes_missing": int((dist.min(axis=0, initial=np.inf) > s.radius).sum()),
            "offsupport_mass": float(np.exp(log_q[off]).sum()),
            "offsupport_mass_exact": float(np.exp(log_p[off]).sum())}
