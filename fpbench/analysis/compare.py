"""Beyond one sweep: methods side by side, and whether the paper's claims C1-C5 carry over.

- ``ranking_frame``: per target and method, the three W2^2 of Tables 1-3 (mean over seeds with a
  95% interval), the rank among methods, and a paired sign-flip test against the baseline over
  every (target, seed) pair of the method (``fpbench.analysis.stats.paired_comparison`` on log values).
- ``decomposition_frame``: each method's ODE-SDE gap split into the exact score's gap through the
  same samplers (what no model can remove at this step count and n), model error (the trained gap
  above the exact one), the discretisation coupling bounds (Euler against an adaptive DOP853
  reference, same model and prior points) and the sampling-noise floor.
- ``warm_versus_cold``: a warm-started method against the same loss trained from scratch, paired by target
  and seed: where each ended on the loss it minimised, and its score error.
- ``setting_claims``: C1-C5 of ``fpbench.analysis.claims`` on one setting (an SDE, a dimension sweep, or a
  regulariser other than R~ with its own weight and residual), with the same tests and gates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..core.errors import FpbenchError
from ..run.suite import baseline_of, method_specs
from . import claims as cl
from . import stats as st

TABLES = {"w2_ode_p0": "W2²(ODE, p0)", "w2_sde_p0": "W2²(SDE, p0)", "w2_ode_sde": "W2²(ODE, SDE) gap"}


def _params_text(params: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def method_labels(data: dict, df: pd.DataFrame) -> pd.Series:
    """A readable method label per row: the suite's [[methods]] label (or name), model kind and params."""
    specs = method_specs(data)
    params = [c for c in df.columns if c.startswith("param_")]

    def matches(spec, row, values) -> bool:
        if spec["name"] != row["method"] or spec["model"] != row["model"]:
            return False
        fixed_ok = all(values.get(k) == v for k, v in spec.get("params", {}).items())
        swept_ok = all(values.get(k) in (v if isinstance(v, list) else [v]) for k, v in spec.get("sweep", {}).items())
        return fixed_ok and swept_ok

    def label(row) -> str:
        values = {c.removeprefix("param_"): row[c] for c in params if pd.notna(row.get(c))}
        spec = next((s for s in specs if matches(s, row, values)), None)
        base = (spec or {}).get("label") or f"{row['method']} ({row['model']})"
        swept = {k: v for k, v in values.items() if spec is None or k in spec.get("sweep", {})}
        return base + (f" [{_params_text(swept)}]" if swept else "")
    return df.apply(label, axis=1)


def baseline_label(data: dict) -> str:
    """The ``method_labels`` label of the suite's baseline (``suite.baseline_of``: its ``[suite] baseline``,
    else its first method at its first parameters; never a method added with --method)."""
    spec, params = baseline_of(data)
    row = {"method": spec["name"], "model": spec["model"], **{f"param_{k}": v for k, v in params.items()}}
    return method_labels(data, pd.DataFrame([row])).iloc[0]


def mean_ci(values: np.ndarray) -> tuple[float, float, float]:
    """Mean over seeds with its 95% Student t interval (``report.summarise``); no interval for one seed."""
    from .stats import summarise

    values = np.asarray(values, dtype=float)
    nan = np.full(len(values), np.nan)
    mean, low, high, _kind = summarise(values, nan, nan)
    return float(mean), float(low), float(high)


def ranking_frame(df: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """One row per (target, method, table): mean [95% CI] over seeds, rank among methods (1 = lowest),
    and the test against the baseline: p of 'lower than the baseline' and of 'higher', effect =
    mean log(baseline / method) over the paired seeds of this target; the rows of target
    'all targets (pooled)' pair every (target, seed) cell, for power with few seeds."""
    rows = []
    pooled = df.assign(target="all targets (pooled)", seed=df["target"] + "/" + df["seed"].astype(str))
    both = pd.concat([df, pooled]) if df["target"].nunique() > 1 else df
    for (target, method), grp in both.groupby(["target", "label"], sort=False):
        base = both[(both["target"] == target) & (both["label"] == baseline)].set_index("seed")
        for table, name in TABLES.items():
            col = f"{table}.value"
            mean, low, high = mean_ci(grp[col].to_numpy(float))
            row = {"target": target, "method": method, "table": name, "mean": mean, "ci_low": low, "ci_high": high}
            pairs = grp[["seed", col]].astype({"seed": str}).merge(
                base.reset_index()[["seed", col]].astype({"seed": str}), on="seed", suffixes=("", "_base"))
            test = None
            if method != baseline and len(pairs) > 0:
                try:
                    test = st.paired_comparison(pairs[col].to_numpy(float), pairs[f"{col}_base"].to_numpy(float))
                except ValueError:  # no finite positive pair (e.g. a diverged sampler)
                    test = None
            if test is not None:
                row.update({"p_lower": test.pvalue, "p_higher": test.pvalue_opposite, "log_ratio": test.effect,
                            "log_ratio_low": test.ci_low, "log_ratio_high": test.ci_high, "pairs": test.n})
            rows.append(row)
    out = pd.DataFrame(rows)
    out["rank"] = out.groupby(["target", "table"])["mean"].rank(method="min")
    return out


BETTER, WORSE, SAME, CANNOT_TELL = "better", "worse", "not distinguishable", "cannot tell"


@dataclass(frozen=True)
class Verdict:
    """A method against the baseline on one target and distance: its ``kind`` (BETTER, WORSE, SAME or
    CANNOT_TELL) and the same in words, with the paired test's p and ratio or the reason."""

    method: str
    target: str
    table: str
    kind: str
    words: str


def versus_baseline(row, alpha: float, not_converged: str | None) -> str:
    """One ``ranking_frame`` row in words: better, worse or not distinguishable from the baseline (the paired
    test's p and the ratio method / baseline with its 95% interval), or why it cannot tell: a model fails the
    convergence gate, no pair, or too few pairs for the test to reach α at all."""
    return _versus_baseline(row, alpha, not_converged)[1]


def _versus_baseline(row, alpha: float, not_converged: str | None) -> tuple[str, str]:
    """(kind, words) of ``versus_baseline``."""
    if not_converged:
        return CANNOT_TELL, f"cannot tell: {not_converged}"
    p_lower, p_higher = row.get("p_lower", np.nan), row.get("p_higher", np.nan)
    if not np.isfinite(p_lower):
        return CANNOT_TELL, ("cannot tell: no paired test (a sign-flip test needs 2 or more seeds of both, with "
                             "finite W2²; run with --seeds 2 or more)")
    pairs = int(row["pairs"])
    ratio = (f"{np.exp(-row['log_ratio']):.3g}x the baseline's [{np.exp(-row['log_ratio_high']):.3g}, "
             f"{np.exp(-row['log_ratio_low']):.3g}], {pairs} pairs")
    if 2.0 ** -pairs > alpha:  # the exact sign-flip test's smallest p (every pair on one side) cannot reach α
        return CANNOT_TELL, (f"cannot tell: with {pairs} pairs the sign-flip test's smallest possible p is "
                             f"{2.0 ** -pairs:.3g} > α = {alpha:g} ({math.ceil(math.log2(1 / alpha))} or more seeds "
                             f"decide one target; the pooled row pairs every target's seeds): {ratio}")
    if p_lower <= alpha:
        return BETTER, f"**better** (lower; p = {p_lower:.2g}): {ratio}"
    if p_higher <= alpha:
        return WORSE, f"**worse** (higher; p = {p_higher:.2g}): {ratio}"
    return SAME, f"not distinguishable from the baseline (p = {min(p_lower, p_higher):.2g} either way): {ratio}"


def user_verdicts(df: pd.DataFrame, methods: list[str], baseline: str) -> list[Verdict]:
    """Each of ``methods`` (labels in ``df["label"]``) against ``baseline`` on every target and distance of
    ``ranking_frame``: the paired sign-flip test at the claims' α, decided only when both methods' models
    on that target pass the convergence gate (else CANNOT_TELL with the count that fails)."""
    rank = ranking_frame(df, baseline)
    alpha = cl.CLAIM_SETTINGS[cl.ALPHA]
    verdicts = []
    for method in methods:
        for r in rank[rank["method"] == method].to_dict("records"):
            kind, words = _versus_baseline(r, alpha, gate_failures(df, [method, baseline], r["target"]))
            verdicts.append(Verdict(method, r["target"], r["table"], kind, words))
    return verdicts


def gate_failures(df: pd.DataFrame, labels: list[str], target: str) -> str | None:
    """Why ``labels``' models on ``target`` (all targets for the pooled rows) cannot be compared: how many
    fail the convergence gate; None when all pass."""
    rows = df[df["label"].isin(labels) & ((df["target"] == target) | target.startswith("all targets"))]
    if rows.empty or "convergence.rel_error" not in rows:
        return "no convergence evidence"
    failing = int(cl.convergence_checks(rows)["fails"].map(bool).sum())
    if not failing:
        return None
    return f"{failing} of {len(rows)} models (the method's and the baseline's) fail the convergence gate"


WARM_QUANTITIES = {"final.loss": "final training loss", "final.dsm": "its DSM term",
                   "final.log_fp": "its R̃ term", "final.score_fp": "its R^s term",
                   "convergence.rel_error": "relative score error"}


def warm_versus_cold(df: pd.DataFrame) -> pd.DataFrame:
    """Per warm-started method (``warm_start_from``: a method's trained weights, then that method's loss with
    the case's own parameters) and label: its models paired by (target, seed) with the models trained from
    scratch on the same loss and parameters, on each of ``WARM_QUANTITIES`` present (``final.*``: the median of
    the logged values over the last 20% of training, ``fpbench.core.convergence.final_loss``): the geometric
    mean ratio warm / cold with its 95% interval and the sign-flip test's p of 'warm higher' and 'warm lower'."""
    params = [c for c in df.columns if c.startswith("param_")]
    rows = []
    for (name, label), warm in df.groupby(["method", "label"], sort=False):
        source = _warm_source(name)
        if source is None:
            continue
        first = warm.iloc[0]
        cold = df[(df["method"] == source) & (df["model"] == first["model"])]
        for c in params:
            cold = cold[cold[c] == first[c]] if pd.notna(first[c]) else cold[cold[c].isna()]
        pairs = warm.merge(cold, on=["target", "seed"], suffixes=("", "_cold"))
        for col, what in WARM_QUANTITIES.items():
            if col not in df or len(pairs) < 2:
                continue
            try:
                test = st.paired_comparison(pairs[f"{col}_cold"].to_numpy(float), pairs[col].to_numpy(float))
            except ValueError:  # fewer than two finite positive pairs (a term the loss does not weight)
                continue
            rows.append({"method": label, "quantity": what, "pairs": test.n, "warm / cold": math.exp(test.effect),
                         "ci_low": math.exp(test.ci_low), "ci_high": math.exp(test.ci_high),
                         "p warm higher": test.pvalue, "p warm lower": test.pvalue_opposite})
    return pd.DataFrame(rows)


def _warm_source(name: str) -> str | None:
    """The method ``name`` warm-starts from (None: it starts from scratch, or its class cannot be loaded here)."""
    from ..train.methods import make_method

    try:
        spec = getattr(make_method(name), "warm_start_from", None)
    except FpbenchError:
        return None
    return spec["name"] if spec else None


def decomposition_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Per target and method (means over seeds): the gap and its parts (module docstring)."""
    cols = {"gap": "w2_ode_sde.value", "exact_gap": "oracle.w2_ode_sde", "disc_ode": "disc_ode",
            "disc_sde": "disc_sde", "floor": "floor.mean"}
    have = {k: v for k, v in cols.items() if v in df}
    out = df.groupby(["target", "label"], sort=False)[list(have.values())].mean()
    out.columns = list(have)
    if {"gap", "exact_gap"} <= set(out):
        out["model_error"] = out["gap"] - out["exact_gap"]
    return out.reset_index()


def setting_claims(df: pd.DataFrame, weight: str = "param_w_r", residual: str = "log_fp_residual") -> list:
    """The claims about trained models on one setting's rows (``claims.TRAINED_CLAIMS``); ``weight`` is the
    swept regulariser weight (renamed to w_R) and ``residual`` the residual that C4, C5 and T1 read (R~ for the
    paper's method, R^s for score-FP)."""
    frame = df.copy()
    if weight != "param_w_r":
        frame["param_w_r"] = frame[weight]
    if residual != "log_fp_residual":
        frame["log_fp_residual"] = frame[residual]
    frame = frame[frame["param_w_r"].notna()]
    return cl.trained_claims(frame)


def carry_over_table(settings: dict[str, list]) -> pd.DataFrame:
    """Claims x settings: each cell the verdict (with p where a test ran, or why it was skipped)."""
    table = {}
    for setting, outcomes in settings.items():
        for o in outcomes:
            key = o.claim.key
            cell = o.verdict if o.result is None else f"{o.verdict} (p = {o.result.pvalue:.2g}, effect " \
                                                      f"{o.result.effect:+.2f})"
            table.setdefault(key, {"claim": o.claim.paper_says})[setting] = cell
    return pd.DataFrame(table.values(), index=list(table))
