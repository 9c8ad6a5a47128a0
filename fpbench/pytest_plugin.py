"""pytest plugin (entry point ``pytest11``): options and fixtures for the claim suites.

    pytest suites/paper                                # smoke scale, results under ./results
    pytest suites/paper --fpbench-scale quick --fpbench-results /data/fpbench
    pytest suites/paper --fpbench-scale converged --fpbench-bundle bundles/paper-converged   # no training

The session fixture ``claim_results`` runs whatever cases of the suites are missing from the store
(a rerun resumes), then hands the tests their results frames.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("fpbench", "fpbench claim suites")
    group.addoption("--fpbench-scale", default="smoke", help="scale of the suites' cases (default: smoke)")
    group.addoption("--fpbench-results", default=None,
                    help="results root (default: $FPBENCH_RESULTS, else ./results)")
    group.addoption("--fpbench-device", default="cpu", help="device for missing cases: cpu or cuda")
    group.addoption("--fpbench-bundle", default=None,
                    help="a result bundle (e.g. bundles/paper-converged), verified and opened into the results "
                         "store first: its finished cases are decided without training")


def pytest_configure(config):
    """An absent ``--fpbench-device`` is a usage error before any case runs (as ``fpbench run --device``)."""
    from fpbench.run.execute import DeviceError, resolve_device

    try:
        resolve_device(config.getoption("--fpbench-device"))
    except DeviceError as err:
        raise pytest.UsageError(f"--fpbench-device: {err}") from None


@pytest.fixture(scope="session")
def fpbench_scale(request) -> str:
    return request.config.getoption("--fpbench-scale")


@pytest.fixture(scope="session")
def fpbench_store(request):
    from .run.store import Store, results_root

    root = results_root(request.config.getoption("--fpbench-results") or os.environ.get("FPBENCH_RESULTS"))
    bundle = request.config.getoption("--fpbench-bundle")
    if bundle is None:
        return Store(root)
    from .run.bundle import open_bundle

    return open_bundle(Path(bundle), root)


@pytest.fixture(scope="session")
def claim_results(request, fpbench_scale, fpbench_store) -> dict:
    """{'paper': (frame, records), 'curl': (frame, records), 'store': store, 'scale': scale}."""
    from fpbench.run.execute import resolve_device, run_suite

    device = resolve_device(request.config.getoption("--fpbench-device"))
    quiet = lambda message: None  # noqa: E731 - the runner's log callback
    return {name: run_suite(name, fpbench_scale, str(fpbench_store.root), device=device, log=quiet)
            for name in ("paper", "curl")} | {"store": fpbench_store, "scale": fpbench_scale}


@pytest.fixture(scope="session")
def lab_results(fpbench_scale, fpbench_store) -> dict:
    """{'frame': the error-injection lab's records at the scale (missing models measured first), 'lab': its
    declaration}. The lab has the claim suites' scale names (smoke, quick)."""
    from fpbench.run.lab import load_lab, run_lab

    return {"frame": run_lab(fpbench_scale, str(fpbench_store.root), log=lambda message: None),
            "lab": load_lab(fpbench_scale)}
