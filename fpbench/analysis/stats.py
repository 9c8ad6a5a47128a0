"""Statistical tests behind the claim verdicts, each returning one ``ClaimTest`` (statistic, p-value,
effect size with a 95% bootstrap interval, n, verdict), in the manner of scipy.stats results.

Every test is one-sided in the direction the paper claims, and every effect is signed so that a
positive value is that direction. The verdict rule (``decide``), at level ``alpha`` with a minimum
effect ``min_effect`` that the claim needs to be of practical size:

- PASS: p <= alpha in the claimed direction and effect >= min_effect;
- FAIL: p <= alpha in the opposite direction, or the whole interval of the effect lies below
  min_effect (the data rule out an effect of the claimed size);
- INCONCLUSIVE: anything else.

Under a null of no effect PASS needs p <= alpha, so its rate is at most alpha (measured by
``calibrate``); FAIL needs either the opposite test's p <= alpha or a confident small effect.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from ..core.errors import FpbenchError

ALPHA = 0.05
PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"


@dataclass(frozen=True)
class ClaimTest:
    """One test's outcome. ``pvalue`` is one-sided in the claimed direction, ``pvalue_opposite`` in the
    other; ``effect`` > 0 is the claimed direction, with its 95% interval [ci_low, ci_high]."""

    test: str
    statistic: float
    pvalue: float
    pvalue_opposite: float
    effect: float
    effect_name: str
    ci_low: float
    ci_high: float
    n: int
    alpha: float
    min_effect: float
    verdict: str
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (f"{self.verdict}: {self.test}, statistic {self.statistic:.4g}, p = {self.pvalue:.3g} "
                f"(opposite {self.pvalue_opposite:.3g}), {self.effect_name} = {self.effect:.3g} "
                f"[{self.ci_low:.3g}, {self.ci_high:.3g}] (needed >= {self.min_effect:g}), n = {self.n}, "
                f"alpha = {self.alpha:g}" + (f"; {self.detail}" if self.detail else ""))


class UndecidableError(FpbenchError):
    """The data cannot decide a test (too few complete blocks, pairs, units or groups). Any other
    exception raised while deciding a claim is a bug, and surfaces as one."""


def decide(pvalue: float, pvalue_opposite: float, effect: float, ci_high: float, alpha: float,
           min_effect: float) -> str:
    """The verdict rule of the module docstring."""
    if pvalue <= alpha and effect >= min_effect:
        return PASS
    if pvalue_opposite <= alpha or ci_high < min_effect:
        return FAIL
    return INCONCLUSIVE


def _bootstrap_ci(values: np.ndarray, rng: np.random.Generator, n_boot: int) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` (one per independent unit)."""
    if len(values) < 2:
        return float(values.mean()), float(values.mean())
    means = rng.choice(values, size=(n_boot, len(values)), replace=True).mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


# --- ordered trend across levels (Tables 1 and 3) ------------------------------------------------

def ordered_trend(table: np.ndarray, increasing: bool, alpha: float = ALPHA, min_effect: float = 0.5,
                  n_boot: int = 2000, seed: int = 0) -> ClaimTest:
    """Page's L test that the values rise (or fall) across ordered levels, blocks in rows (e.g.
    target x seed), levels in columns in their order (e.g. w_R ascending). Effect: the mean over
    blocks of Spearman's rho between level order and value, signed (1: every block perfectly in the
    claimed order), with a bootstrap interval over blocks."""
    table = np.asarray(table, dtype=float)
    table = table[np.all(np.isfinite(table), axis=1)]
    m, k = table.shape
    if m < 2 or k < 3:
        raise UndecidableError(f"a trend test needs >= 2 complete blocks and >= 3 levels; got {m} x {k}")
    order = np.arange(1, k + 1)
    claimed = order if increasing else order[::-1]
    method = "exact" if m * k <= 40 else "asymptotic"
    page = stats.page_trend_test(table, ranked=False, predicted_ranks=claimed, method=method)
    opposite = stats.page_trend_test(table, ranked=False, predicted_ranks=claimed[::-1], method=method)
    ranks = stats.rankdata(table, axis=1)
    rho = np.nan_to_num(np.array([stats.spearmanr(claimed, r).statistic for r in ranks]))  # constant block: 0
    low, high = _bootstrap_ci(rho, np.random.default_rng(seed), n_boot)
    effect = float(rho.mean())
    return ClaimTest("Page's L trend test", float(page.statistic), float(page.pvalue), float(opposite.pvalue),
                     effect, "mean Spearman rho (level, value)", low, high, m, alpha, min_effect,
                     decide(float(page.pvalue), float(opposite.pvalue), effect, high, alpha, min_effect),
                     f"{m} blocks x {k} levels, {'increasing' if increasing else 'decreasing'} claimed")


# --- paired comparison of two levels (Table 2) -----------------------------------------------------

def paired_comparison(first: np.ndarray, second: np.ndarray, alpha: float = ALPHA,
                      min_effect: float = math.log(1.1), n_boot: int = 2000, seed: int = 0) -> ClaimTest:
    """Claim: ``first`` < ``second`` pair by pair (positive values, e.g. W2^2 at two w_R in one
    block). Sign-flip permutation test (exact up to 2^16 pairs) of the mean log ratio
    log(second / first); the effect is that mean (log(1.1): second 10% above first)."""
    first, second = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    keep = np.isfinite(first) & np.isfinite(second) & (first > 0) & (second > 0)
    diff = np.log(second[keep]) - np.log(first[keep])
    n = len(diff)
    if n < 2:
        raise UndecidableError(f"a paired comparison needs at least two complete pairs; got {n}")
    kwargs = {"permutation_type": "samples", "vectorized": True, "n_resamples": 2**16,
              "random_state": seed}

    def mean_stat(x, axis):
        return np.mean(x, axis=axis)

    greater = stats.permutation_test((diff,), mean_stat, alternative="greater", **kwargs)
    less = stats.permutation_test((diff,), mean_stat, alternative="less", **kwargs)
    low, high = _bootstrap_ci(diff, np.random.default_rng(seed), n_boot)
    effect = float(diff.mean())
    return ClaimTest("sign-flip permutation test, paired", effect, float(greater.pvalue), float(less.pvalue),
                     effect, "mean log ratio", low, high, n, alpha, min_effect,
                     decide(float(greater.pvalue), float(less.pvalue), effect, high, alpha, min_effect))


def all_of(parts: dict[str, ClaimTest], test: str) -> ClaimTest:
    """Intersection-union: the claim is the conjunction of the parts. PASS iff every part passes
    (the level stays alpha without correction); FAIL iff some part fails. Reports the part with the
    largest p-value (the IUT p-value) among the parts that have one (a within-noise check has none)."""
    tested = [r for r in parts.values() if np.isfinite(r.pvalue)] or list(parts.values())  # not the checks
    worst = max(tested, key=lambda r: r.pvalue)
    verdicts = {r.verdict for r in parts.values()}
    verdict = PASS if verdicts == {PASS} else FAIL if FAIL in verdicts else INCONCLUSIVE
    detail = "; ".join(f"{name}: {r.verdict} (p = {r.pvalue:.3g}, {r.effect_name} = {r.effect:.3g})"
                       for name, r in parts.items())
    return ClaimTest(test, worst.statistic, worst.pvalue, min(r.pvalue_opposite for r in parts.values()),
                     worst.effect, worst.effect_name, worst.ci_low, worst.ci_high, min(r.n for r in parts.values()),
                     worst.alpha, worst.min_effect, verdict, detail)


# --- rank correlation (Figs. 4 and 5) --------------------------------------------------------------

def _spearman_stat(x, y, axis=-1):
    rx, ry = stats.rankdata(x, axis=axis), stats.rankdata(y, axis=axis)
    rx = rx - rx.mean(axis=axis, keepdims=True)
    ry = ry - ry.mean(axis=axis, keepdims=True)
    return (rx * ry).sum(axis=axis) / np.sqrt((rx**2).sum(axis=axis) * (ry**2).sum(axis=axis))


def permute_within_groups(y: np.ndarray, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """y with its last axis shuffled within each group (each row independently): the null of no
    association that keeps every group's values."""
    out = np.array(y, copy=True)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        out[..., idx] = rng.permuted(out[..., idx], axis=-1)
    return out


def _usable_groups(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> list[np.ndarray]:
    """Indices of each group with at least 3 units in which both x and y vary (a rho is defined)."""
    out = []
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        if len(idx) >= 3 and np.ptp(x[idx]) > 0 and np.ptp(y[idx]) > 0:
            out.append(idx)
    return out


def stratified_rho(x: np.ndarray, y: np.ndarray, strata: list[np.ndarray]) -> np.ndarray:
    """The mean over strata of Spearman's rho within each stratum (x, y of shape (..., n)): an association
    that differences between strata (their levels) cannot make."""
    with np.errstate(invalid="ignore", divide="ignore"):  # a resample of one repeated unit has no rho
        rhos = np.stack([_spearman_stat(x[..., idx], y[..., idx]) for idx in strata])
    count = np.isfinite(rhos).sum(axis=0)
    return np.where(count > 0, np.nansum(rhos, axis=0) / np.maximum(count, 1), np.nan)


def rank_correlation(x: np.ndarray, y: np.ndarray, positive: bool, groups: np.ndarray | None = None,
                     alpha: float = ALPHA, min_effect: float = 0.3, n_perm: int = 4000, n_boot: int = 2000,
                     seed: int = 0) -> ClaimTest:
    """Spearman's rho between x and y within each group (e.g. target), averaged over the groups (one group:
    the plain rho), claimed sign ``positive``. One estimand throughout: the permutation null shuffles y
    within each group and recomputes the same mean, and the bootstrap resamples units within groups and
    recomputes it, so a difference between groups is never read as correlation. Groups with fewer than 3
    units, or in which x or y is constant, carry no rho and are left out. Effect: the mean rho signed
    (> 0 is the claim)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    groups = np.zeros(len(x), dtype=int) if groups is None else np.asarray(groups)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y, groups = x[keep], y[keep], groups[keep]
    strata = _usable_groups(x, y, groups)
    if not strata:
        raise UndecidableError(f"a rank correlation needs a group of at least 3 units in which both quantities vary; "
                               f"got {len(x)} unit(s) in {len(np.unique(groups))} group(s)")
    sign = 1.0 if positive else -1.0
    rho = float(stratified_rho(x, y, strata))
    rng = np.random.default_rng(seed)
    y_perm = permute_within_groups(np.tile(y, (n_perm, 1)), groups, rng)
    null = stratified_rho(np.broadcast_to(x, y_perm.shape), y_perm, strata)
    p_claim = float((1 + np.sum(sign * null >= sign * rho - 1e-12)) / (n_perm + 1))
    p_opp = float((1 + np.sum(sign * null <= sign * rho + 1e-12)) / (n_perm + 1))
    idx = np.concatenate([rng.choice(s, size=(n_boot, len(s))) for s in strata], axis=1)  # within each group
    blocks = np.split(np.arange(idx.shape[1]), np.cumsum([len(s) for s in strata])[:-1])
    boot = sign * stratified_rho(x[idx], y[idx], blocks)
    boot = boot[np.isfinite(boot)]
    low, high = (float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))) if len(boot) else (math.nan,) * 2
    effect = sign * rho
    n_units = sum(len(s) for s in strata)
    return ClaimTest("Spearman rank correlation within groups, permutation within groups", rho, p_claim, p_opp,
                     effect, "signed mean within-group Spearman rho", low, high, n_units, alpha, min_effect,
                     decide(p_claim, p_opp, effect, high, alpha, min_effect),
                     f"{len(strata)} group(s) with a rho, {n_units} units, {n_perm} permutations")


# --- separation of two groups (Fig. 1) -------------------------------------------------------------

def separation(above: np.ndarray, below: np.ndarray, min_decades: float = 2.0, alpha: float = ALPHA,
               n_boot: int = 2000, seed: int = 0) -> ClaimTest:
    """Claim: every value of ``above`` exceeds every value of ``below`` by ``min_decades`` orders of
    magnitude. One-sided Mann-Whitney U on log10 values; effect: log10(min(above) / max(below)), the
    separation in decades, with a bootstrap interval resampling both groups."""
    above, below = np.asarray(above, dtype=float), np.asarray(below, dtype=float)
    floor = np.finfo(float).tiny
    la, lb = np.log10(np.maximum(above, floor)), np.log10(np.maximum(below, floor))
    greater = stats.mannwhitneyu(la, lb, alternative="greater", method="exact")
    less = stats.mannwhitneyu(la, lb, alternative="less", method="exact")
    rng = np.random.default_rng(seed)
    reps = [rng.choice(la, len(la)).min() - rng.choice(lb, len(lb)).max() for _ in range(n_boot)]
    low, high = float(np.quantile(reps, 0.025)), float(np.quantile(reps, 0.975))
    effect = float(la.min() - lb.max())
    return ClaimTest("one-sided Mann-Whitney U on log10 values", float(greater.statistic), float(greater.pvalue),
                     float(less.pvalue), effect, "decades between min(above) and max(below)", low, high,
                     len(la) + len(lb), alpha, min_decades,
                     decide(float(greater.pvalue), float(less.pvalue), effect, high, alpha, min_decades))


# --- agreement with zero up to a stated noise (oracle) ---------------------------------------------

def within_noise(measured: np.ndarray, allowance: np.ndarray, noise_sd: np.ndarray, resolution: float,
                 detectable: float, alpha: float = ALPHA) -> ClaimTest:
    """Claim: each measured value is explained by an allowance (e.g. the noise floor's mean plus the
    discretisation bound) with normal noise of sd ``noise_sd``. The excess z = (measured - allowance)
    / sd is tested one-sided for a real excess (Bonferroni over units). PASS needs no significant
    excess *and* a resolution (what the measurement could still hide) below ``detectable``, the
    smallest effect of interest, so that an effect of that size would have shown. Effect:
    detectable - resolution (> 0: resolved)."""
    measured, allowance, noise_sd = (np.atleast_1d(np.asarray(a, dtype=float)) for a in (measured, allowance, noise_sd))
    z = (measured - allowance) / np.maximum(noise_sd, 1e-300)
    p_excess = float(min(1.0, len(z) * stats.norm.sf(z.max())))  # the claim's opposite: a real excess
    effect = float(detectable - resolution)
    verdict = FAIL if p_excess <= alpha else PASS if effect > 0 else INCONCLUSIVE
    return ClaimTest("one-sided z test of the excess over the allowance (Bonferroni)", float(z.max()),
                     math.nan, p_excess, effect,
                     "smallest effect of interest - resolution", effect, effect, len(z), alpha, 0.0, verdict,
                     f"max z = {z.max():.2f}, resolution {resolution:.3g}, "
                     f"smallest effect of interest {detectable:.3g}")


# --- the family of a report's claims ---------------------------------------------------------------

def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment of one family of p-values (NaN entries are not in the family and
    stay NaN): the i-th smallest of m becomes max over j <= i of min(1, (m - j + 1) p_(j)). Rejecting
    where the adjusted p <= alpha keeps the family-wise error rate at most alpha."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    running = 0.0
    for i, index in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[index]))
        out[index] = running
    return out


def with_adjusted_p(test: ClaimTest, p_adjusted: float) -> ClaimTest:
    """``test`` decided on its family-adjusted p-value: a PASS whose adjusted p exceeds alpha becomes
    INCONCLUSIVE (FAIL and INCONCLUSIVE stand: the adjustment guards against false PASSes)."""
    if not np.isfinite(p_adjusted) or test.verdict != PASS or p_adjusted <= test.alpha:
        return test
    note = f"PASS at the raw p = {test.pvalue:.3g}, not after Holm's adjustment (p = {p_adjusted:.3g})"
    return ClaimTest(**{**test.to_dict(), "verdict": INCONCLUSIVE,
                        "detail": f"{test.detail}; {note}" if test.detail else note})


# --- calibration -------------------------------------------------------------------------------------

def calibrate(test, make_data, reps: int = 200, seed: int = 0) -> dict:
    """Run ``test(*make_data(rng))`` on ``reps`` synthetic data sets: the share of each verdict, and
    its exact (Clopper-Pearson) 95% interval under the key ``VERDICT_ci``."""
    rng = np.random.default_rng(seed)
    counts = {PASS: 0, FAIL: 0, INCONCLUSIVE: 0}
    for _ in range(reps):
        counts[test(*make_data(rng)).verdict] += 1
    out = {"reps": reps}
    for verdict, k in counts.items():
        ci = stats.binomtest(k, reps).proportion_ci(confidence_level=0.95, method="exact")
        out[verdict], out[f"{verdict}_ci"] = k / reps, (float(ci.low), float(ci.high))
    return out


# --- summaries ---------------------------------------------------------------------------------------

def summarise(values: np.ndarray, lows: np.ndarray, highs: np.ndarray) -> tuple[float, float, float, str]:
    """Mean and 95% interval: Student t over seeds when there are two or more, else the case's
    own bootstrap interval."""
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return math.nan, math.nan, math.nan, "none"
    if len(values) >= 2:
        mean, se = values.mean(), values.std(ddof=1) / math.sqrt(len(values))
        half = stats.t.ppf(0.975, len(values) - 1) * se
        return mean, mean - half, mean + half, f"t over {len(values)} seeds"
    return float(values[0]), float(lows[0]), float(highs[0]), "bootstrap"


# --- power laws (the lab's L1) -----------------------------------------------------------------------

def _within_slope(lx: np.ndarray, ly: np.ndarray, groups: np.ndarray) -> float:
    """OLS slope of ly on lx with one intercept per group (both centred within groups)."""
    cx, cy = lx.copy(), ly.copy()
    for g in np.unique(groups):
        m = groups == g
        cx[m] -= cx[m].mean()
        cy[m] -= cy[m].mean()
    return float((cx * cy).sum() / (cx**2).sum())


def power_law_exponent(x: np.ndarray, y: np.ndarray, y_draws: np.ndarray, groups: np.ndarray, at_least: float,
                       alpha: float = ALPHA) -> ClaimTest:
    """The exponent a of y = c_g x^a (one c per group, e.g. per target and error shape), by least squares
    on log-log axes, and the claim a >= ``at_least``. Its interval is a parametric bootstrap: each row of
    ``y_draws`` (B, n) is y redrawn from its sampling distribution (non-positive draws drop that point from
    that replicate). Effect a - at_least; p = share of replicates with a <= at_least (and the opposite p
    its complement), so FAIL means a is below ``at_least`` beyond the sampling noise."""
    x, y, groups = np.asarray(x, dtype=float), np.asarray(y, dtype=float), np.asarray(groups)
    counts = {g: int(np.sum(groups == g)) for g in np.unique(groups)}
    if sum(c for c in counts.values() if c >= 2) < 3 or len(x) != len(y):
        raise UndecidableError(f"a power law needs at least 3 points in groups of 2 or more; got {counts}")
    a = _within_slope(np.log(x), np.log(y), groups)
    reps = []
    for row in np.asarray(y_draws, dtype=float):
        keep = np.isfinite(row) & (row > 0)
        kept = groups[keep]
        if len(np.unique(kept)) and all(np.sum(kept == g) >= 2 for g in np.unique(kept)) and keep.sum() >= 3:
            reps.append(_within_slope(np.log(x[keep]), np.log(row[keep]), kept))
    reps = np.array(reps)
    if len(reps) < 10:
        raise UndecidableError("fewer than 10 bootstrap replicates kept enough points for a slope")
    p_claim = float((1 + np.sum(reps <= at_least)) / (len(reps) + 1))
    p_opp = float((1 + np.sum(reps >= at_least)) / (len(reps) + 1))
    low, high = (float(q) - at_least for q in np.quantile(reps, [0.025, 0.975]))
    effect = a - at_least
    return ClaimTest(f"power law y ~ x^a (least squares on log-log, {len(counts)} curves), a >= {at_least:g} claimed",
                     a, p_claim, p_opp, effect, f"a - {at_least:g}", low, high, len(x), alpha, 0.0,
                     decide(p_claim, p_opp, effect, high, alpha, 0.0),
                     f"a = {a:.3f} [{low + at_least:.3f}, {high + at_least:.3f}] (parametric bootstrap, "
                     f"{len(reps)} replicates)")


def constant_spread(x: np.ndarray, y: np.ndarray, y_draws: np.ndarray, exponent: float, max_spread: float,
                    alpha: float = ALPHA) -> ClaimTest:
    """The constants C_i = y_i / x_i^exponent of a bound y <= C x^exponent over all points (e.g. every eps
    and target), and the claim that one C serves them all: spread max C / min C <= ``max_spread``. Effect
    log10(max_spread / spread) (> 0: stable); p = share of bootstrap replicates (rows of ``y_draws``)
    whose spread exceeds ``max_spread``, the opposite p its complement."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2:
        raise UndecidableError("a constant's spread needs at least two points")

    def spread(values: np.ndarray) -> float:
        c = values / x**exponent
        c = c[np.isfinite(c) & (c > 0)]
        return float(c.max() / c.min()) if len(c) >= 2 else math.nan

    value = spread(y)
    reps = np.array([spread(row) for row in np.asarray(y_draws, dtype=float)])
    reps = np.log10(max_spread / reps[np.isfinite(reps)])
    p_claim = float((1 + np.sum(reps <= 0)) / (len(reps) + 1))
    p_opp = float((1 + np.sum(reps > 0)) / (len(reps) + 1))
    low, high = float(np.quantile(reps, 0.025)), float(np.quantile(reps, 0.975))
    effect = float(math.log10(max_spread / value))
    c = y / x**exponent
    return ClaimTest(f"bound y <= C x^{exponent:g}: spread of C over {len(x)} points", value, p_claim, p_opp, effect,
                     f"log10({max_spread:g} / spread)", low, high, len(x), alpha, 0.0,
                     decide(p_claim, p_opp, effect, high, alpha, 0.0),
                     f"C from {np.nanmin(c):.3g} to {np.nanmax(c):.3g} (spread {value:.3g}, allowed {max_spread:g})")
