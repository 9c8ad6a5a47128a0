import pytest
import torch

from fpbench.core.sde import SDES, make_sde
from fpbench.core.targets import DENSITY_TARGETS, make_target


@pytest.fixture(autouse=True)
def _one_thread():
    # xdist runs one process per core; keep each single-threaded.
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _serial_runs(monkeypatch):
    # `fpbench run`'s auto settings (execute.fast_settings) take a process pool and torch.compile on a
    # multi-core machine with a compiler; under xdist (one test process per core) a test's run stays in
    # its process, eager, unless the test asks otherwise.
    from fpbench.run import execute

    monkeypatch.setattr(execute, "available_cores", lambda: 1)
    monkeypatch.setattr(execute, "compiler_found", lambda: False)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


ALL_PAIRS = [(tn, sn) for tn in DENSITY_TARGETS for sn in SDES]  # the oracle tests: exact densities


@pytest.fixture
def make():
    return make_target, make_sde
