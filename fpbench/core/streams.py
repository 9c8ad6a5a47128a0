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


def seed_for(seed: int, stream: int) -> int:
    """The seed of ``stream`` (one of this module's offsets) for a case of seed ``seed``."""
    if not 0 <= seed < SAMPLERS:
        raise FpbenchError(f"a case's seed must lie in [0, {SAMPLERS}) so that its streams do not overlap another "
                         f"seed's; got {seed}")
    return seed + stream


def generator(seed: int, stream: int) -> torch.Generator:
    """A CPU generator for ``stream`` of a case of seed ``seed`` (the same draws on every device)."""
    return torch.Generator().manual_seed(seed_for(seed, stream))
