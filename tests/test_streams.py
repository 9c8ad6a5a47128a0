"""The random streams of a case: distinct per stage, disjoint between seeds, a clear error outside range."""

import re
from pathlib import Path

import pytest
import torch

import fpbench
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


SEED_LITERAL = re.compile(r"manual_seed\(\s*\d|(?<!assign\()\bseed\s*=\s*\d")  # not a frame's seed column


def _literal_seeds(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if SEED_LITERAL.search(line)]


def test_the_pipeline_and_its_studies_take_every_seed_from_the_streams_module():
    """A seed typed as a number in a stage of the pipeline (run, analysis, reports) is a second definition of
    a random stream: each is named once in fpbench/core/streams.py."""
    root = Path(fpbench.__file__).parent
    found = {str(path.relative_to(root)): hits for layer in ("run", "analysis", "reports")
             for path in sorted((root / layer).glob("*.py")) if (hits := _literal_seeds(path.read_text()))}
    assert not found, f"seeds typed as numbers (name them in fpbench/core/streams.py): {found}"


def test_the_seed_scan_sees_a_typed_seed():
    assert _literal_seeds("g = torch.Generator().manual_seed(7)\nx = f(seed=3)\ny = f(seed=s)\ndf.assign(seed=0)") == [
        "g = torch.Generator().manual_seed(7)", "x = f(seed=3)"]
