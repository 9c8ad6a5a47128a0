"""The paper's claims C1-C7 as statistical tests on stored results (fpbench.analysis.stats).

Each claim reads a results frame (one row per finished case, ``store.flatten_metrics`` columns) of
the ``paper`` suite (and, for C6, of the ``curl`` suite) and returns a ``ClaimOutcome``: a
``ClaimTest`` with its verdict, or the reason the data cannot decide it. Two gates decide
decidability before any test runs; both are measured, never assumed:

- *trained*: claims about trained models (C1-C5) need baselines that have learned the target: the
  w_R = 0 models' W2^2(p_SDE, p0) minus the noise floor within ``TRAINED_FACTOR`` x Table 3's w_R = 0
  value for every target;
- *converged*: claims about trained models (C1-C5) are decided only when every model passes the
  convergence gate (``convergence_gate``: the oracle's score ratio and relative score error,
  ``fpbench.core.convergence``, against the authors' published models, and the shares of samples inside
  the grid); otherwise they are INCONCLUSIVE with the failing models' evidence, never PASS or FAIL;
- *resolution*: claims on W2^2 differences (C1, C2, C3, C5) need the estimator's noise floor at
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
# The tests' settings (keys of CLAIM_SETTINGS; every test, and its calibration, reads them from there).
ALPHA = "alpha"
TREND_MIN_EFFECT = "trend min effect (mean Spearman rho within blocks)"
PAIRED_MIN_EFFECT = "paired min effect (mean log ratio)"
CORRELATION_MIN_EFFECT = "correlation min effect (Spearman rho)"
BOUND_MAX_SPREAD = "bound: max spread of C across targets"
LAB_USABLE_FACTOR = "lab L1: a planted gap is fitted when W2^2 is at least (x the exact score's, same noise)"
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
    Claim("C2", "Table 2", "W2²(p_ODE, p0) at w_R = 0.1 and 1 is below w_R = 0; w_R = 10 is worse than the "
          "best of them"),
    Claim("C3", "Table 3", "W2²(p_SDE, p0) increases with w_R"),
    Claim("C4", "Fig. 4", "R̃(θ, φθ, 0) and the normalised L_DSM are negatively correlated"),
    Claim("C5", "Fig. 5, Theorem 1", "R̃ and W2(p_ODE, p_SDE) are positively correlated; W2 <= C·R̃ with a "
          "finite C, stable across targets"),
    Claim("C6", "Fig. 1", "a trained free score network has curl clearly above float noise; a potential model "
          "has none"),
    Claim("C7a", "oracle (fpbench)", "the exact score has zero log-FP residual"),
    Claim("C7b", "oracle (fpbench)", "the exact score has no ODE-SDE gap beyond noise floor + discretisation"),
]}
TRAINED_CLAIMS = ("C1", "C2", "C3", "C4", "C5")  # about trained models: decided behind the convergence gate


@dataclass
class ClaimOutcome:
    claim: Claim
    result: st.ClaimTest | None = None
    skipped: str | None = None
    measured: str = ""
    parts: dict = field(default_factory=dict)
    inconclusive: bool = False  # not decided because the models failed the convergence gate
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
            key = claim_fn.__name__.removeprefix("claim_").upper()
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


def reference_error(target: str, w_r) -> float:
    """The authors' model's relative score error for (target, w_R) (``fpbench.analysis.authors_levels``); for
    a w_R or a method they did not train, their largest on that target; for other targets, their largest."""
    from .authors_levels import LEVELS

    if target in LEVELS and w_r in LEVELS[target]:
        return LEVELS[target][w_r]["rel_error"]
    pool = LEVELS[target].values() if target in LEVELS else [v for lv in LEVELS.values() for v in lv.values()]
    return max(v["rel_error"] for v in pool)


def convergence_checks(df: pd.DataFrame) -> pd.DataFrame:
    """Per model: its evidence and which of the gate's checks it fails (an empty ``fails`` passes)."""
    low, high = CLAIM_SETTINGS[GATE_RATIO_BAND]
    factor, loss = CLAIM_SETTINGS[GATE_ERROR_FACTOR], CLAIM_SETTINGS[GATE_GRID_LOSS]
    rows = []
    for _, r in df.iterrows():
        level = reference_error(r["target"], r.get("param_w_r"))
        fails = []
        if not (low <= r["convergence.ratio_min_late"] and r["convergence.ratio_max_late"] <= high):
            fails.append(f"score ratio {r['convergence.ratio_min_late']:.2f}-{r['convergence.ratio_max_late']:.2f} "
                         f"outside [{low:g}, {high:g}]")
        if not r["convergence.rel_error"] <= factor * level:
            fails.append(f"relative score error {r['convergence.rel_error']:.3g} = "
                         f"{r['convergence.rel_error'] / level:.0f}x the authors' {level:.2g}")
        for kind in ("ode", "sde"):
            share = r.get(f"inside_grid_{kind}")
            if share is not None and np.isfinite(share) and share < r.get("inside_grid_p0", 1.0) - loss:
                fails.append(f"{share:.0%} of {kind.upper()} samples inside the grid")
        rows.append({"target": r["target"], "w_r": r.get("param_w_r"), "seed": r.get("seed"),
                     "ratio_min_late": r["convergence.ratio_min_late"], "rel_error": r["convergence.rel_error"],
                     "authors_rel_error": level, "fails": fails})
    return pd.DataFrame(rows)


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


# --- C1-C5 ----------------------------------------------------------------------------------------

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


@undecidable_as_skip
def claim_c2(df: pd.DataFrame) -> ClaimOutcome:
    claim = CLAIMS["C2"]
    gated = _gated(claim, df, lambda: trained_gate(df), lambda: resolution_gate(df, "w2_ode_p0", 0.0, 0.1))
    if gated:
        return gated
    table = _by_level(df, "w2_ode_p0.value")
    missing = [w for w in W_R if w not in table.columns]
    if missing:
        return ClaimOutcome(claim, skipped=f"w_R = {missing} not in the results")
    best_moderate = table[[0.1, 1.0]].min(axis=1)
    kw = test_settings(PAIRED_MIN_EFFECT)
    parts = {"w_R = 0.1 below 0": st.paired_comparison(table[0.1], table[0.0], **kw),
             "w_R = 1 below 0": st.paired_comparison(table[1.0], table[0.0], **kw),
             "w_R = 10 above the best of 0.1, 1": st.paired_comparison(best_moderate, table[10.0], **kw)}
    result = st.all_of(parts, "intersection-union of three paired sign-flip tests")
    return ClaimOutcome(claim, result, measured="mean W2²(ODE, p0) per w_R " + _cell_means(df, "w2_ode_p0.value"),
                        parts=parts)


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
    result = st.rank_correlation(df["log_fp_residual"], normalised_dsm(df), positive=False, groups=df["target"],
                                  **test_settings(CORRELATION_MIN_EFFECT))
    return ClaimOutcome(claim, result, measured=f"{len(df)} models; normalised L_DSM from "
                        f"{normalised_dsm(df).min():.3f} to {normalised_dsm(df).max():.3f}")


@undecidable_as_skip
def claim_c5(df: pd.DataFrame) -> ClaimOutcome:
    claim = CLAIMS["C5"]
    gated = _gated(claim, df, lambda: trained_gate(df), lambda: resolution_gate(df, "w2_ode_sde", 0.0, 10.0))
    if gated:
        return gated
    w2 = np.sqrt(df["w2_ode_sde.value"].clip(lower=0))
    bound = test_settings(max_spread=BOUND_MAX_SPREAD)
    parts = {"rank correlation": st.rank_correlation(df["log_fp_residual"], w2, positive=True, groups=df["target"],
                                                     **test_settings(CORRELATION_MIN_EFFECT)),
             "bound W2 <= C R~": st.bound_constant(w2, df["log_fp_residual"], df["target"], exponent=1.0, **bound)}
    sqrt_bound = st.bound_constant(w2, df["log_fp_residual"], df["target"], exponent=0.5, **bound)
    result = st.all_of(parts, "intersection-union: rank correlation and a stable bound constant")
    return ClaimOutcome(claim, result, parts=parts | {"bound W2 <= C sqrt(R~) (reported)": sqrt_bound},
                        measured=f"{len(df)} models; {parts['bound W2 <= C R~'].detail}; with sqrt(R~): "
                                 f"{sqrt_bound.detail}")


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
def claim_c6(paper_df: pd.DataFrame, curl_df: pd.DataFrame, dtype: str = "float32") -> ClaimOutcome:
    """Mean |curl| of each free score model at t = 0.01 against the largest |curl| of any potential
    model (float noise: a potential's curl is zero in exact arithmetic), and every potential's largest
    |curl| under 1e4 machine epsilons."""
    claim = CLAIMS["C6"]
    if curl_df is None or curl_df.empty:
        return ClaimOutcome(claim, skipped="no finished free score model (suite `curl`)")
    if paper_df is None or paper_df.empty:
        return ClaimOutcome(claim, skipped="no finished potential model (suite `paper`)")
    tolerance = CLAIM_SETTINGS["curl: zero tolerance (x machine eps of the dtype)"] * float(np.finfo(dtype).eps)
    parts = {"score models above potentials' float noise": st.separation(
                 curl_df["curl_mean_t0"], paper_df["curl_max_t0"], CLAIM_SETTINGS["curl: min separation (decades)"],
                 alpha=CLAIM_SETTINGS[ALPHA]),
             "potential models' curl is zero": threshold_check(paper_df["curl_max_t0"], tolerance,
                                                               "|curl| (potential)")}
    result = st.all_of(parts, "separation of curls and zero curl of potentials")
    return ClaimOutcome(claim, result, parts=parts, measured=(
        f"mean |curl| at t = 0.01: score models {curl_df['curl_mean_t0'].min():.3g}-"
        f"{curl_df['curl_mean_t0'].max():.3g} "
        f"({len(curl_df)}); potential models' max |curl| <= {paper_df['curl_max_t0'].max():.2g} ({len(paper_df)})"))


def claim_c7a(targets: list[str], sde: str = "ou", n: int = 500) -> ClaimOutcome:
    """max |R~| of the exact log-density (float64) at n points of the paper's box, per target."""
    from ..core.check import check_pair

    claim = CLAIMS["C7a"]
    if not targets:
        return ClaimOutcome(claim, skipped="no targets in the results")
    rows = [check_pair(t, sde, n) for t in targets]
    tolerance = CLAIM_SETTINGS["oracle residual tolerance (float64, max |R~|)"]
    result = threshold_check(np.array([r.max_abs_log_fp for r in rows]), tolerance, "|R~| (exact score)")
    return ClaimOutcome(claim, result, measured="max |R~|: " + ", ".join(f"{r.target} {r.max_abs_log_fp:.1e}"
                                                                          for r in rows))


ORACLE_FLOOR_REPS = 20


def oracle_frame(records: list[dict], store=None) -> pd.DataFrame:
    """One row per target: the exact score's W2^2(ODE, SDE), the noise floor at its sample size (mean,
    sd) and its discretisation bounds. With a store, the floor is re-measured from
    ``ORACLE_FLOOR_REPS`` pairs (cached there): the runs' few replicates give a rough sd."""
    from ..core.targets import make_target
    from ..run.evaluate import noise_floor
    from ..run.suite import Case

    rows = {}
    for rec in records:
        o, name = rec["metrics"].get("oracle"), rec["config"]["target"]["name"]
        if not o or name in rows:
            continue
        floor = o["floor"]
        if store is not None:
            case = Case(rec["config"])
            floor = noise_floor(case, make_target(name, **rec["config"]["target"]["params"]), store, n=o["n"],
                                reps=ORACLE_FLOOR_REPS).to_dict()
        rows[name] = {"w2_ode_sde": o["w2_ode_sde"], "floor_mean": floor["mean"], "floor_sd": floor["sd"],
                      "floor_reps": floor["reps"], "disc_ode": o["disc_ode"], "disc_sde": o["disc_sde"], "n": o["n"]}
    return pd.DataFrame.from_dict(rows, orient="index")


def oracle_allowance(oracles: pd.DataFrame) -> tuple[np.ndarray, float, float]:
    """(per-target allowance floor + (sqrt(disc_ODE) + sqrt(disc_SDE))^2, the resolution of a z test at
    alpha / targets on the floor's sd, the smallest effect of interest: Table 1's smallest w_R = 0 gap)."""
    from scipy import stats as sps

    allowance = (oracles["floor_mean"] + (np.sqrt(oracles["disc_ode"]) + np.sqrt(oracles["disc_sde"])) ** 2).to_numpy()
    resolution = float(sps.norm.isf(CLAIM_SETTINGS[ALPHA] / len(oracles)) * oracles["floor_sd"].max())
    return allowance, resolution, min(TABLES["w2_ode_sde"][0.0])


def claim_c7b(oracles: pd.DataFrame) -> ClaimOutcome:
    """The exact score's W2^2(p_ODE, p_SDE) against an allowance floor + (sqrt(disc_ODE) + sqrt(disc_SDE))^2
    (W2 triangle inequality with the coupling bounds), noise sd from the floor's replicates; the
    resolution (the excess a z test at alpha / targets would let through) must be below the paper's
    smallest w_R = 0 gap (Table 1), or an effect of the paper's size could hide in the noise."""
    claim = CLAIMS["C7b"]
    if oracles is None or oracles.empty:
        return ClaimOutcome(claim, skipped="no oracle results (the exact score through the samplers)")
    if (oracles["floor_sd"] <= 0).any():
        return ClaimOutcome(claim, skipped="the floor was measured from a single replicate: no noise estimate")
    allowance, resolution, detectable = oracle_allowance(oracles)
    result = st.within_noise(oracles["w2_ode_sde"], allowance, oracles["floor_sd"], resolution, detectable,
                             alpha=CLAIM_SETTINGS[ALPHA])
    measured = "; ".join(f"{t}: {r.w2_ode_sde:.4f} (floor {r.floor_mean:.4f} ± {r.floor_sd:.4f}, allowance "
                         f"{a:.4f}, n = {int(r.n):,}, {int(r.floor_reps)} floor pairs)"
                         for (t, r), a in zip(oracles.iterrows(), allowance))
    return ClaimOutcome(claim, result, measured=measured)


def evaluate_claims(paper_df: pd.DataFrame, oracles: pd.DataFrame, curl_df: pd.DataFrame | None,
                    sde: str = "ou") -> list[ClaimOutcome]:
    """Every claim, in order, on one scale's results (``oracles``: ``oracle_frame`` of its records),
    decided on p-values adjusted across the family (``adjust_family``)."""
    targets = sorted(paper_df["target"].unique()) if paper_df is not None and not paper_df.empty else []
    return adjust_family([claim_c1(paper_df), claim_c2(paper_df), claim_c3(paper_df), claim_c4(paper_df),
                          claim_c5(paper_df), claim_c6(paper_df, curl_df), claim_c7a(targets, sde),
                          claim_c7b(oracles)])


def trained_claims(df: pd.DataFrame) -> list[ClaimOutcome]:
    """C1-C5 alone (the claims about trained models) on one set of models, decided on p-values adjusted
    across these five: what the authors' published models are tested on (``fpbench reference claims``)."""
    return adjust_family([claim_c1(df), claim_c2(df), claim_c3(df), claim_c4(df), claim_c5(df)])


def adjust_family(outcomes: list[ClaimOutcome]) -> list[ClaimOutcome]:
    """Holm's adjustment across the claims that ran a test with a p-value in the claimed direction
    (deterministic checks and undecided claims are not in the family); each verdict is then decided
    on its adjusted p (``stats.with_adjusted_p``). Returns the same outcomes, updated."""
    adjusted = st.holm([o.result.pvalue if o.result is not None else math.nan for o in outcomes])
    for outcome, p in zip(outcomes, adjusted):
        outcome.p_holm = float(p)
        if outcome.result is not None:
            outcome.result = st.with_adjusted_p(outcome.result, p)
    return outcomes


# --- calibration: false positives on null data, power on a planted effect of the paper's size ------

def seed_noise(df: pd.DataFrame, column: str, fallback: float = 0.25) -> float:
    """The seed-to-seed sd of log(value) (median over target x w_R cells); ``fallback`` with one seed."""
    sd = df[df[column] > 0].groupby(["target", "param_w_r"])[column].apply(lambda v: np.log(v).std(ddof=1))
    sd = sd.dropna()
    return float(sd.median()) if len(sd) else fallback


def _shuffle_levels(table: np.ndarray, rng) -> np.ndarray:
    return rng.permuted(table, axis=1)


def _planted_table(df: pd.DataFrame, table_name: str, sigma: float, rng) -> pd.DataFrame:
    """Blocks x w_R of the paper's table values with multiplicative noise exp(N(0, sigma))."""
    levels = _by_level(df, "w2_ode_sde.value")
    values = np.array([[paper_value(table_name, t, w) or np.nan for w in levels.columns] for t, _s in levels.index])
    return pd.DataFrame(values * np.exp(rng.normal(0, sigma, values.shape)), index=levels.index, columns=levels.columns)


def calibration(paper_df: pd.DataFrame, curl_df: pd.DataFrame | None = None, oracles: pd.DataFrame | None = None,
                reps: int = 200, seed: int = 0) -> pd.DataFrame:
    """Per claim test: the rate of a wrong verdict on null data (no effect) and of the right verdict on
    data with the paper's effect planted, at the measured noise, over ``reps`` synthetic data sets.
    For C1-C6 the wrong verdict under the null is PASS; for C7b (a "no gap" claim) it is FAIL."""
    rows = []
    fast = {"n_boot": 200}
    blocks = _by_level(paper_df, "w2_ode_sde.value")
    if blocks.shape[1] >= 3 and blocks.shape[0] >= 1:
        for key, (table, increasing, _what) in TREND_CLAIMS.items():
            column = f"{table}.value"
            real, sigma = _by_level(paper_df, column).to_numpy(), seed_noise(paper_df, column)
            test = lambda t, inc=increasing: st.ordered_trend(t, inc, **fast, **test_settings(TREND_MIN_EFFECT))
            rows.append(_calibrated(key, "w_R labels shuffled within each block", test,
                                    lambda r, real=real: (_shuffle_levels(real, r),), st.PASS,
                                    f"Table {key[1]} values x exp(N(0, {sigma:.2f}))",
                                    lambda r, tn=table, s=sigma: (_planted_table(paper_df, tn, s, r).to_numpy(),),
                                    reps, seed))
        if {0.0, 0.1, 1.0, 10.0} <= set(blocks.columns):
            real, sigma = _by_level(paper_df, "w2_ode_p0.value"), seed_noise(paper_df, "w2_ode_p0.value")

            def c2(t):
                t, kw = pd.DataFrame(t, columns=real.columns), fast | test_settings(PAIRED_MIN_EFFECT)
                parts = {"a": st.paired_comparison(t[0.1], t[0.0], **kw),
                         "b": st.paired_comparison(t[1.0], t[0.0], **kw),
                         "c": st.paired_comparison(t[[0.1, 1.0]].min(axis=1), t[10.0], **kw)}
                return st.all_of(parts, "C2")
            rows.append(_calibrated("C2", "w_R labels shuffled within each block", c2,
                                    lambda r: (_shuffle_levels(real.to_numpy(), r),), st.PASS,
                                    f"Table 2 values x exp(N(0, {sigma:.2f}))",
                                    lambda r: (_planted_table(paper_df, "w2_ode_p0", sigma, r).to_numpy(),),
                                    reps, seed))
    rows += _correlation_calibration(paper_df, reps, seed)
    if curl_df is not None and not curl_df.empty:
        rows.append(_curl_calibration(paper_df, curl_df, reps, seed))
    if oracles is not None and not oracles.empty and (oracles["floor_sd"] > 0).all():
        rows.append(_oracle_calibration(oracles, reps, seed))
    pairs = [(r.pop("_test", None), r.pop("_null", None), r["wrong verdict"]) for r in rows]
    frame = pd.DataFrame(rows)
    frame.attrs["family"] = family_false_positives([(t, n) for t, n, wrong in pairs if t is not None
                                                    and wrong == st.PASS], reps, seed)
    return frame


def family_false_positives(tests: list, reps: int, seed: int) -> dict:
    """Under the global null (every claim's null data at once): the rate of at least one false PASS
    among the claims, with raw p-values and with Holm's adjustment, each with its exact 95% interval."""
    from scipy import stats as sps

    if not tests:
        return {}
    rng = np.random.default_rng(seed + 7)
    raw = holm = 0
    for _ in range(reps):
        results = [test(*null(rng)) for test, null in tests]
        adjusted = st.holm([r.pvalue for r in results])
        raw += any(r.verdict == st.PASS for r in results)
        holm += any(st.with_adjusted_p(r, p).verdict == st.PASS for r, p in zip(results, adjusted))
    out = {"claims": len(tests), "reps": reps}
    for name, k in (("raw", raw), ("holm", holm)):
        ci = sps.binomtest(k, reps).proportion_ci(confidence_level=0.95, method="exact")
        out[name], out[f"{name}_ci"] = k / reps, (float(ci.low), float(ci.high))
    return out


def _correlation_calibration(df: pd.DataFrame, reps: int, seed: int) -> list[dict]:
    """C4 and C5's rank correlation: y shuffled within target (null); y from the paper's Table 3 (C4,
    the SDE degradation Fig. 4 explains) or Table 1 (C5) at each model's (target, w_R), with the
    measured seed noise (planted); x is the models' measured R~."""
    if "log_fp_residual" not in df or len(df) < 3:
        return []
    x, groups = df["log_fp_residual"].to_numpy(), df["target"].to_numpy()
    cells = list(zip(df["target"], df["param_w_r"]))
    rows = []
    for key, y_real, table, positive, column in [
            ("C4", normalised_dsm(df).to_numpy(), "w2_sde_p0", False, "w2_sde_p0.value"),
            ("C5", np.sqrt(df["w2_ode_sde.value"].clip(lower=0)).to_numpy(), "w2_ode_sde", True, "w2_ode_sde.value")]:
        paper = np.array([paper_value(table, t, w) or np.nan for t, w in cells])
        sigma = seed_noise(df, column)

        def test(y, pos=positive):
            return st.rank_correlation(x, y, pos, groups, n_perm=1000, n_boot=200,
                                       **test_settings(CORRELATION_MIN_EFFECT))

        def null(r, y=y_real):
            return (st.permute_within_groups(y, groups, r),)

        rows.append(_calibrated(key, "y shuffled within each target", test, null, st.PASS,
                                f"{'Table 3' if key == 'C4' else 'Table 1'} values x exp(N(0, {sigma:.2f})) "
                                "against the measured R~",
                                lambda r, p=paper, s=sigma: (p * np.exp(r.normal(0, s, len(p))),), reps, seed))
    return rows


def _curl_calibration(paper_df, curl_df, reps, seed) -> dict:
    potential, score = paper_df["curl_max_t0"].to_numpy(), curl_df["curl_mean_t0"].to_numpy()

    def test(a, b):
        return st.separation(a, b, CLAIM_SETTINGS["curl: min separation (decades)"], n_boot=200,
                             alpha=CLAIM_SETTINGS[ALPHA])

    return _calibrated("C6", "both groups resampled from the potential models' curls", test,
                       lambda r: (r.choice(potential, len(score)), r.choice(potential, len(potential))), st.PASS,
                       "the measured score-model curls resampled",
                       lambda r: (r.choice(score, len(score)), r.choice(potential, len(potential))), reps, seed)


def _oracle_calibration(oracles: pd.DataFrame, reps: int, seed: int) -> dict:
    allowance, resolution, detectable = oracle_allowance(oracles)
    mean, sd = oracles["floor_mean"].to_numpy(), oracles["floor_sd"].to_numpy()

    def test(measured):
        return st.within_noise(measured, allowance, sd, resolution, detectable, alpha=CLAIM_SETTINGS[ALPHA])

    return _calibrated("C7b", "gap = noise only (floor mean + N(0, floor sd))", test,
                       lambda r: (mean + r.normal(0, sd),), st.FAIL,
                       f"allowance + Table 1's smallest w_R = 0 gap ({detectable}) + noise",
                       lambda r: (allowance + detectable + r.normal(0, sd),), reps, seed, right=st.FAIL)


def _calibrated(key, null_name, test, null, wrong, planted_name, planted, reps, seed, right=st.PASS) -> dict:
    try:
        null_rates = st.calibrate(test, null, reps, seed)
        planted_rates = st.calibrate(test, planted, reps, seed + 1)
    except st.UndecidableError as err:  # too little data for the test itself
        nan = (float("nan"), float("nan"))
        return {"claim": key, "null data": f"not computable: {err}", "wrong verdict": wrong, "rate under null": nan[0],
                "rate under null, 95% CI": nan, "planted effect": "—", "right verdict": right, "power": nan[0],
                "power, 95% CI": nan, "reps": 0}
    return {"claim": key, "null data": null_name, "wrong verdict": wrong, "rate under null": null_rates[wrong],
            "rate under null, 95% CI": null_rates[f"{wrong}_ci"], "planted effect": planted_name,
            "right verdict": right, "power": planted_rates[right], "power, 95% CI": planted_rates[f"{right}_ci"],
            "reps": reps, "_test": test, "_null": null}
