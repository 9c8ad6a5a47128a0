"""The random streams of a case: distinct per stage, disjoint between seeds, a clear error outside range."""

import pytest
import torch

from fpbench.core import streams

OFFSETS = [streams.SAMPLERS, streams.P0, streams.DIAGNOSTICS, streams.DISCRETISATION, streams.CONVERGENCE]


def test_no_two_streams_of_any_two_seeds_share_a_seed():
    seeds = [streams.seed_for(s, o) for s in (0, 1, 2, streams.SAMPLERS - 1) for o in OFFSETS]
    seeds += [0, 1, 2, streams.SAMPLERS - 1]  # training draws from the case's seed itself
    assert len(set(seeds)) == len(seeds)


def test_a_stream_draws_what_its_seed_draws():
    a = torch.rand(3, generator=streams.generator(4, streams.P0))
    b = torch.rand(3, generator=torch.Generator().manual_seed(4 + streams.P0))
    assert torch.equal(a, b)


@pytest.mark.parametrize("seed", [-1, streams.SAMPLERS])
def test_a_seed_outside_the_range_is_refused(seed):
    with pytest.raises(ValueError, match="do not overlap"):
        streams.seed_for(seed, streams.P0)
