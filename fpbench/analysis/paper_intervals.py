"""The paper's own Tables 1-3 with error bars, from the published histograms of 3,000,000 samples.

Each published histogram is the empirical law of n = 3,000,000 samples on the 64 x 64 grid. Redrawing
it (a multinomial with the published weights) and recomputing a cell gives bootstrap replicates of the
paper's own estimator at the paper's own sample size; two independent redraws of one histogram give the
estimator's noise floor there (what it reads for two samples of one law).

The plain bootstrap of an empirical W2 is not consistent when the two laws are equal (Sommerfeld &
Munk, JRSS-B 2018), and the estimator is biased upward by sampling noise, so the interval method is not
assumed: its coverage is measured on cases whose true grid W2² is known exactly. A law P on the grid
and its copy shifted by k nodes along x have W2² = (k h)² (a translation is the optimal plan), h the
node spacing; k = 0 is the equal-laws case. Three intervals are measured, in this order of preference:

- ``normal``: value ± 1.96 sd of the replicates (what fpbench's own tables print);
- ``basic``: 2 value - mean(replicates) ± 1.96 sd, which removes the bootstrap's estimate of the bias;
- ``floor``: [value - floor - 1.96 sd, value + 1.96 sd]: sampling noise only raises the estimator, by at
  most about its floor (what it reads for two samples of one law, the bias at W2² = 0), so the low end
  allows for all of it.

The first whose measured coverage is consistent with 95% at every known truth is used. A paper's
difference between two cells is *resolved by its own data* when the difference of their values exceeds
1.96 times the root sum of their replicate variances (plus the floor, for the ``floor`` interval: the
two biases may differ by up to it); otherwise it is within the paper's own sampling noise. Cells of one
target share its data histogram, whose noise then enters both cells alike, so treating them as
independent overstates the difference's sd (conservative).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from ..core.metrics import PAPER_GRID, grid_w2_from_weights
from ..run.store import Store
from .paper_values import TABLE_TITLES, TABLES, TARGETS, W_R
from .reference import histogram, table_histograms

PAPER_N = 3_000_000  # samples behind every published histogram (their file names)
STORE_DIR = Path("reference", "intervals")  # where in a results store the study keeps its records
Z = 1.96
METHODS = ("normal", "basic", "floor")  # the order of preference (``interval_method``)


def redraw(weights: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """An empirical law of ``n`` samples from the grid law ``weights`` (normalised here)."""
    p = np.asarray(weights, dtype=np.float64)
    return rng.multinomial(n, p / p.sum()) / n


def replicates(a: np.ndarray, b: np.ndarray, n: int, reps: int, rng: np.random.Generator) -> list[float]:
    """Grid W2² between independent redraws of ``a`` and ``b`` at ``n`` samples each, ``reps`` times."""
    return [grid_w2_from_weights(redraw(a, n, rng), redraw(b, n, rng)) for _ in range(reps)]


@dataclass(frozen=True)
class Interval:
    value: float  # the estimator on the data
    sd: float  # sd of the bootstrap replicates
    boot_mean: float  # their mean
    reps: int

    @property
    def basic_value(self) -> float:
        return 2 * self.value - self.boot_mean

    def bounds(self, method: str, floor: float = 0.0) -> tuple[float, float]:
        """The 95% interval by ``method`` (module docstring); ``floor``: the estimator's floor, for ``floor``."""
        if method == "floor":
            return max(0.0, self.value - floor - Z * self.sd), self.value + Z * self.sd
        centre = self.value if method == "normal" else self.basic_value
        return max(0.0, centre - Z * self.sd), centre + Z * self.sd

    @classmethod
    def from_replicates(cls, value: float, reps: list[float]) -> Interval:
        if len(reps) < 2:
            raise ValueError("an interval needs at least 2 bootstrap replicates")
        return cls(value, float(np.std(reps, ddof=1)), float(np.mean(reps)), len(reps))


def shifted_pair(weights: np.ndarray, k: int, grid=PAPER_GRID) -> tuple[np.ndarray, np.ndarray, float]:
    """(P, Q, true W2²): P is ``weights`` (fpbench's node order) with the last k columns along x emptied,
    Q is P moved k nodes along +x; W2²(P, Q) = (k h)² exactly."""
    p = np.asarray(weights, dtype=np.float64).reshape(grid.n, grid.n).copy()  # [ix, iy]
    if k:
        p[grid.n - k:, :] = 0.0
    q = np.zeros_like(p)
    q[k:, :] = p[:grid.n - k, :]
    return (p / p.sum()).ravel(), (q / q.sum()).ravel(), (k * grid.spacing) ** 2


def coverage_run(p: np.ndarray, q: np.ndarray, n: int, boot: int, rng) -> dict:
    """One simulated data set: redraws of P and Q at n and ``boot`` bootstrap replicates of them (the
    interval's ingredients; ``covers`` says whether an interval holds the truth)."""
    p_hat, q_hat = redraw(p, n, rng), redraw(q, n, rng)
    interval = Interval.from_replicates(grid_w2_from_weights(p_hat, q_hat), replicates(p_hat, q_hat, n, boot, rng))
    return {"value": interval.value, "sd": interval.sd, "boot_mean": interval.boot_mean, "reps": interval.reps}


def covers(run: dict, truth: float, method: str, floor: float) -> bool:
    low, high = Interval(run["value"], run["sd"], run["boot_mean"], run.get("reps", 0)).bounds(method, floor)
    return bool(low <= truth <= high)


def coverage_summary(runs: list[dict], truth: float, floor: float) -> dict:
    """Per method: the share of runs whose interval held ``truth``, with its exact 95% interval."""
    out = {"runs": len(runs), "truth": truth}
    for method in METHODS:
        k = sum(covers(r, truth, method, floor) for r in runs)
        ci = stats.binomtest(k, len(runs)).proportion_ci(confidence_level=0.95, method="exact")
        out[method] = (k / len(runs), float(ci.low), float(ci.high))
    return out


# ----- the study: resumable, one stored record per cell, floor and coverage run -------------------------

@dataclass(frozen=True)
class Settings:
    reps: int = 10  # bootstrap replicates per cell
    floor_reps: int = 5  # pairs of independent redraws of the data histogram per target
    coverage_runs: int = 20  # simulated data sets per known-truth case
    coverage_boot: int = 10  # replicates per simulated data set (as many as the cells get)
    shifts: tuple[int, ...] = (1, 0)  # known-truth cases: blob's data law shifted by k nodes along x
    n: int = PAPER_N
    seed: int = 0


def cell_record(root: Path, cache: Path, table: str, target: str, w_r: float, s: Settings) -> dict:
    """One cell of the paper's tables with its bootstrap replicates (stored; a rerun reads them)."""
    index = TARGETS.index(target) * 100 + W_R.index(w_r) * 10 + list(TABLES).index(table)

    def compute():
        a, b = table_histograms(root, table, target, w_r)
        rng = np.random.default_rng([s.seed, index])
        return {"table": table, "target": target, "w_r": w_r, "value": grid_w2_from_weights(a, b),
                "paper": TABLES[table][w_r][TARGETS.index(target)], "replicates": replicates(a, b, s.n, s.reps, rng)}
    return Store.computed_once(cache / f"cell-{table}-{target}-{w_r:g}-r{s.reps}-n{s.n}.json", compute)


def floor_record(root: Path, cache: Path, target: str, s: Settings) -> dict:
    """The estimator's floor at the paper's n: two independent redraws of the target's data histogram."""
    def compute():
        truth = histogram(root, "truth", target)
        rng = np.random.default_rng([s.seed, 1000 + TARGETS.index(target)])
        values = [grid_w2_from_weights(redraw(truth, s.n, rng), redraw(truth, s.n, rng)) for _ in range(s.floor_reps)]
        return {"target": target, "values": values}
    return Store.computed_once(cache / f"floor-{target}-r{s.floor_reps}-n{s.n}.json", compute)


def coverage_record(root: Path, cache: Path, k: int, run: int, s: Settings) -> dict:
    def compute():
        p, q, truth = shifted_pair(histogram(root, "truth", "blob"), k)
        rng = np.random.default_rng([s.seed, 2000 + k, run])
        return {"k": k, "truth": truth, **coverage_run(p, q, s.n, s.coverage_boot, rng)}
    return Store.computed_once(cache / f"coverage-k{k}-run{run}-b{s.coverage_boot}-n{s.n}.json", compute)


def run_study(root: Path, cache: Path, s: Settings = Settings(), tables=tuple(TABLES), targets=TARGETS,
              log=print) -> dict:
    """Coverage first (it says which interval to trust), then floors, then the cells of ``tables``."""
    cache.mkdir(parents=True, exist_ok=True)
    floors = {t: floor_record(root, cache, t, s) for t in dict.fromkeys(("blob", *targets))}
    coverage = {}
    for k in s.shifts:  # the shifted copies are blob's data law: its floor is theirs
        runs = [coverage_record(root, cache, k, run, s) for run in range(s.coverage_runs)]
        coverage[k] = coverage_summary(runs, runs[0]["truth"], floor_mean(floors["blob"]))
        log(f"coverage, shift {k}: {coverage[k]}")
    cells = cell_records(root, cache, s, tables, targets, log)
    return {"settings": asdict(s), "coverage": coverage, "floors": floors, "cells": cells}


def cell_records(root: Path, cache: Path, s: Settings = Settings(), tables=tuple(TABLES), targets=TARGETS,
                 log=print) -> list[dict]:
    """The cells of ``tables`` with their bootstrap replicates (stored one file each; a rerun reads them)."""
    cache.mkdir(parents=True, exist_ok=True)
    cells = []
    for table in tables:
        for target in targets:
            for w_r in W_R:
                cells.append(cell_record(root, cache, table, target, w_r, s))
                log(f"{table} {target} w_R={w_r}: {cells[-1]['value']:.6f}")
    return cells


# ----- the paper's own spread per cell, committed ------------------------------------------------------

SPREADS_MODULE = Path(__file__).resolve().parent / "paper_spreads.py"


def write_spreads_module(cells: list[dict], s: Settings, path: Path = SPREADS_MODULE) -> Path:
    """``fpbench/analysis/paper_spreads.py``: every cell's bootstrap replicates as a module, so that a
    report opened from a bundle (a fresh store) has the paper's own spreads (regenerated by
    ``fpbench reference spreads`` or ``intervals``; never edited by hand)."""
    lines = ['"""The bootstrap replicates of the paper\'s own estimate in each cell of Tables 1-3: both published',
             f"histograms redrawn at n = {s.n:,} ({s.reps} replicates, seed {s.seed}; fpbench.analysis.paper_intervals",
             "says how). Their sd is the spread of the paper's printed value at its own sample size.",
             "", "Generated by ``fpbench reference spreads`` from the published histograms; do not edit.", '"""',
             "", f"REPS = {s.reps}", f"N = {s.n}", f"SEED = {s.seed}", "", "REPLICATES = {"]
    for c in cells:
        values = [repr(float(f"{x:.9g}")) for x in c["replicates"]]
        lines += [f"    ({c['table']!r}, {c['target']!r}, {float(c['w_r'])!r}): [",
                  *(f"        {', '.join(values[i:i + 5])}," for i in range(0, len(values), 5)), "    ],"]
    lines += ["}", ""]
    path.write_text("\n".join(lines))
    return path


def paper_sds(cache: Path | None = None) -> dict:
    """{(table, target, w_R): the sd of the paper's own estimate at its n}: from the cell records under
    ``cache`` (a store's ``STORE_DIR``, where ``fpbench reference intervals`` keeps them; read only) where it
    holds them, else from the committed ``paper_spreads`` module."""
    from .paper_spreads import REPLICATES

    found = dict(REPLICATES)
    for path in sorted(cache.glob("cell-*.json")) if cache is not None and cache.is_dir() else ():
        cell = Store.cached(path)
        if cell is not None and len(cell.get("replicates", [])) >= 2:
            found[(cell["table"], cell["target"], float(cell["w_r"]))] = cell["replicates"]
    return {key: float(np.std(reps, ddof=1)) for key, reps in found.items() if len(reps) >= 2}


def floor_mean(record: dict) -> float:
    return float(np.mean(record["values"]))


def interval_method(coverage: dict) -> str:
    """The first of ``METHODS`` whose measured coverage is consistent with 95% at every known truth (its
    exact interval reaches 0.95); ``none`` if no method's is."""
    return next((m for m in METHODS if all(c[m][2] >= 0.95 for c in coverage.values())), "none")


def resolved_differences(cells: list[dict], method: str, floors: dict | None = None) -> list[dict]:
    """Adjacent w_R cells of each table row: the paper's difference and whether its own data resolve it."""
    rows = []
    key = {(c["table"], c["target"], c["w_r"]): c for c in cells}
    for (table, target, w_r), c in key.items():
        j = W_R.index(w_r)
        if j + 1 >= len(W_R) or (table, target, W_R[j + 1]) not in key:
            continue
        d = key[(table, target, W_R[j + 1])]
        first, second = _interval(c), _interval(d)
        centre = (lambda i: i.basic_value) if method == "basic" else (lambda i: i.value)
        diff = centre(second) - centre(first)
        sd = math.hypot(first.sd, second.sd)
        slack = floor_mean(floors[target]) if method == "floor" else 0.0
        rows.append({"table": TABLE_TITLES[table].split(":")[0], "target": target,
                     "w_R pair": f"{w_r:g} -> {W_R[j + 1]:g}", "paper": f"{c['paper']:.6f} -> {d['paper']:.6f}",
                     "difference": diff, "sd": sd, "beyond the sd alone": abs(diff) > Z * sd,
                     "resolved": abs(diff) > slack + Z * sd})
    return rows


def _interval(cell: dict) -> Interval:
    return Interval.from_replicates(cell["value"], cell["replicates"])
