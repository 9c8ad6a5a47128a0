"""The random streams of one case. Each stage draws from its own generator, seeded at a fixed offset
from the case's seed, so that no two stages share random numbers, two seeds of a case never overlap
(seeds stay below the smallest offset), and a rerun draws the same numbers. The offsets fix the
stored results' numbers (not their keys): changing one changes every case's numbers.

Training draws from the case's seed itself (offset 0: ``fpbench.train.loop``)."""

from __future__ import annotations

import torch

from .errors import FpbenchError

SAMPLERS = 10_000  # the prior points and Brownian increments of the ODE and SDE samplers
P0 = 20_000  # the p0 sample the samplers' output is compared with
DIAGNOSTICS = 30_000  # fresh points for R~, R^s, L_DSM, the curl and the prior's score ratio
DISCRETISATION = 40_000  # the particles of the discretisation coupling bounds
CONVERGENCE = 50_000  # x ~ p_t for the score-ratio profile against the exact score

# Draws that belong to no case's seed, each a fixed seed named here once: what every seed's cases share (a
# target's noise floor, the exact score's oracle) and the error-injection lab's planted models (exact scores
# with errors, no training, so no case seed: they draw as the oracle does, with the same numbers).
GRID_FLOOR = 1  # pairs of independent p0 draws for a case's grid W2^2 noise floor (replicate r: see metrics)
POINT_FLOOR = 7919  # the point distances' noise floors: replicate r draws from POINT_FLOOR + r
EXACT_SAMPLERS = 7  # the exact score's (and a planted model's) prior points and Brownian increments
EXACT_P0 = 8  # the p0 sample they are compared with
EXACT_FLOOR = 2  # the noise floor at the oracle's (and the lab's) sample size
EXACT_DISCRETISATION = 0  # the case seed whose DISCRETISATION stream the oracle's coupling bounds draw from
LAB_RESIDUAL = 3  # a planted model's R~ collocation points
LAB_SCORE = 4  # its R^s points, then its score error's x ~ p_t and its curl's points
LAB_DISCRETISATION = 5  # its discretisation bounds' particles and Brownian increments
LAB_BOOTSTRAP = 6  # its W2^2 bootstrap
BENCH = 0  # the inputs of ``fpbench bench``'s timings (their numbers are not results)


def seed_for(seed: int, stream: int) -> int:
    """The seed of ``stream`` (one of this module's offsets) for a case of seed ``seed``."""
    if not 0 <= seed < SAMPLERS:
        raise FpbenchError(f"a case's seed must lie in [0, {SAMPLERS}) so that its streams do not overlap another "
                         f"seed's; got {seed}")
    return seed + stream


def fixed(seed: int) -> torch.Generator:
    """A CPU generator seeded with one of the fixed seeds above."""
    return torch.Generator().manual_seed(seed)


def generator(seed: int, stream: int) -> torch.Generator:
    """A CPU generator for ``stream`` of a case of seed ``seed`` (the same draws on every device)."""
    return torch.Generator().manual_seed(seed_for(seed, stream))
