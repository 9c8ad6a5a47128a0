"""The authors' 12 published models as cases of the paper suite: re-sampled and measured by the same
pipeline, metrics and claims as fpbench's own trained models, with no training (``fpbench reference
claims``).

Each case is the paper suite's case for (target, w_R, seed) at its ``paper`` scale (the authors' own
sampler and metrics), with the model replaced by the published checkpoint and the sampling settings of
``config.AUTHORS_RESAMPLING``; the seed is an independent sampling seed. Records land in the results store
like any case's (resumable; each case under its own lock, so two processes can share the work).
"""

from __future__ import annotations

import copy
import hashlib
import time

from ..run.config import AUTHORS_RESAMPLING, deep_merge
from ..run.suite import Case, expand, load_suite
from .paper_values import TARGETS, W_R

SCALE = "authors"  # the cases' scale label in the store and in reports (not a training scale)
MODELS = len(TARGETS) * len(W_R)  # the published models: one checkpoint per (target, w_R) of the paper's tables


def authors_cases(seeds: int | None = None) -> list[Case]:
    """The 12 published models x ``seeds`` sampling seeds (default ``AUTHORS_RESAMPLING['seeds']``)."""
    cases = []
    for case in expand(load_suite("paper"), "paper", seeds or AUTHORS_RESAMPLING["seeds"]):
        cfg = copy.deepcopy(case.config)
        cfg["scale"] = SCALE
        for section in ("sample", "metrics"):
            cfg[section] = deep_merge(cfg[section], AUTHORS_RESAMPLING[section])
        w_r = cfg["method"]["params"]["w_r"]
        cfg["model"] = {**cfg["model"], "kind": "authors", "checkpoint": f"{cfg['target']['name']}/w{w_r:.1f}"}
        cases.append(Case(cfg))
    return sorted(cases, key=lambda c: c.config["seed"])  # seed by seed: a partial run holds whole seeds


def run_authors_case(case: Case, store, root, device=None, log=print, compile: bool = False) -> dict:
    """Sample and evaluate one published model (``case`` from ``authors_cases``); its record. ``compile``:
    the sampler's score through ``torch.compile`` (not part of the case: the same numbers up to rounding)."""
    import torch

    from ..run.pipeline import run_untrained
    from .reference import checkpoint_path, load_checkpoint

    cfg = case.config
    path = checkpoint_path(root, cfg["target"]["name"], cfg["method"]["params"]["w_r"])
    info = {"authors": str(path.relative_to(root)), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    dtype = getattr(torch, cfg["train"]["dtype"])  # as the runner evaluates fpbench's own models
    return run_untrained(case, store, lambda target: load_checkpoint(path, dtype=dtype), info | {"compiled": compile},
                         device, log=log, with_oracle=False, compile=compile)


def run_authors(root, results: str | None = None, seeds: int | None = None, device=None, log=print,
                compile: bool = True, bundle=None, deadline: float | None = None) -> tuple:
    """Run the published models' cases the store lacks (skipping those another process holds; a failed
    case is marked failed and the others go on), then return ``results.collect``'s (frame, records,
    missing) of all of them. ``bundle``: a result bundle of these cases (``fpbench.run.bundle``), opened
    into the store first and given each case as it finishes, so that a run committed as it goes resumes
    on another machine from its last finished case. ``deadline`` (a ``time.time()``): no case starts after
    it (the finished ones are kept; the same call resumes)."""
    from ..run.execute import BUSY, failed_outcome, release, try_claim
    from ..run.results import collect
    from ..run.store import Store, results_root

    store = Store(results_root(results)).check_writable()
    cases = authors_cases(seeds)
    _sync_bundle(store, bundle, cases)
    check_checkpoints(root, [c for c in cases if not store.is_done(c.key)], log)
    for case in cases:  # one lock at a time, so that two processes share the cases
        if store.is_done(case.key):
            continue
        if deadline is not None and time.time() >= deadline:
            log("stopped at the time budget: no case started after it")
            break
        if (lock := try_claim(store, case.key)) is None:
            log(f"busy   {case.label} [{case.key}]: {BUSY}")
            continue
        try:
            run_authors_case(case, store, root, device, log, compile)
        except Exception as err:  # noqa: BLE001 - one model's failure is stored and reported; the others go on
            failed_outcome(store, case, err, log)
        finally:
            release(store, case.key, lock)
        _add_to_bundle(store, bundle, cases)
    return collect(store, cases)


def _sync_bundle(store, bundle, cases: list[Case]) -> None:
    """The bundle's cases and the store's merged, both ways (nothing without a bundle)."""
    from pathlib import Path

    from ..run.bundle import open_bundle_if_any

    if bundle is not None:
        open_bundle_if_any(Path(bundle), store.root)
        _add_to_bundle(store, bundle, cases)


def _add_to_bundle(store, bundle, cases: list[Case]) -> None:
    from pathlib import Path

    from ..run.bundle import write_bundle

    if bundle is not None:
        write_bundle(store.root, cases, Path(bundle), "paper", SCALE, resumable=False)


def check_checkpoints(root, cases: list[Case], log=print) -> None:
    """Load every checkpoint the ``cases`` need before any is sampled: a refused one (truncated, not the
    authors' network) stops the run at once with its reason (``reference.ReferenceError``), not after hours
    of sampling the others."""
    from .reference import checkpoint_path, load_checkpoint

    for path in dict.fromkeys(checkpoint_path(root, c.config["target"]["name"], c.config["method"]["params"]["w_r"])
                              for c in cases):
        load_checkpoint(path)
        log(f"checked {path.relative_to(root)}")


def authors_results(store, seeds: int | None = None, bundle=None):
    """(frame, records, missing) of the published models' cases in ``store`` (none run here); with a
    ``bundle``, the bundle's cases and the store's are merged first, both ways."""
    from ..run.results import collect

    cases = authors_cases(seeds)
    _sync_bundle(store, bundle, cases)
    return collect(store, cases)


def whole_seeds(df, records: list[dict]) -> tuple:
    """(frame, records, {seed: finished}) of the sampling seeds whose every published model is finished, and
    the finished counts of the seeds left out: the claims are decided on whole seeds only, so that a partly
    run seed does not give some models more replicates than others (a run finishes seed by seed)."""
    if df.empty:
        return df, records, {}
    finished = df.groupby("seed").size()
    keep = df["seed"].map(finished == MODELS).to_numpy(dtype=bool)
    left_out = {int(seed): int(n) for seed, n in finished.items() if n < MODELS}
    return df[keep].reset_index(drop=True), [r for r, k in zip(records, keep) if k], left_out
