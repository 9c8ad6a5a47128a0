"""The oracle self-check: residuals of the exact densities of every target under every SDE.

The exact diffused log-density solves the log-FP equation (eq. 16) and its gradient the
score-FP equation (eq. 31 with the exact score), so both residuals must vanish to round-off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .models import ExactScore
from .residuals import PAPER_BOX, Box, log_fp_residual, score_fp_residual
from .sde import SDES, make_sde
from .targets import DENSITY_TARGETS, make_target

CHECK_T0 = 0.05  # residuals checked on Omega x [CHECK_T0, T]


@dataclass(frozen=True)
class CheckRow:
    target: str
    sde: str
    max_abs_log_fp: float
    max_abs_score_fp: float
    n_points: int


def check_pair(target_name: str, sde_name: str, n: int = 500, box: Box = PAPER_BOX, seed: int = 0) -> CheckRow:
    """Max |R~| and max |R^s| pointwise of the exact density at n uniform points of Omega x [0.05, T]."""
    sde, target = make_sde(sde_name), make_target(target_name)
    oracle = ExactScore(target, sde)
    gen = torch.Generator().manual_seed(seed)
    x = box.sample(n, target.dim, gen, dtype=torch.float64)
    t = CHECK_T0 + (sde.T - CHECK_T0) * torch.rand(n, generator=gen, dtype=torch.float64)
    r_log = log_fp_residual(oracle.potential, sde, x, t)
    r_score = score_fp_residual(lambda xx, tt: oracle.score(xx, tt, create_graph=True), sde, x, t)
    return CheckRow(target_name, sde_name, r_log.abs().max().item(), r_score.abs().max().item(), n)


def run_check(n: int = 500, box: Box = PAPER_BOX, seed: int = 0, progress=None) -> list[CheckRow]:
    """Every (exact-density target, SDE) pair's residuals; ``progress(i, total, row)`` after each."""
    pairs = [(tn, sn) for tn in DENSITY_TARGETS for sn in SDES]
    rows = []
    for i, (tn, sn) in enumerate(pairs, 1):
        rows.append(check_pair(tn, sn, n, box, seed))
        if progress is not None:
            progress(i, len(pairs), rows[-1])
    return rows


def format_check(rows: list[CheckRow]) -> str:
    from tabulate import tabulate

    table = [(r.target, r.sde, f"{r.max_abs_log_fp:.2e}", f"{r.max_abs_score_fp:.2e}") for r in rows]
    return tabulate(table, headers=["target", "SDE", "max |R~| (eq. 20)", "max |R^s| (eq. 32)"])
