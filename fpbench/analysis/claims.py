"""The paper's claims as statistical tests on stored results (fpbench.analysis.stats), and fpbench's own
checks of its harness apart from them.

The paper's claims (``CLAIMS``): C1, C2, C2b, C3 (Tables 1-3), C4 (Fig. 4), C5 (Fig. 5), T1 (Theorem 1's
rate) and C6 (Fig. 1). fpbench's checks (``CHECKS``): H1 (a potential has no curl: true by construction),
H2 and H3 (the exact score's residual and gap: oracles of fpbench's own code); they are reported apart and
never counted with the claims or in their Holm family. Every test has a negative control (``calibration``):
data that violate its claim, on which it must not PASS more often than alpha.

Each claim reads a results frame (one row per finished case, ``store.flatten_metrics`` columns) of
the ``paper`` suite (and, for C6, of the ``curl`` suite) and returns a ``ClaimOutcome``: a
``ClaimTest`` with its verdict, or the reason the data cannot decide it. Gates decide
decidability before any test runs; all are measured, never assumed:

- *trained*: claims about trained models (``TRAINED_CLAIMS``) need baselines that have learned the target:
  the w_R = 0 models' W2^2(p_SDE, p0) minus the noise floor within ``TRAINED_FACTOR`` x Table 3's w_R = 0
  value for every target;
- *converged*: claims about trained models are decided only when every model passes the convergence gate
  (``convergence_gate``: the oracle's score ratio and relative score error, ``fpbench.core.convergence``,
  against the authors' published models, and the shares of samples inside the grid); otherwise they are
  INCONCLUSIVE with the failing models' evidence, never PASS or FAIL. The gate has two tiers (``TIERS``):
  *trained* (the gate) and *authors' quality* (tighter, and R~ too); a decided claim names the highest
  tier its models reach;
- *resolution*: claims on W2^2 differences (C1, C2, C2b, C3, C5) need the estimator's noise floor at
  the run's sample size below the paper's own effect (its table's difference between the compared
  w_R), for most targets: a difference smaller than the floor cannot be read.

Settings the paper leaves open and fpbench chooses are in ``CLAIM_SETTINGS``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import stats as st
from .paper_values import TABLES, W_R, paper_value

TRAINED_FACTOR = 10.0
# The convergence gate's settings (keys of CLAIM_SETTINGS; the gate reads them from there).
GATE_RATIO_BAND = "convergence gate: score ratio at every t >= 0.05 T within"
GATE_ERROR_FACTOR = "convergence gate: relative score error at most (x the authors' model, same target and w_R)"
GATE_GRID_LOSS = "convergence gate: ODE and SDE shares inside the grid at least (p0's share minus)"
QUALITY_ERROR_FACTOR = ("authors' quality tier: relative score error at most (x the authors' model, same target "
                        "and w_R)")
QUALITY_RESIDUAL_FACTOR = "authors' quality tier: R~ at w_R > 0 at most (x the authors' model's, same target and w_R)"
# The gate's tiers, highest first, declared before any result (issue 36): each adds to the score ratio band and
# the grid shares its own error factor and, for the authors' quality, a bound on R~ at w_R > 0.
TIERS = {"authors' quality": (QUALITY_ERROR_FACTOR, QUALITY_RESIDUAL_FACTOR), "trained": (GATE_ERROR_FACTOR, None)}
QUALITY_TIER = "authors' quality"
# The tests' settings (keys of CLAIM_SETTINGS; every test, and its calibration, reads them from there).
ALPHA = "alpha"
TREND_MIN_EFFECT = "trend min effect (mean Spearman rho within blocks)"
PAIRED_MIN_EFFECT = "paired min effect (mean log ratio)"
CORRELATION_MIN_EFFECT = "correlation min effect (Spearman rho)"
BOUND_MAX_SPREAD = "lab L1-lin, L1-sqrt: max spread of the bound constant C over the planted points"
LAB_USABLE_FACTOR = "T1 and lab L1: a gap is fitted when W2^2 is at least (x the exact score's, same noise)"
LAB_FIT_POINTS = "lab L1: points fitted per curve (its smallest resolved eps: the claim is about eps -> 0)"
CLAIM_SETTINGS = {
    ALPHA: st.ALPHA,
    TREND_MIN_EFFECT: 0.5,
    PAIRED_MIN_EFFECT: round(math.log(1.1), 4),
    CORRELATION_MIN_EFFECT: 0.3,
    BOUND_MAX_SPREAD: 10.0,
    LAB_USABLE_FACTOR: 4.0,
    LAB_FIT_POINTS: 3,
    "curl: min separation (decades)": 2.0,
    "curl: zero tolerance (x machine eps of the dtype)": 1e4,
    "oracle residual tolerance (float64, max |R~|)": 1e-8,
    "trained gate: (W2^2(SDE, p0) - floor) / Table 3 at w_R = 0 at most": TRAINED_FACTOR,
    GATE_RATIO_BAND: (0.9, 1.1),
    GATE_ERROR_FACTOR: 10.0,
    GATE_GRID_LOSS: 0.05,
    QUALITY_ERROR_FACTOR: 3.0,
    QUALITY_RESIDUAL_FACTOR: 3.0,
    "Fig. 4 normalisation": "L_DSM(model) / L_DSM(exact score) on the same batch",
}


def test_settings(min_effect: str | None = None, **named: str) -> dict:
    """Keyword arguments for a ``fpbench.analysis.stats`` test from ``CLAIM_SETTINGS``: alpha, the min effect
    under ``min_effect``'s key, and ``name=key`` pairs."""
    kw = {"alpha": CLAIM_SETTINGS[ALPHA]} | {name: CLAIM_SETTINGS[key] for name, key in named.items()}
    return kw | ({"min_effect": CLAIM_SETTINGS[min_effect]} if min_effect else {})


@dataclass(frozen=True)
class Claim:
    key: str
    source: str
    paper_says: str


CLAIMS = {c.key: c for c in [
    Claim("C1", "Table 1", "W2²(p_ODE, p_SDE) decreases as w_R grows"),
    Claim("C2", "Table 2", "W2²(p_ODE, p0) at w_R = 0.1 and at w_R = 1 is below w_R = 0, and w_R = 10 is above "
          "both 0.1 and 1"),
    Claim("C2b", "Table 2", "W2²(p_ODE, p0) at w_R = 10 is above w_R = 0 on the targets where the paper's table has "
          "it so (blob, checker)"),
    Claim("C3", "Table 3", "W2²(p_SDE, p0) increases with w_R"),
    Claim("C4", "Fig. 4", "R̃(θ, φθ, 0) and the normalised L_DSM are negatively correlated within a target"),
    Claim("C5", "Fig. 5", "R̃ and W2(p_ODE, p_SDE) are positively correlated among models of the same target and "
          "w_R (the association through w_R is C1's)"),
    Claim("T1", "Theorem 1", "W2(p_ODE, p_SDE) <= C·R̃: above the noise floor W2 falls at least as fast as R̃ "
          "(exponent a >= 1 of W2 ∝ R̃^a; a >= 1/2, what the proof supports, reported beside)"),
    Claim("C6", "Fig. 1", "a trained free score network has curl clearly above a potential model's float noise"),
]}
# fpbench's own checks of its harness: true by construction or oracles of fpbench's code, not the paper's claims;
# reported apart from them and never counted with them.
CHECKS = {c.key: c for c in [
    Claim("H1", "check: potential models", "a potential model's curl is zero up to round-off (by construction)"),
    Claim("H2", "check: oracle", "the exact score has zero log-FP residual"),
    Claim("H3", "check: oracle", "the exact score has no ODE-SDE gap beyond noise floor + discretisation, resolved "
          "finely enough to see a gap of the paper's smallest size"),
]}
TRAINED_CLAIMS = ("C1", "C2", "C2b", "C3", "C4", "C5", "T1")  # about trained models: decided behind the gate


@dataclass
class ClaimOutcome:
    claim: Claim
    result: st.ClaimTest | None = None
    skipped: str | None = None
    measured: str = ""
    parts: dict = field(default_factory=dict)
    inconclusive: bool = False  # not decided because the models failed the convergence gate
    tier: str | None = None  # the highest tier of the convergence gate (TIERS) that the models it is decided on reach
    p_holm: float = math.nan  # the p-value adjusted across the report's claims (Holm); the verdict uses it

    @property
    def verdict(self) -> str:
        if self.result:
            return self.result.verdict
        return st.INCONCLUSIVE if self.inconclusive else "SKIPPED"


# --- frames ---------------------------------------------------------------------------------------

def _by_level(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """Rows (target, seed), columns w_R ascending: the blocks x levels table of one quantity."""
    return df.pivot_table(index=["target", "seed"], columns="param_w_r", values=column, aggfunc="first").sort_index(
        axis=1)


def seeds_per_model(df: pd.DataFrame, param: str = "param_w_r") -> pd.Series:
    """How many seeds (rows) each model, a (target, ``param``) cell, has finished."""
    return df.groupby(["target", param]).size()


def _cell_means(df: pd.DataFrame, column: str) -> str:
    means = df.groupby(["target", "param_w_r"])[column].mean()
    return "; ".join(f"{t}: " + ", ".join(f"{means[(t, w)]:.4g}" for w in sorted(means[t].index))
                     for t in means.index.get_level_values(0).unique())


def undecidable_as_skip(claim_fn):
    """A claim whose test cannot be computed on these results (``stats.UndecidableError``: too few
    complete blocks or units, a diverged cell) is skipped with the test's reason instead of raising.
    Any other exception is a bug and propagates."""
    @functools.wraps(claim_fn)
    def wrapper(*args, **kwargs):
        try:
            return claim_fn(*args, **kwargs)
        except st.UndecidableError as err:
            name = claim_fn.__name__.removeprefix("claim_")
            key = next(k for k in CLAIMS if k.lower() == name.lower())  # claim_c2b -> "C2b"
            return ClaimOutcome(CLAIMS[key], skipped=f"the test cannot be computed on these results: {err}")
    return wrapper


# --- gates ----------------------------------------------------------------------------------------

def trained_gate(df: pd.DataFrame) -> str | None:
    """None when every target's baseline has learned the target (module docstring), else the reason.
    For targets the paper has no Table 3 for, the yardstick is the noise floor itself."""
    base = df[df["param_w_r"] == 0.0]
    if base.empty:
        return "no w_R = 0 baseline in the results"
    worst = []
    for target, grp in base.groupby("target"):
        paper = paper_value("w2_sde_p0", target, 0.0)
        yardstick = paper if paper is not None else grp["floor.mean"].mean()  # beyond the paper: the floor
        ratio = max(grp["w2_sde_p0.value"].mean() - grp["floor.mean"].mean(), 0.0) / yardstick
        if not np.isfinite(ratio):
            ratio = math.inf
        worst.append((ratio, target, "Table 3's" if paper is not None else "the noise floor"))
    if worst and max(worst)[0] > TRAINED_FACTOR:
        ratio, target, what = max(worst)
        return (f"the models are not trained enough to speak for the paper's: the {target} baseline's "
                f"W2²(p_SDE, p0) above the floor is {ratio:.0f}x {what} (the gate is {TRAINED_FACTOR:g}x)")
    return None


def reference_level(target: str, w_r, key: str = "rel_error") -> float:
    """The authors' model's measured ``key`` for (target, w_R) (``fpbench.analysis.authors_levels``); for a w_R
    or a method they did not train, their largest on that target; for other targets, their largest (NaN where
    the levels do not hold ``key``)."""
    from .authors_levels import LEVELS

    if target in LEVELS and w_r in LEVELS[target]:
        return LEVELS[target][w_r].get(key, math.nan)
    pool = LEVELS[target].values() if target in LEVELS else [v for lv in LEVELS.values() for v in lv.values()]
    return max(v.get(key, math.nan) for v in pool)


def reference_error(target: str, w_r) -> float:
    """The authors' model's relative score error for (target, w_R) (``reference_level``)."""
    return reference_level(target, w_r, "rel_error")


AUTHORS_OBJECTIVE = frozenset({"fp", "warm_fp"})  # methods whose models minimise the authors' loss (eq. 20's)


def authors_weight(row) -> float | None:
    """The w_R of the authors' model that is ``row``'s yardstick: its own w_R for a method of
    ``AUTHORS_OBJECTIVE`` (DSM + w_R R~ on a potential, however it is reached; a frame without a method column
    is the paper's), None for any other method (the authors trained none: their largest level on the target is
    the yardstick, ``reference_level``), whatever its weight column holds (``setting_claims`` renames w_s)."""
    return row.get("param_w_r") if row.get("method", "fp") in AUTHORS_OBJECTIVE else None


def convergence_checks(df: pd.DataFrame, tier: str = "trained", weight_of=authors_weight) -> pd.DataFrame:
    """Per model: its evidence and which of the checks of ``tier`` (``TIERS``) it fails (an empty ``fails``
    passes); ``weight_of(row)`` picks the authors' model it is measured against (``authors_weight``; its w_R in
    ``authors_w_r``, None for their largest level)."""
    low, high = CLAIM_SETTINGS[GATE_RATIO_BAND]
    error_key, residual_key = TIERS[tier]
    factor, loss = CLAIM_SETTINGS[error_key], CLAIM_SETTINGS[GATE_GRID_LOSS]
    rows = []
    for _, r in df.iterrows():
        weight = weight_of(r)
        level = reference_error(r["target"], weight)
        fails = []
        if not (low <= r["convergence.ratio_min_late"] and r["convergence.ratio_max_late"] <= high):
            fails.append(f"score ratio {r['convergence.ratio_min_late']:.2f}-{r['convergence.ratio_max_late']:.2f} "
                         f"outside [{low:g}, {high:g}]")
        if not r["convergence.rel_error"] <= factor * level:
            fails.append(f"relative score error {r['convergence.rel_error']:.3g} = "
                         f"{r['convergence.rel_error'] / level:.0f}x the authors' {level:.2g}")
        residual_level = reference_level(r["target"], weight, "log_fp_residual")
        if residual_key and weight and "log_fp_residual" in r and np.isfinite(residual_level):
            if not r["log_fp_residual"] <= CLAIM_SETTINGS[residual_key] * residual_level:
                fails.append(f"R~ {r['log_fp_residual']:.3g} = {r['log_fp_residual'] / residual_level:.1f}x the "
                             f"authors' {residual_level:.2g}")
        for kind in ("ode", "sde"):
            share = r.get(f"inside_grid_{kind}")
            if share is not None and np.isfinite(share) and share < r.get("inside_grid_p0", 1.0) - loss:
                fails.append(f"{share:.0%} of {kind.upper()} samples inside the grid")
        rows.append({"target": r["target"], "w_r": r.get("param_w_r"), "seed": r.get("seed"),
                     "ratio_min_late": r["convergence.ratio_min_late"], "rel_error": r["convergence.rel_error"],
                     "authors_w_r": weight, "authors_rel_error": level,
                     "rel_error_early": r.get("convergence.rel_error_early", math.nan),
                     "authors_rel_error_early": reference_level(r["target"], weight, "rel_error_early"),
                     "fails": fails})
    return pd.DataFrame(rows)


def tier_reached(df: pd.DataFrame) -> str | None:
    """The highest tier of ``TIERS`` that every model passes, or None."""
    if df is None or df.empty or "convergence.rel_error" not in df or df["convergence.rel_error"].isna().any():
        return None
    return next((tier for tier, passing in tier_counts(df).items() if passing == len(df)), None)


def tier_counts(df: pd.DataFrame) -> dict[str, int]:
    """How many models pass each tier."""
    return {tier: int((~convergence_checks(df, tier)["fails"].map(bool)).sum()) for tier in TIERS}


def convergence_gate(df: pd.DataFrame) -> str | None:
    """None when every model passes the convergence gate (module docstring), else the evidence."""
    if "exact_density" in df and (df["exact_density"] == False).any():  # noqa: E712 - a nullable column
        targets = sorted(set(df.loc[df["exact_density"] == False, "target"]))  # noqa: E712
        return (f"models not converged: not available for {', '.join(targets)} (samples only: no exact density, so "
                "no oracle to measure convergence against)")
    if "convergence.rel_error" not in df or df["convergence.rel_error"].isna().any():
        return ("models not converged: no convergence evidence stored with these results (results from an older "
                "fpbench: rerun `fpbench run` to add it)")
    checks = convergence_checks(df)
    failing = checks[checks["fails"].map(bool)]
    if failing.empty:
        return None
    shown = "; ".join(f"{r.target} w_R = {r.w_r:g} seed {r.seed}: {', '.join(r.fails)}"
                      for r in failing.head(6).itertuples())
    more = f" (and {len(failing) - 6} more)" if len(failing) > 6 else ""
    return f"models not converged: {len(failing)} of {len(checks)} models fail the convergence gate: {shown}{more}"


def resolution_gate(df: pd.DataFrame, table: str, low_w: float, high_w: float) -> str | None:
    """None when the floor is below the paper's |table(high_w) - table(low_w)| for most targets (for
    targets the paper has no table for, below the measured difference)."""
    ratios, whose = [], "the paper's own effect"
    for target, grp in df.groupby("target"):
        a, b = paper_value(table, target, low_w), paper_value(table, target, high_w)
        if a is None or b is None:
            continue
        ratios.append(abs(b - a) / grp["floor.mean"].mean())
    if not ratios:  # targets beyond the paper: the measured effect against the floor instead
        ratios, whose = measured_effect_ratios(df, table, low_w, high_w), "the measured effect"
        if not ratios:
            return f"no target with both w_R = {low_w:g} and {high_w:g} in the results"
    if np.median(ratios) < 1:
        n = int(df["w2_ode_sde.n"].iloc[0])
        return (f"the estimator's noise floor at n = {n:,} exceeds {whose} (median effect/floor "
                f"{np.median(ratios):.2f} < 1): a difference that size cannot be read at this sample size")
    return None


def measured_effect_ratios(df: pd.DataFrame, table: str, low_w: float, high_w: float) -> list[float]:
    """Per target, |mean table(high_w) - mean table(low_w)| / floor from the results themselves (for
    targets the paper has no table for)."""
    ratios = []
    for _target, grp in df.groupby("target"):
        means = grp.groupby("param_w_r")[f"{table}.value"].mean()
        if low_w in means and high_w in means and np.isfinite(means[[low_w, high_w]]).all():
            ratios.append(abs(means[high_w] - means[low_w]) / grp["floor.mean"].mean())
    return ratios


def _gated(claim: Claim, df: pd.DataFrame, *gates) -> ClaimOutcome | None:
    """The first gate's reason as the outcome: INCONCLUSIVE for the convergence gate (checked first:
    a collapsed model never yields a PASS or a FAIL), skipped for the others."""
    if df is None or df.empty:
        return ClaimOutcome(claim, skipped="no finished cases")
    reason = convergence_gate(df)
    if reason:
        return ClaimOutcome(claim, skipped=reason, inconclusive=True)
    for gate in gates:
        reason = gate()
        if reason:
            return ClaimOutcome(claim, skipped=reason)
    return None


# --- the claims about trained models --------------------------------------------------------------

# trend claims: key -> (table, claimed direction is increasing, what the report says is measured)
TREND_CLAIMS = {"C1": ("w2_ode_sde", False, "mean W2² gap"), "C3": ("w2_sde_p0", True, "mean W2²(SDE, p0)")}


def _trend_claim(df: pd.DataFrame, key: str) -> ClaimOutcome:
    """C1 or C3: Page's trend test of a table's W2^2 across w_R, blocks = target x seed."""
    claim, (table, increasing, what) = CLAIMS[key], TREND_CLAIMS[key]
    gated = _gated(claim, df, lambda: trained_gate(df), lambda: resolution_gate(df, table, 0.0, 10.0))
    if gated:
        return gated
    result = st.ordered_trend(_by_level(df, f"{table}.value").to_numpy(), increasing=increasing,
                                **test_settings(TREND_MIN_EFFECT))
    return ClaimOutcome(claim, result, measured=f"{what} per w_R " + _cell_means(df, f"{table}.value"))


@undecidable_as_skip
def claim_c1(df: pd.DataFrame) -> ClaimOutcome:
    return _trend_claim(df, "C1")


@undecidable_as_skip
def claim_c3(df: pd.DataFrame) -> ClaimOutcome:
    return _trend_claim(df, "C3")


def c2_parts(table: pd.DataFrame, **kw) -> dict[str, st.ClaimTest]:
    """C2's four paired tests on a blocks x w_R table of W2²(p_ODE, p0): each compares two measured
    levels (never a per-block minimum of two noisy ones, whose sign-flip null is biased)."""
    return {"w_R = 0.1 below 0": st.paired_comparison(table[0.1], table[0.0], **kw),
            "w_R = 1 below 0": st.paired_comparison(table[1.0], table[0.0], **kw),
            "w_R = 10 above 0.1": st.paired_comparison(table[0.1], table[10.0], **kw),
            "w_R = 10 above 1": st.paired_comparison(table[1.0], table[10.0], **kw)}


def c2b_test(table: pd.DataFrame, **kw) -> st.ClaimTest:
    """C2b: w_R = 10 above w_R = 0 in the blocks of the targets where the paper's Table 2 has it so."""
    return st.paired_comparison(table[0.0], table[10.0], **kw)


def c2b_targets() -> list[str]:
    """The targets whose Table 2 cell at w_R = 10 is above the one at w_R = 0 (blob and checker)."""
    from .paper_values import TARGETS

    return [t for t in TARGETS if paper_value("w2_ode_p0", t, 10.0) > paper_value("w2_ode_p0", t, 0.0)]


def _table2(df: pd.DataFrame, claim: Claim, low_w: float) -> tuple[pd.DataFrame | None, ClaimOutcome | None]:
    gated = _gated(claim, df, lambda: trained_gate(df), lambda: resolution_gate(df, "w2_ode_p0", 0.0, low_w))
    if gated:
        return None, gated
    table = _by_level(df, "w2_ode_p0.value")
    missing = [w for w in W_R if w not in table.columns]
    if missing:
        return None, ClaimOutcome(claim, skipped=f"w_R = {missing} not in the results")
    return table, None


@undecidable_as_skip
def claim_c2(df: pd.DataFrame) -> ClaimOutcome:
    claim = CLAIMS["C2"]
    table, outcome = _table2(df, claim, 0.1)
    if outcome:
        return outcome
    parts = c2_parts(table, **test_settings(PAIRED_MIN_EFFECT))
    result = st.all_of(parts, "intersection-union of four paired sign-flip tests")
    return ClaimOutcome(claim, result, measured="mean W2²(ODE, p0) per w_R " + _cell_means(df, "w2_ode_p0.value"),
                        parts=parts)


@undecidable_as_skip
def claim_c2b(df: pd.DataFrame) -> ClaimOutcome:
    claim = CLAIMS["C2b"]
    chosen = df[df["target"].isin(c2b_targets())] if df is not None else df
    table, outcome = _table2(chosen, claim, 10.0)
    if outcome:
        return outcome
    result = c2b_test(table, **test_settings(PAIRED_MIN_EFFECT))
    return ClaimOutcome(claim, result, measured=f"{', '.join(c2b_targets())}: mean W2²(ODE, p0) per w_R "
                        + _cell_means(chosen, "w2_ode_p0.value"))


def normalised_dsm(df: pd.DataFrame) -> pd.Series:
    """Fig. 4's L_DSM 'normalised by data distribution': the model's L_DSM over the exact score's on
    the same batch (1 for the exact score, whatever the target's own constant)."""
    return df["dsm_loss"] / df["dsm_loss_exact"]


@undecidable_as_skip
def claim_c4(df: pd.DataFrame) -> ClaimOutcome:
    claim = CLAIMS["C4"]
    gated = _gated(claim, df, lambda: trained_gate(df))
    if gated:
        return gated
    units = checkpoint_units(df)
    result = st.rank_correlation(units["log_fp_residual"], normalised_dsm(units), positive=False,
                                 groups=units["target"], **test_settings(CORRELATION_MIN_EFFECT))
    pooled = st.rank_correlation(units["log_fp_residual"], normalised_dsm(units), positive=False, n_perm=200,
                                 n_boot=200, **test_settings(CORRELATION_MIN_EFFECT))
    return ClaimOutcome(claim, result, measured=f"{_units_note(df, units)}; normalised L_DSM from "
                        f"{normalised_dsm(units).min():.3f} to {normalised_dsm(units).max():.3f}; pooled over targets "
                        f"(descriptive, not the test) rho = {pooled.statistic:.3f}")


def gap_w2(df: pd.DataFrame) -> pd.Series:
    """W2(p_ODE, p_SDE), the square root of Table 1's W2² (negative estimates clipped to 0)."""
    return np.sqrt(df["w2_ode_sde.value"].clip(lower=0))


@undecidable_as_skip
def claim_c5(df: pd.DataFrame) -> ClaimOutcome:
    """Fig. 5's association, tested where it is not C1 again: within (target, w_R) cells, across seeds."""
    claim = CLAIMS["C5"]
    gated = _gated(claim, df, lambda: trained_gate(df), lambda: resolution_gate(df, "w2_ode_sde", 0.0, 10.0))
    if gated:
        return gated
    units = checkpoint_units(df)
    cells = c5_cells(units)
    result = st.rank_correlation(units["log_fp_residual"], gap_w2(units), positive=True, groups=cells,
                                 **test_settings(CORRELATION_MIN_EFFECT))
    within_target = st.rank_correlation(units["log_fp_residual"], gap_w2(units), positive=True,
                                        groups=units["target"], n_perm=200, n_boot=200)
    return ClaimOutcome(claim, result, measured=f"{_units_note(df, units)} in {len(set(cells))} cells; "
                        "Fig. 5's picture "
                        f"(descriptive, through w_R as C1): within-target rho = {within_target.statistic:.3f}")


def c5_cells(df: pd.DataFrame) -> np.ndarray:
    """C5's groups: one per (target, w_R), so that w_R's own effect on both quantities (C1) is held fixed."""
    return (df["target"] + "/" + df["param_w_r"].astype(str)).to_numpy()


def theorem1_points(df: pd.DataFrame) -> pd.DataFrame:
    """Models whose ODE-SDE gap stands out of the noise: W2² at least ``LAB_USABLE_FACTOR`` x the exact score's
    (the floor plus discretisation at the same n; the floor's mean where no oracle is stored), with the excess
    W2 = sqrt(W2² - that baseline), the gap the model's error adds (as the lab's L1)."""
    base = df["oracle.w2_ode_sde"] if "oracle.w2_ode_sde" in df else df["floor.mean"]
    base = base.fillna(df["floor.mean"])
    out = df.assign(baseline=base)
    out = out[(out["w2_ode_sde.value"] >= CLAIM_SETTINGS[LAB_USABLE_FACTOR] * out["baseline"])
              & (out["log_fp_residual"] > 0)]
    return out.assign(w2_excess=np.sqrt(out["w2_ode_sde.value"] - out["baseline"]))


def theorem1_units(df: pd.DataFrame) -> pd.DataFrame:
    """``theorem1_points`` of the units of replication (``checkpoint_units``): a fixed checkpoint's samplings
    are averaged first, then its gap is asked to stand out, so that T1 fits, and the reports count, the same
    points."""
    return theorem1_points(checkpoint_units(df))


def _theorem1_draws(points: pd.DataFrame, rng: np.random.Generator, reps: int = 400) -> np.ndarray:
    sd = points["w2_ode_sde.boot_sd"].fillna(0.0).to_numpy() if "w2_ode_sde.boot_sd" in points else 0.0
    draws = rng.normal(points["w2_ode_sde.value"].to_numpy(), sd, (reps, len(points))) - points["baseline"].to_numpy()
    return np.sqrt(np.where(draws > 0, draws, np.nan))


@undecidable_as_skip
def claim_t1(df: pd.DataFrame) -> ClaimOutcome:
    """Theorem 1's rate: the exponent a of W2 excess ∝ R̃^a (one constant per target), a >= 1 claimed; the
    same fit against a >= 1/2 is reported as a part."""
    claim = CLAIMS["T1"]
    gated = _gated(claim, df, lambda: trained_gate(df))
    if gated:
        return gated
    points = theorem1_units(df)
    x, y, groups = points["log_fp_residual"].to_numpy(), points["w2_excess"].to_numpy(), points["target"].to_numpy()
    draws = _theorem1_draws(points, np.random.default_rng(0))
    parts = {f"a >= {a:g}": st.power_law_exponent(x, y, draws, groups, a, **test_settings()) for a in (1.0, 0.5)}
    return ClaimOutcome(claim, parts["a >= 1"], parts=parts, measured=(
        f"{len(points)} of {len(checkpoint_units(df))} models with a gap at least "
        f"{CLAIM_SETTINGS[LAB_USABLE_FACTOR]:g}x the exact score's; {parts['a >= 1'].detail}; against a >= 1/2: "
        f"{parts['a >= 0.5'].verdict}"))


def with_checkpoints(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a ``checkpoint`` column naming the one fixed checkpoint per (target, w_R) its rows sample:
    the authors' published models, each sampled by several sampling seeds."""
    return df.assign(checkpoint=df["target"] + "/" + df["param_w_r"].astype(str))


def checkpoint_units(df: pd.DataFrame) -> pd.DataFrame:
    """One row per trained model: where the rows are sampling seeds of fixed checkpoints (the authors' models,
    ``checkpoint`` column), their numbers averaged, so that three samplings of one checkpoint are one unit;
    fpbench's own rows (one training seed each) unchanged."""
    if df is None or "checkpoint" not in df or df["checkpoint"].isna().all():
        return df
    numeric = df.select_dtypes("number").columns.drop(["seed"], errors="ignore")
    firsts = df.groupby("checkpoint")[["target"]].first()
    return firsts.join(df.groupby("checkpoint")[list(numeric)].mean()).reset_index().assign(seed=0)


def _units_note(df: pd.DataFrame, units: pd.DataFrame) -> str:
    if len(units) == len(df):
        return f"{len(df)} models"
    return f"{len(units)} fixed checkpoints (their {len(df)} samplings averaged per checkpoint)"


# --- C6, C7 ---------------------------------------------------------------------------------------

def threshold_check(values: np.ndarray, tolerance: float, what: str) -> st.ClaimTest:
    """A deterministic check that every value is at most ``tolerance`` (no sampling noise involved)."""
    alpha = CLAIM_SETTINGS[ALPHA]
    worst = float(np.max(values))
    effect = math.log10(tolerance / max(worst, np.finfo(float).tiny))
    verdict = st.PASS if worst <= tolerance else st.FAIL
    return st.ClaimTest(f"max {what} <= {tolerance:.2g}", worst, math.nan, math.nan, effect,
                        "decades below the tolerance", effect, effect, len(np.atleast_1d(values)), alpha, 0.0, verdict)


@undecidable_as_skip
def claim_c6(paper_df: pd.DataFrame, curl_df: pd.DataFrame) -> ClaimOutcome:
    """Fig. 1: mean |curl| of each free score model at t = 0.01 against the largest |curl| of any potential
    model (float noise: a potential's curl is zero in exact arithmetic, check H1)."""
    claim = CLAIMS["C6"]
    if curl_df is None or curl_df.empty:
        return ClaimOutcome(claim, skipped="no finished free score model (suite `curl`)")
    if paper_df is None or paper_df.empty:
        return ClaimOutcome(claim, skipped="no finished potential model (suite `paper`)")
    result = st.separation(curl_df["curl_mean_t0"], paper_df["curl_max_t0"],
                           CLAIM_SETTINGS["curl: min separation (decades)"], alpha=CLAIM_SETTINGS[ALPHA])
    return ClaimOutcome(claim, result, measured=(
        f"mean |curl| at t = 0.01: score models {curl_df['curl_mean_t0'].min():.3g}-"
        f"{curl_df['curl_mean_t0'].max():.3g} "
        f"({len(curl_df)}); potential models' max |curl| <= {paper_df['curl_max_t0'].max():.2g} ({len(paper_df)})"))


def check_h1(paper_df: pd.DataFrame, dtype: str = "float32") -> ClaimOutcome:
    """Every potential model's largest |curl| under 1e4 machine epsilons of its dtype (zero by construction:
    a check that fpbench's curl and models are what they say, not a claim of the paper)."""
    check = CHECKS["H1"]
    if paper_df is None or paper_df.empty:
        return ClaimOutcome(check, skipped="no finished potential model (suite `paper`)")
    tolerance = CLAIM_SETTINGS["curl: zero tolerance (x machine eps of the dtype)"] * float(np.finfo(dtype).eps)
    result = threshold_check(paper_df["curl_max_t0"], tolerance, "|curl| (potential)")
    return ClaimOutcome(check, result, measured=f"potential models' max |curl| {paper_df['curl_max_t0'].max():.2g} "
                        f"({len(paper_df)})")


def check_h2(targets: list[str], sde: str = "ou", n: int = 500) -> ClaimOutcome:
    """max |R~| of the exact log-density (float64) at n points of the paper's box, per target."""
    from ..core.check import check_pair

    check = CHECKS["H2"]
    if not targets:
        return ClaimOutcome(check, skipped="no targets in the results")
    rows = [check_pair(t, sde, n) for t in targets]
    tolerance = CLAIM_SETTINGS["oracle residual tolerance (float64, max |R~|)"]
    result = threshold_check(np.array([r.max_abs_log_fp for r in rows]), tolerance, "|R~| (exact score)")
    return ClaimOutcome(check, result, measured="max |R~|: " + ", ".join(f"{r.target} {r.max_abs_log_fp:.1e}"
                                                                          for r in rows))


def oracle_frame(records: list[dict], store=None) -> pd.DataFrame:
    """One row per target: the exact score's W2^2(ODE, SDE), the noise floor at its sample size (mean,
    sd) and its discretisation bounds. With a store, the floor from ``ORACLE_FLOOR_REPS`` pairs where the
    pipeline measured it there (the runs' few replicates give a rough sd); nothing is measured here."""
    from ..run.config import ORACLE_FLOOR_REPS
    from ..run.evaluate import floor_spec
    from ..run.suite import Case

    rows = {}
    for rec in records:
        o, name = rec["metrics"].get("oracle"), rec["config"]["target"]["name"]
        if not o or name in rows:
            continue
        floor = o["floor"]
        if store is not None:
            stored = store.cached(store.floor_path(floor_spec(Case(rec["config"]), n=o["n"], reps=ORACLE_FLOOR_REPS)))
            floor = stored["floor"] if stored is not None else floor
        rows[name] = {"w2_ode_sde": o["w2_ode_sde"], "floor_mean": floor["mean"], "floor_sd": floor["sd"],
                      "floor_reps": floor["reps"], "disc_ode": o["disc_ode"], "disc_sde": o["disc_sde"], "n": o["n"]}
    return pd.DataFrame.from_dict(rows, orient="index")


def oracle_allowance(oracles: pd.DataFrame) -> tuple[np.ndarray, float, float]:
    """(per-target allowance floor + (sqrt(disc_ODE) + sqrt(disc_SDE))^2; the resolution: the largest gap a
    model could have and still pass, i.e. the discretisation part of the allowance plus what a z test at
    alpha / targets on the floor's sd lets through; the smallest effect of interest: Table 1's smallest
    w_R = 0 gap)."""
    from scipy import stats as sps

    discretisation = ((np.sqrt(oracles["disc_ode"]) + np.sqrt(oracles["disc_sde"])) ** 2).to_numpy()
    allowance = oracles["floor_mean"].to_numpy() + discretisation
    noise = float(sps.norm.isf(CLAIM_SETTINGS[ALPHA] / len(oracles)) * oracles["floor_sd"].max())
    return allowance, float(discretisation.max()) + noise, min(TABLES["w2_ode_sde"][0.0])


def check_h3(oracles: pd.DataFrame) -> ClaimOutcome:
    """The exact score's W2^2(p_ODE, p_SDE) against an allowance floor + (sqrt(disc_ODE) + sqrt(disc_SDE))^2
    (W2 triangle inequality with the coupling bounds), noise sd from the floor's replicates. It PASSes only
    when its resolution (the allowance's discretisation part plus the excess a z test at alpha / targets lets
    through) is below the paper's smallest w_R = 0 gap (Table 1): else a gap of the paper's size could pass,
    and it says so (INCONCLUSIVE)."""
    check = CHECKS["H3"]
    if oracles is None or oracles.empty:
        return ClaimOutcome(check, skipped="no oracle results (the exact score through the samplers)")
    if (oracles["floor_sd"] <= 0).any():
        return ClaimOutcome(check, skipped="the floor was measured from a single replicate: no noise estimate")
    allowance, resolution, detectable = oracle_allowance(oracles)
    result = st.within_noise(oracles["w2_ode_sde"], allowance, oracles["floor_sd"], resolution, detectable,
                             alpha=CLAIM_SETTINGS[ALPHA])
    measured = "; ".join(f"{t}: {r.w2_ode_sde:.4f} (floor {r.floor_mean:.4f} ± {r.floor_sd:.4f}, allowance "
                         f"{a:.4f}, n = {int(r.n):,}, {int(r.floor_reps)} floor pairs)"
                         for (t, r), a in zip(oracles.iterrows(), allowance))
    if resolution >= detectable:
        measured += (f"; cannot resolve a gap of the paper's smallest size {detectable:g}: the allowance lets "
                     f"through up to {resolution:.4f} (its discretisation bounds are that loose)")
    return ClaimOutcome(check, result, measured=measured)


def evaluate_claims(paper_df: pd.DataFrame, oracles: pd.DataFrame, curl_df: pd.DataFrame | None,
                    sde: str = "ou") -> list[ClaimOutcome]:
    """The paper's claims, in order, decided on p-values adjusted across them (``adjust_family``), then
    fpbench's own checks H1-H3 (never in that family). ``oracles``: ``oracle_frame`` of the records."""
    targets = sorted(paper_df["target"].unique()) if paper_df is not None and not paper_df.empty else []
    paper = adjust_family(_trained(paper_df) + [claim_c6(paper_df, curl_df)])
    return paper + [check_h1(paper_df), check_h2(targets, sde), check_h3(oracles)]


def _trained(df: pd.DataFrame) -> list[ClaimOutcome]:
    """The claims about trained models, each naming the tier of the models it was decided on."""
    outcomes = [claim_c1(df), claim_c2(df), claim_c2b(df), claim_c3(df), claim_c4(df), claim_c5(df), claim_t1(df)]
    tier = tier_reached(df)
    for o in outcomes:
        o.tier = tier if o.result is not None else None
    return outcomes


def trained_claims(df: pd.DataFrame, fixed_checkpoints: bool = False) -> list[ClaimOutcome]:
    """The claims about trained models alone on one set of models, decided on p-values adjusted across them:
    what the authors' published models are tested on (``fpbench reference claims``). ``fixed_checkpoints``:
    the rows are sampling seeds of one checkpoint per (target, w_R), so the correlation and rate tests take
    the checkpoint as their unit (``checkpoint_units``) and every conclusion is about those checkpoints."""
    if fixed_checkpoints:
        df = with_checkpoints(df)
    return adjust_family(_trained(df))


def is_check(outcome: ClaimOutcome) -> bool:
    """A harness check of fpbench's (H1-H3), not one of the paper's claims."""
    return outcome.claim.key in CHECKS


def adjust_family(outcomes: list[ClaimOutcome]) -> list[ClaimOutcome]:
    """Holm's adjustment across the claims that ran a test with a p-value in the claimed direction
    (deterministic checks and undecided claims are not in the family); each verdict is then decided
    on its adjusted p (``stats.with_adjusted_p``). Returns the same outcomes, updated."""
    adjusted = st.holm([o.result.pvalue if o.result is not None and not is_check(o) else math.nan for o in outcomes])
    for outcome, p in zip(outcomes, adjusted):
        outcome.p_holm = float(p)
        if outcome.result is not None:
            outcome.result = st.with_adjusted_p(outcome.result, p)
    return outcomes


# --- calibration: false positives on null data, negative controls, power on a planted effect ----------
#
# Every claim test is run on synthetic data sets built from the run's own numbers: *null* data (no effect:
# labels shuffled within blocks), *violating* data (the claim false: a reversed trend, no improvement, an
# effect just below the threshold, a gap of the paper's size) and *planted* data (the paper's effect at the
# measured noise). The rates of PASS, FAIL and INCONCLUSIVE under each are the test's operating
# characteristics; a test whose violating data PASS more often than alpha cannot tell the claim from its
# negation and is not evidence.

@dataclass
class Calibrated:
    """One claim test and its three kinds of synthetic data (``name``, ``make(rng) -> args``)."""
    key: str
    test: object
    null: tuple
    violation: tuple
    planted: tuple | None
    wrong: str = st.PASS  # the wrong verdict under the null
    right: str = st.PASS  # the right verdict on planted data


def seed_noise(df: pd.DataFrame, column: str, fallback: float = 0.25) -> float:
    """The seed-to-seed sd of log(value) (median over target x w_R cells); ``fallback`` with one seed."""
    sd = df[df[column] > 0].groupby(["target", "param_w_r"])[column].apply(lambda v: np.log(v).std(ddof=1))
    sd = sd.dropna()
    return float(sd.median()) if len(sd) else fallback


def _noisy(values: np.ndarray, sigma: float, rng) -> np.ndarray:
    return values * np.exp(rng.normal(0, sigma, np.shape(values)))


def _paper_table(levels: pd.DataFrame, table_name: str) -> np.ndarray:
    """Blocks x w_R of the paper's table values, in the layout of ``levels``."""
    return np.array([[paper_value(table_name, t, w) or np.nan for w in levels.columns] for t, _s in levels.index])


def _trend_specs(df: pd.DataFrame) -> list[Calibrated]:
    specs = []
    for key, (table, increasing, _what) in TREND_CLAIMS.items():
        levels = _by_level(df, f"{table}.value")
        if levels.shape[1] < 3:
            continue
        real, paper, sigma = levels.to_numpy(), _paper_table(levels, table), seed_noise(df, f"{table}.value")
        test = lambda t, inc=increasing: st.ordered_trend(t, inc, n_boot=200, **test_settings(TREND_MIN_EFFECT))
        specs.append(Calibrated(
            key, test, ("w_R labels shuffled within each block", lambda r, real=real: (r.permuted(real, axis=1),)),
            (f"Table {key[1]} reversed in w_R x exp(N(0, {sigma:.2f}))",
             lambda r, p=paper, s=sigma: (_noisy(p[:, ::-1], s, r),)),
            (f"Table {key[1]} x exp(N(0, {sigma:.2f}))", lambda r, p=paper, s=sigma: (_noisy(p, s, r),))))
    return specs


def _table2_specs(df: pd.DataFrame) -> list[Calibrated]:
    levels = _by_level(df, "w2_ode_p0.value")
    if not set(W_R) <= set(levels.columns):
        return []
    columns, sigma = list(levels.columns), seed_noise(df, "w2_ode_p0.value")
    real, paper = levels.to_numpy(), _paper_table(levels, "w2_ode_p0")
    kw = {"n_boot": 200} | test_settings(PAIRED_MIN_EFFECT)
    frame = lambda t: pd.DataFrame(t, columns=columns)  # noqa: E731
    no_help = paper.copy()  # moderate w_R no better than w_R = 0: C2's first parts false
    no_help[:, columns.index(0.1)] = no_help[:, columns.index(1.0)] = no_help[:, columns.index(0.0)]
    specs = [Calibrated(
        "C2", lambda t: st.all_of(c2_parts(frame(t), **kw), "C2"),
        ("w_R labels shuffled within each block", lambda r: (r.permuted(real, axis=1),)),
        (f"Table 2 with w_R = 0.1 and 1 set to w_R = 0's value, x exp(N(0, {sigma:.2f}))",
         lambda r: (_noisy(no_help, sigma, r),)),
        (f"Table 2 values x exp(N(0, {sigma:.2f}))", lambda r: (_noisy(paper, sigma, r),)))]
    mine = df["target"].isin(c2b_targets())
    if mine.any():
        rows = np.array([t in c2b_targets() for t, _s in levels.index])
        sub, sub_paper = real[rows], paper[rows]
        better = sub_paper.copy()  # w_R = 10 10% better than w_R = 0: C2b false
        better[:, columns.index(10.0)] = better[:, columns.index(0.0)] / 1.1
        specs.append(Calibrated(
            "C2b", lambda t: c2b_test(frame(t), **kw),
            ("w_R labels shuffled within each block", lambda r: (r.permuted(sub, axis=1),)),
            (f"Table 2 (blob, checker) with w_R = 10 at w_R = 0's value / 1.1, x exp(N(0, {sigma:.2f}))",
             lambda r: (_noisy(better, sigma, r),)),
            (f"Table 2 (blob, checker) x exp(N(0, {sigma:.2f}))", lambda r: (_noisy(sub_paper, sigma, r),))))
    return specs


def _ordered_within(x: np.ndarray, y: np.ndarray, groups: np.ndarray, ascending: bool) -> np.ndarray:
    """y rearranged within each group so that its ranks follow x's (ascending) or run against them."""
    out = np.array(y, dtype=float, copy=True)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        ys = np.sort(y[idx])
        out[idx[np.argsort(x[idx])]] = ys if ascending else ys[::-1]
    return out


def _correlation_spec(key: str, x, y, groups, positive: bool, sigma: float) -> Calibrated:
    def test(y_):
        return st.rank_correlation(x, y_, positive, groups, n_perm=500, n_boot=200,
                                   **test_settings(CORRELATION_MIN_EFFECT))

    claimed, against = (_ordered_within(x, y, groups, asc) for asc in (positive, not positive))
    return Calibrated(key, test, ("y shuffled within each group", lambda r: (st.permute_within_groups(y, groups, r),)),
                      (f"y ranked against the claim within each group, x exp(N(0, {sigma:.2f}))",
                       lambda r: (_noisy(against, sigma, r),)),
                      (f"y ranked as claimed within each group, x exp(N(0, {sigma:.2f}))",
                       lambda r: (_noisy(claimed, sigma, r),)))


def _correlation_specs(df: pd.DataFrame) -> list[Calibrated]:
    """C4 (normalised L_DSM within targets) and C5 (W2 within (target, w_R) cells) on the measured R~."""
    if "log_fp_residual" not in df or len(df) < 3:
        return []
    units = checkpoint_units(df)
    x = units["log_fp_residual"].to_numpy()
    dsm_sigma = seed_noise(units.assign(dsm_normalised=normalised_dsm(units)), "dsm_normalised", 0.005)
    return [_correlation_spec("C4", x, normalised_dsm(units).to_numpy(), units["target"].to_numpy(), False, dsm_sigma),
            _correlation_spec("C5", x, gap_w2(units).to_numpy(), c5_cells(units), True,
                              seed_noise(units, "w2_ode_sde.value") / 2)]


def _t1_spec(df: pd.DataFrame) -> list[Calibrated]:
    """T1's exponent on power laws through the models' own R~, at the gaps' measured relative noise."""
    points = theorem1_units(df) if "log_fp_residual" in df else None
    if points is None or len(points) < 3:
        return []
    x, groups = points["log_fp_residual"].to_numpy(), points["target"].to_numpy()
    rel = float(np.nanmedian(points["w2_ode_sde.boot_sd"] / points["w2_ode_sde.value"])) / 2 \
        if "w2_ode_sde.boot_sd" in points else 0.05
    level = {g: np.exp(np.mean(np.log(points["w2_excess"][groups == g]) - np.log(x[groups == g]))) for g in set(groups)}
    scale = np.array([level[g] for g in groups])

    def test(y):
        draws = _noisy(np.broadcast_to(y, (200, len(y))), rel, np.random.default_rng(1))
        return st.power_law_exponent(x, y, draws, groups, 1.0, **test_settings())

    law = lambda a: scale * x**a  # noqa: E731
    return [Calibrated("T1", test, ("W2 shuffled within each target (no rate)",
                                    lambda r: (st.permute_within_groups(points["w2_excess"].to_numpy(), groups, r),)),
                       (f"W2 ∝ R̃^0.8 (just below the bound's rate) x exp(N(0, {rel:.2f}))",
                        lambda r: (_noisy(law(0.8), rel, r),)),
                       (f"W2 ∝ R̃^1.5 x exp(N(0, {rel:.2f}))", lambda r: (_noisy(law(1.5), rel, r),)))]


def calibration(paper_df: pd.DataFrame, curl_df: pd.DataFrame | None = None, oracles: pd.DataFrame | None = None,
                reps: int = 200, seed: int = 0, fixed_checkpoints: bool = False) -> pd.DataFrame:
    """Per claim test (and check H3): its rates of PASS, FAIL and INCONCLUSIVE on null, violating and planted
    data over ``reps`` synthetic data sets each (see above). ``fixed_checkpoints`` as in ``trained_claims``."""
    if fixed_checkpoints:
        paper_df = with_checkpoints(paper_df)
    specs = _trend_specs(paper_df) + _table2_specs(paper_df) + _correlation_specs(paper_df) + _t1_spec(paper_df)
    if curl_df is not None and not curl_df.empty:
        specs.append(_curl_spec(paper_df, curl_df))
    if oracles is not None and not oracles.empty and (oracles["floor_sd"] > 0).all():
        specs.append(_oracle_spec(oracles))
    order = list(CLAIMS) + list(CHECKS)
    specs.sort(key=lambda c: order.index(c.key))
    frame = pd.DataFrame([calibration_row(spec, reps, seed) for spec in specs])
    frame.attrs["family"] = family_false_positives([(c.test, c.null[1]) for c in specs
                                                    if c.wrong == st.PASS and c.key in CLAIMS], reps, seed)
    return frame


def family_false_positives(tests: list, reps: int, seed: int) -> dict:
    """Under the global null (every claim's null data at once): the rate of at least one false PASS
    among the claims, with raw p-values and with Holm's adjustment, each with its exact 95% interval."""
    from scipy import stats as sps

    rng = np.random.default_rng(seed + 7)
    raw = holm = 0
    runs = 0
    for _ in range(reps if tests else 0):
        results = []
        for test, null in tests:
            try:
                results.append(test(*null(rng)))
            except st.UndecidableError:
                continue
        adjusted = st.holm([r.pvalue for r in results])
        raw += any(r.verdict == st.PASS for r in results)
        holm += any(st.with_adjusted_p(r, p).verdict == st.PASS for r, p in zip(results, adjusted))
        runs += 1
    if not runs:
        return {}
    out = {"claims": len(tests), "reps": runs}
    for name, k in (("raw", raw), ("holm", holm)):
        ci = sps.binomtest(k, runs).proportion_ci(confidence_level=0.95, method="exact")
        out[name], out[f"{name}_ci"] = k / runs, (float(ci.low), float(ci.high))
    return out


def _curl_spec(paper_df, curl_df) -> Calibrated:
    potential, score = paper_df["curl_max_t0"].to_numpy(), curl_df["curl_mean_t0"].to_numpy()
    decades = CLAIM_SETTINGS["curl: min separation (decades)"]

    def test(a, b):
        return st.separation(a, b, decades, n_boot=200, alpha=CLAIM_SETTINGS[ALPHA])

    just_below = 10 ** (decades - 0.5) * potential.max()
    return Calibrated("C6", test, ("both groups resampled from the potential models' curls",
                                   lambda r: (r.choice(potential, len(score)), r.choice(potential, len(potential)))),
                      (f"score-model curls {decades - 0.5:g} decades above the potentials' largest (needs {decades:g})",
                       lambda r: (_noisy(np.full(len(score), just_below), 0.1, r).clip(min=just_below * 0.9),
                                  r.choice(potential, len(potential)))),
                      ("the measured score-model curls resampled",
                       lambda r: (r.choice(score, len(score)), r.choice(potential, len(potential)))))


def _oracle_spec(oracles: pd.DataFrame) -> Calibrated:
    allowance, resolution, detectable = oracle_allowance(oracles)
    mean, sd = oracles["floor_mean"].to_numpy(), oracles["floor_sd"].to_numpy()

    def test(measured):
        return st.within_noise(measured, allowance, sd, resolution, detectable, alpha=CLAIM_SETTINGS[ALPHA])

    return Calibrated("H3", test,
                      ("gap = noise only (floor mean + N(0, floor sd))", lambda r: (mean + r.normal(0, sd),)),
                      (f"a gap of the paper's smallest size ({detectable}) over the floor, + noise",
                       lambda r: (mean + detectable + r.normal(0, sd),)),
                      (f"allowance + Table 1's smallest w_R = 0 gap ({detectable}) + noise",
                       lambda r: (allowance + detectable + r.normal(0, sd),)), wrong=st.FAIL, right=st.FAIL)


def _rates(rates: dict) -> str:
    return " / ".join(f"{rates[v]:.2f}" for v in (st.PASS, st.FAIL, st.INCONCLUSIVE))


def calibration_row(spec: Calibrated, reps: int, seed: int) -> dict:
    """One row of the calibration table (``calibration``)."""
    nan = float("nan")
    row = {"claim": spec.key, "null data": spec.null[0], "wrong verdict": spec.wrong, "rate under null": nan,
           "rate under null, 95% CI": (nan, nan), "violating data": spec.violation[0],
           "PASS rate on violating data": nan, "PASS on violating, 95% CI": (nan, nan),
           "planted effect": spec.planted[0] if spec.planted else "—", "right verdict": spec.right, "power": nan,
           "power, 95% CI": (nan, nan), "PASS / FAIL / INCONCLUSIVE (null; violating; planted)": "—", "reps": 0}
    try:
        null = st.calibrate(spec.test, spec.null[1], reps, seed)
        bad = st.calibrate(spec.test, spec.violation[1], reps, seed + 2)
        planted = st.calibrate(spec.test, spec.planted[1], reps, seed + 1) if spec.planted else None
    except st.UndecidableError as err:  # too little data for the test itself
        return row | {"null data": f"not computable: {err}"}
    row |= {"rate under null": null[spec.wrong], "rate under null, 95% CI": null[f"{spec.wrong}_ci"],
            "PASS rate on violating data": bad[st.PASS], "PASS on violating, 95% CI": bad[f"{st.PASS}_ci"],
            "PASS / FAIL / INCONCLUSIVE (null; violating; planted)":
                "; ".join(_rates(r) for r in (null, bad, planted) if r is not None), "reps": reps}
    if planted:
        row |= {"power": planted[spec.right], "power, 95% CI": planted[f"{spec.right}_ci"]}
    return row
