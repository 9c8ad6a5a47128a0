"""Distances between sample sets, each with its sampling-noise floor and a 95% interval.

- ``grid_w2``: W2^2 exactly as the paper's tables compute it (REFERENCE.md): samples outside
  [-3.5, 3.5]^2 dropped, the rest assigned to the nearest node of a 64 x 64 grid
  (``linspace(-3.5, 3.5, 64)`` per axis), exact OT (POT ``emd2``) between the two normalised weight
  vectors with the squared Euclidean cost between nodes.
- ``exact_w2``: exact W2^2 between two point clouds (POT ``emd2``), n <= 10^4.
- ``sliced_w2``: sliced W2^2 (POT ``sliced_wasserstein_distance``, squared), for large n or d.

Every estimate is a ``W2Estimate``: the value, a bootstrap 95% interval (resampling the points
of both sets, B replicates, normal interval from their standard deviation), and the
*noise floor*: the same estimator on two independent draws of one distribution of the same size,
what the estimator reports when the two distributions are equal.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import ot
import torch

from .residuals import PAPER_EDGES


@dataclass(frozen=True)
class Grid:
    """The node grid: n x n nodes ``linspace(low, high, n)`` per axis (2D)."""

    low: float = PAPER_EDGES[0]
    high: float = PAPER_EDGES[1]
    n: int = 64

    @property
    def spacing(self) -> float:
        return (self.high - self.low) / (self.n - 1)

    def nodes(self) -> np.ndarray:
        axis = np.linspace(self.low, self.high, self.n)
        xx, yy = np.meshgrid(axis, axis, indexing="ij")
        return np.stack([xx.ravel(), yy.ravel()], axis=1)

    def cost(self) -> np.ndarray:
        nodes = self.nodes()
        return ot.dist(nodes, nodes)  # squared Euclidean


PAPER_GRID = Grid()


def from_xy_order(weights, grid: Grid = PAPER_GRID) -> np.ndarray:
    """A flattened histogram in ``numpy.meshgrid``'s default ``'xy'`` node order (node k at
    x = lin[k % n], y = lin[k // n]: the order of the authors' published histograms, REFERENCE.md)
    put in fpbench's order (node (i, j) at x = lin[i], y = lin[j], flat index i * n + j)."""
    weights = np.asarray(weights)
    if weights.shape != (grid.n**2,):
        raise ValueError(f"a flattened {grid.n} x {grid.n} histogram has {grid.n**2} weights, got {weights.shape}")
    return weights.reshape(grid.n, grid.n).T.ravel()


def grid_histogram(x, grid: Grid = PAPER_GRID) -> np.ndarray:
    """Counts per node (flattened, node (i, j) at i * n + j): samples outside the box are dropped,
    the rest go to their nearest node. x: (n, 2) array or tensor."""
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    inside = np.all((x >= grid.low) & (x <= grid.high), axis=1)
    idx = np.rint((x[inside] - grid.low) / grid.spacing).astype(np.int64)
    return np.bincount(idx[:, 0] * grid.n + idx[:, 1], minlength=grid.n**2).astype(np.float64)


_COST_CACHE: dict[Grid, np.ndarray] = {}


def grid_w2_from_weights(a: np.ndarray, b: np.ndarray, grid: Grid = PAPER_GRID) -> float:
    """W2^2 between two node-weight vectors (normalised here), exact OT on their supports."""
    if grid not in _COST_CACHE:
        _COST_CACHE[grid] = grid.cost()
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.sum() <= 0 or b.sum() <= 0:
        raise ValueError("a histogram has no mass inside the grid")
    ia, ib = a > 0, b > 0
    cost = _COST_CACHE[grid][np.ix_(ia, ib)]
    return float(ot.emd2(a[ia] / a.sum(), b[ib] / b.sum(), cost, numItermax=10**8))


def exact_w2(x, y) -> float:
    """Exact W2^2 between two uniform point clouds (n, m <= 10^4)."""
    x, y = _np(x), _np(y)
    if max(len(x), len(y)) > 10_000:
        raise ValueError("exact_w2 takes at most 10^4 points per cloud; use sliced_w2 or grid_w2")
    return float(ot.emd2(np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y)), ot.dist(x, y),
                         numItermax=10**8))


def sliced_w2(x, y, n_projections: int = 500, seed: int = 0) -> float:
    """Sliced W2^2 (mean over random directions of the 1D W2^2)."""
    return float(ot.sliced_wasserstein_distance(_np(x), _np(y), n_projections=n_projections, p=2, seed=seed)) ** 2


def _np(x) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)


@dataclass(frozen=True)
class W2Estimate:
    """W2^2 with its 95% interval (bootstrap over both sample sets) and noise floor."""

    value: float
    ci_low: float
    ci_high: float
    boot_sd: float
    floor: float
    n: int
    method: str

    def to_dict(self) -> dict:
        return asdict(self)


def _interval(value: float, replicates: list[float]) -> tuple[float, float, float]:
    if len(replicates) < 2:
        return value, value, 0.0
    sd = float(np.std(replicates, ddof=1))
    return max(0.0, value - 1.96 * sd), value + 1.96 * sd, sd


def grid_w2_estimate(x, y, floor: float, grid: Grid = PAPER_GRID, n_boot: int = 10, seed: int = 0) -> W2Estimate:
    """Grid W2^2 between sample sets x and y, the bootstrap resampling each histogram
    (multinomial with its own counts), and the given noise floor."""
    hx, hy = grid_histogram(x, grid), grid_histogram(y, grid)
    return grid_w2_estimate_from_counts(hx, hy, floor, min(len(x), len(y)), grid, n_boot, seed)


# Tables 1-3: (name, first histogram, second histogram)
TABLE_PAIRS = (("w2_ode_sde", "ode", "sde"), ("w2_ode_p0", "ode", "p0"), ("w2_sde_p0", "sde", "p0"))


def table_estimates(hist: dict, floor: float, n: int, grid: Grid = PAPER_GRID, n_boot: int = 10,
                    seed: int = 0) -> dict[str, W2Estimate]:
    """The three W2^2 of Tables 1-3 from node counts ``hist`` ('ode', 'sde', 'p0'), replicate seeds seed + i."""
    return {name: grid_w2_estimate_from_counts(hist[a], hist[b], floor, n, grid, n_boot, seed + i)
            for i, (name, a, b) in enumerate(TABLE_PAIRS)}


def grid_w2_estimate_from_counts(hx: np.ndarray, hy: np.ndarray, floor: float, n: int, grid: Grid = PAPER_GRID,
                                 n_boot: int = 10, seed: int = 0) -> W2Estimate:
    if hx.sum() == 0 or hy.sum() == 0:  # e.g. a diverged sampler: nothing inside the grid
        return W2Estimate(math.nan, math.nan, math.nan, math.nan, floor, n, f"grid{grid.n}")
    value = grid_w2_from_weights(hx, hy, grid)
    rng = np.random.default_rng(seed)
    reps = [grid_w2_from_weights(_resample(hx, rng), _resample(hy, rng), grid) for _ in range(n_boot)]
    low, high, sd = _interval(value, reps)
    return W2Estimate(value, low, high, sd, floor, n, f"grid{grid.n}")


def _resample(counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    total = int(round(counts.sum()))
    return rng.multinomial(total, counts / counts.sum()).astype(np.float64)


def point_w2_estimate(x, y, floor: float, method: str = "exact", n_boot: int = 10, seed: int = 0,
                      n_projections: int = 500) -> W2Estimate:
    """Exact or sliced W2^2 between point clouds with a bootstrap over points."""
    x, y = _np(x), _np(y)
    fn = exact_w2 if method == "exact" else (lambda a, b: sliced_w2(a, b, n_projections, seed))
    value = fn(x, y)
    rng = np.random.default_rng(seed)
    reps = [fn(x[rng.integers(0, len(x), len(x))], y[rng.integers(0, len(y), len(y))]) for _ in range(n_boot)]
    low, high, sd = _interval(value, reps)
    return W2Estimate(value, low, high, sd, floor, min(len(x), len(y)), method)


@dataclass(frozen=True)
class NoiseFloor:
    """The estimator's values on ``reps`` pairs of independent draws of one distribution, n each:
    what it reports when the two distributions are equal. For multimodal targets single values
    vary by a factor of two (mode weights fluctuate), hence the mean and the 95th percentile."""

    mean: float
    sd: float
    q95: float
    n: int
    reps: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_values(cls, values: list[float], n: int) -> NoiseFloor:
        """Summary of the estimator's values on independent pairs of draws of size n."""
        sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        return cls(float(np.mean(values)), sd, float(np.quantile(values, 0.95)), n, len(values))


def grid_noise_floor(draw, n: int, reps: int = 5, seed: int = 0, grid: Grid = PAPER_GRID) -> NoiseFloor:
    """Noise floor of the grid W2^2 at sample size n; ``draw(n, generator)`` samples the distribution."""
    values = []
    for r in range(reps):
        gen = torch.Generator().manual_seed(seed * 7919 + r)
        first, second = grid_histogram(draw(n, gen), grid), grid_histogram(draw(n, gen), grid)
        values.append(grid_w2_from_weights(first, second, grid))
    return NoiseFloor.from_values(values, n)


def gaussian_w2(mean1, std1: float, mean2, std2: float) -> float:
    """Closed form W2^2 between N(mean1, std1^2 I) and N(mean2, std2^2 I): ||dmean||^2 + d (std1 - std2)^2."""
    mean1, mean2 = np.asarray(mean1, dtype=float), np.asarray(mean2, dtype=float)
    return float(((mean1 - mean2) ** 2).sum() + len(mean1) * (std1 - std2) ** 2)


def grid_quantisation_bound(grid: Grid, w2_value: float, dim: int = 2) -> float:
    """Bound on |grid W2^2 - W2^2| from moving every point to its nearest node, for densities that are
    locally uniform on the node scale: each set moves by at most delta = spacing * sqrt(dim/12) in W2,
    so W2 changes by at most 2 delta and W2^2 by (sqrt(w2) + 2 delta)^2 - w2 (mass outside the box
    not counted)."""
    delta = grid.spacing * math.sqrt(dim / 12)
    return (math.sqrt(max(w2_value, 0.0)) + 2 * delta) ** 2 - max(w2_value, 0.0)
